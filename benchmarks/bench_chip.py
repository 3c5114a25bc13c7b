"""The cost of `validate` with a chip's full twin against plain lognormal `validate`, on the same model and images,
side by side in one process (issue 33's target: the full preset at most 2x the lognormal validate on ResNet-20).

Runs, each on one onnxruntime thread, the same images, the same K:
- lognormal: `validate --drift lognormal:0.6` (the paper's drift, every parameter drifting);
- chip: `validate --chip aihwkit-inference --drift pcm:1d` (tiles, 8-bit DAC and ADC, output and read noise,
  IR drop, PCM per tile with global compensation after each tile's ADC);
- chip-quiet: the same chip without output noise, read noise and IR drop (what the converters and tiles cost).
Each row also counts the multiply-accumulates per image of the graph the run executes (``macs_per_image``; with
``--macs-only`` only that, written into an existing results file): what the arithmetic costs apart from any runtime.
Each row times `validate`'s work after the session is built: the clean pass and the K drifted ones (`evaluate`'s
parts), and separately the one-time cost of building the session and calibrating the tiles' input ranges. The runs
take turns, ten samples each, so that a shared machine's load falls on all of them alike.
CIFAR-10 test images are normalized as examples/cifar_resnet20/prepare.py does (the model's training data).
Usage: OMP_NUM_THREADS=1 python benchmarks/bench_chip.py [--model M.onnx] [--data DIR | --npz FILE]
       [--images 2000] [--samples 100] [--out benchmarks/results/chip.json] [--macs-only]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from ftcompile.api import bind_data, calibrate_on_data, resolve_chip  # noqa: E402
from ftcompile.runtime.drift import resolve_targets  # noqa: E402
from ftcompile.runtime.metrics import accuracy  # noqa: E402
from ftcompile.runtime.session import DriftSession  # noqa: E402
from ftcompile.runtime.validate import clean_metric, run_samples  # noqa: E402

RUNS = {"lognormal": (None, "lognormal:0.6"), "chip": ("aihwkit-inference", "pcm:1d"),
        "chip-quiet": ("aihwkit-inference,out_noise=0,w_noise=0,ir_drop=0", "pcm:1d")}


def cifar_images(data_dir: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    from datasets import example

    test = np.load(data_dir / "cifar10_test.npz")
    normalize = example("cifar_cnn").normalize  # as examples/cifar_resnet20/prepare.py normalizes
    return normalize(test["x"][:n]), test["y"][:n].astype(np.int64)


def prepare(model: Path, data: tuple, chip_spec, drift_spec: str) -> dict:
    """A run's session, data and drift, and the one-time cost of building them (and calibrating the tiles)."""
    t0 = time.perf_counter()
    chip, drift = resolve_chip(chip_spec, drift_spec, None)
    targets = resolve_targets("auto", drift)
    calibration = calibrate_on_data(model, data, chip=chip) if chip is not None else None
    session = DriftSession(model, targets=targets, threads=1, converters=chip, calibration=calibration)
    return {"session": session, "dataset": bind_data(session, data), "drift": drift, "targets": targets,
            "chip": chip, "setup_seconds": time.perf_counter() - t0}


def measure(runs: dict, samples: int, batch: int, chunk: int) -> dict:
    """Every run's clean pass and ``samples`` drifted passes, interleaved in chunks of ``chunk`` samples (run a,
    run b, ..., then the next chunk), so that the load of a shared machine falls on all runs alike; sample ``k``
    is the same whichever chunk draws it, so the values equal one run of ``samples``."""
    rows = {}
    for name, r in runs.items():
        t = time.perf_counter()
        clean = clean_metric(r["session"], r["dataset"], batch_size=batch, metric=accuracy, seed=0)
        rows[name] = {"clean": clean, "seconds": time.perf_counter() - t, "values": []}
    for first in range(0, samples, chunk):
        n = min(chunk, samples - first)
        for name, r in runs.items():
            t = time.perf_counter()
            rows[name]["values"] += run_samples(r["session"], r["dataset"], r["drift"], samples=n, seed=0,
                                                batch_size=batch, metric=accuracy, first=first).values
            rows[name]["seconds"] += time.perf_counter() - t
        print(f"  {first + n}/{samples} samples: " + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in rows.items()),
              flush=True)
    out = {}
    for name, r in runs.items():
        row, values = rows[name], np.array(rows[name]["values"])
        out[name] = {"chip": r["chip"].spec() if r["chip"] is not None else None, "drift": r["drift"].spec(),
                     "targets": r["targets"], "samples": samples, "images": len(r["dataset"]),
                     "setup_seconds": r["setup_seconds"], "seconds": row["seconds"],
                     "seconds_per_pass": row["seconds"] / (samples + 1), "clean": row["clean"],
                     "mean": float(values.mean()), "std": float(values.std(ddof=1)) if samples > 1 else 0.0,
                     "stderr": float(values.std(ddof=1) / np.sqrt(samples)) if samples > 1 else 0.0,
                     "drifting_tensors": len(r["session"].targets)}
    return out


def macs_per_image(model: Path, data: tuple, chip_spec, drift_spec: str) -> int:
    """Multiply-accumulates per image of the graph a run executes (the digital model, or the chip's twin): Conv
    ``out elements x in-channels-per-group x kernel``, ConvTranspose ``in elements x out-channels-per-group x
    kernel``, Gemm and MatMul ``out elements x inner``. The shapes are read off one image run through onnxruntime
    (onnx's shape inference leaves some of the twin's stacked weights unknown). Counts what the arithmetic of each
    twin must cost, apart from any runtime."""
    import onnx
    import onnxruntime as ort

    from ftcompile.passes.chip_twin import insert_chip
    from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights
    from ftcompile.runtime.model import load_onnx

    proto = unshare_weights(constants_to_initializers(load_onnx(model)))
    chip, _ = resolve_chip(chip_spec, drift_spec, None)
    if chip is not None:
        proto = insert_chip(proto, calibrate_on_data(model, data, chip=chip).ranges, chip)
    nodes = [n for n in proto.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    shapes = {t.name: list(t.dims) for t in proto.graph.initializer}
    wanted = sorted({name for n in nodes for name in (n.input[0], n.input[1], n.output[0])} - set(shapes))
    known = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in wanted if t not in known)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = session.get_inputs()[0].name
    shapes.update(zip(wanted, (list(v.shape) for v in session.run(wanted, {x: data[0][:1]}))))
    total = 0
    for node in nodes:
        out, w = shapes[node.output[0]], shapes[node.input[1]]
        if node.op_type == "ConvTranspose":  # every input element meets out-channels-per-group x kernel weights
            total += int(np.prod(shapes[node.input[0]])) * int(np.prod(w[1:]))
            continue
        if node.op_type == "Conv":
            inner = int(np.prod(w[1:]))
        elif node.op_type == "Gemm":
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            inner = w[1] if trans_b else w[0]
        else:
            inner = shapes[node.input[0]][-1]
        total += int(np.prod(out)) * inner
    return total


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=HERE / "models" / "resnet20_cifar10_e160_cutout.onnx")
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data",
                        help="folder with cifar10_test.npz")
    parser.add_argument("--npz", type=Path, default=None, help="an .npz with x (model-ready) and y instead")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--chunk", type=int, default=10, help="samples per turn of each run (interleaved)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "chip.json")
    parser.add_argument("--macs-only", action="store_true",
                        help="count each run's multiply-accumulates per image into --out's runs, no timing")
    args = parser.parse_args(argv)
    if args.npz is not None:
        f = np.load(args.npz)
        data = (f["x"][:args.images].astype(np.float32), f["y"][:args.images].astype(np.int64))
    else:
        data = cifar_images(args.data, args.images)
    macs = {name: macs_per_image(args.model, data, *RUNS[name]) for name in args.runs.split(",")}
    mac_ratios = {k: v / macs["lognormal"] for k, v in macs.items() if k != "lognormal" and "lognormal" in macs}
    print("multiply-accumulates per image: " + ", ".join(f"{k} {v / 1e6:.1f} M" for k, v in macs.items()), flush=True)
    if args.macs_only:
        result = json.loads(args.out.read_text())
        for name, n in macs.items():
            result["runs"][name]["macs_per_image"] = n
        result["macs_ratio_to_lognormal"] = mac_ratios
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        return result
    runs = {name: prepare(args.model, data, *RUNS[name]) for name in args.runs.split(",")}
    rows = measure(runs, args.samples, args.batch_size, args.chunk)
    for name, r in rows.items():
        r["macs_per_image"] = macs[name]
        print(f"{name:10s} {r['seconds']:8.1f} s ({r['seconds_per_pass']:.2f} s/pass, setup {r['setup_seconds']:.1f} s)"
              f"  clean {100 * r['clean']:.2f}%  mean {100 * r['mean']:.2f}% +- {100 * r['stderr']:.2f}", flush=True)
    base = rows.get("lognormal")
    ratios = {k: v["seconds"] / base["seconds"] for k, v in rows.items() if base is not None and k != "lognormal"}
    import onnxruntime

    result = {"model": str(args.model), "images": len(data[0]), "samples": args.samples, "batch_size": args.batch_size,
              "threads": 1, "chunk": args.chunk, "onnxruntime": onnxruntime.__version__, "runs": rows,
              "ratio_to_lognormal": ratios, "macs_ratio_to_lognormal": mac_ratios,
              "target": "chip validate at most 2x the lognormal validate"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("ratios to lognormal: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + f"; wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
