"""Accuracy side by side with IBM's aihwkit: ResNet-20 on CIFAR-10 under PCM with global drift compensation.

The setting of issue 33: the ERM ResNet-20 (``benchmarks/models/resnet20_cifar10_e160_cutout.onnx``, BatchNorm folded
into the convolutions), 2,000 CIFAR-10 test images (the ``test2000`` subset of ``harden_runs.py``: seed-1
permutation of the 10,000), perfect converters, one tile per layer, biases digital, at 1 day and 1 year.
- aihwkit 1.2.0 (built here): the ONNX weights loaded into the torch ResNet-20 of ``benchmarks/models.py`` (BatchNorm
  replaced by the folded convolution biases; parity with onnxruntime checked), ``convert_to_analog`` with an
  ``InferenceRPUConfig``: ``PCMLikeNoiseModel(g_max=25)``, ``GlobalDriftCompensation``, ``forward.is_perfect``,
  ``mapping.max_input_size = max_output_size = 0`` (one tile per layer, checked), ``digital_bias`` (its default).
  Each sample: ``program_analog_weights()``, then ``drift_analog_weights(t)`` at each time; accuracy from the
  torch net carrying each tile's drifted weights times its compensation factor (``drifted_digital``: the perfect
  forward, 10x faster than aihwkit's tile forward here), checked against aihwkit's own analog forward on the first
  ``--check`` samples (same accuracy required).
- ftcompile: ``validate(drift="pcm:T,comp=global", targets="crossbar")`` (onnxruntime), and two variants of the same
  physics on the same keyed draws (common random numbers, so that their differences from the default are paired):
  ``reference=programmed``: the compensation's reference read without 1/f read noise (aihwkit's baseline: the
  programmed weights); ``path=aihwkit``: that reference and aihwkit's weight path (the programmed weights re-mapped
  to a fresh pair before drift and read, ``BaseNoiseModel.apply_drift_noise``).
Per time: mean accuracy ± standard error over the samples (std / sqrt(K)), each side's K and seconds.
Runs in aihwkit's environment with ftcompile importable; reads CIFAR-10 from --data (never copied):
  PYTHONPATH=$PWD OMP_NUM_THREADS=1 /work/venvs/aihwkit/bin/python benchmarks/bench_aihwkit_accuracy.py
      [--samples 100] [--aihwkit-samples 100] [--times 1d,1y] [--data /work/shared/data]
      [--out benchmarks/results/aihwkit_accuracy.json]
"""
import argparse
import copy
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import aihwkit  # noqa: E402
from aihwkit.inference.compensation.drift import GlobalDriftCompensation  # noqa: E402
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel  # noqa: E402
from aihwkit.nn import AnalogConv2d, AnalogLinear  # noqa: E402
from aihwkit.nn.conversion import convert_to_analog  # noqa: E402
from aihwkit.simulator.configs import InferenceRPUConfig  # noqa: E402

import ftcompile  # noqa: E402
from ftcompile.fileio import write_text_atomic  # noqa: E402
from ftcompile.runtime.devices import physics  # noqa: E402
from ftcompile.runtime.devices.models import PCMDrift  # noqa: E402
from ftcompile.units import format_time, parse_time  # noqa: E402
from models import ResNet20  # noqa: E402

MODEL = HERE / "models" / "resnet20_cifar10_e160_cutout.onnx"
MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)  # examples/cifar_cnn/prepare.py
STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(1, 3, 1, 1)


@dataclass(frozen=True)
class PCMVariant(PCMDrift):
    """ftcompile's PCM physics with one of aihwkit's choices. ``reference="programmed"``: the compensation's reference
    is the programmed pair read without 1/f read noise (aihwkit: ``program_weights`` -> ``init_baseline`` reads the
    programmed weights; the 1/f term is applied only in ``apply_drift_noise_to_conductance``). ``path="aihwkit"``:
    the programmed weights are re-mapped to a fresh pair at the layer's new max|W| (one device of each pair at 0)
    before drift and read, as ``BaseNoiseModel.apply_drift_noise`` does. Draws the same normals as ``PCMDrift``."""

    path: str = "pair"
    reference: str = "read"

    def _read(self, w, scale, normal):
        targets = physics.differential_targets(w, scale, self.g_max)
        z = [normal((4,) + tuple(w.shape)) for _ in targets]  # g+ then g-, as PCMDrift draws them
        g_p = [physics.pcm_program(g, zi[0], self.g_max, self.prog_scale) for g, zi in zip(targets, z)]
        nus = [physics.pcm_drift_exponent(g, zi[1], self.g_max, self.drift_scale) for g, zi in zip(targets, z)]
        out_scale = scale
        if self.path == "aihwkit":
            out_scale = np.float64(np.abs(physics.differential_weights(*g_p, scale, self.g_max)).max())
            g_p = physics.differential_targets(physics.differential_weights(*g_p, scale, self.g_max), out_scale,
                                               self.g_max)
        reads = [physics.pcm_read(physics.pcm_drifted(g, nu, self.t), g, zi[2], self.t, self.g_max, self.read_scale)
                 for g, nu, zi in zip(g_p, nus, z)]
        out = physics.differential_weights(*reads, out_scale, self.g_max)
        if self.reference == "programmed":
            ref = physics.differential_weights(*g_p, out_scale, self.g_max)
        else:
            ref = physics.differential_weights(*[physics.pcm_read(g, g, zi[3], 0.0, self.g_max, self.read_scale)
                                                 for g, zi in zip(g_p, z)], out_scale, self.g_max)
        return out * physics.global_compensation(ref, out, per_column=self.comp == "column", read=self.read)

    def spec(self) -> str:
        return f"{super().spec()},path={self.path},reference={self.reference}"


def cifar_subset(data_dir: Path, images: int) -> tuple[np.ndarray, np.ndarray]:
    test = np.load(data_dir / "cifar10_test.npz")
    pick = np.random.default_rng(1).permutation(len(test["y"]))[:images]  # harden_runs.py's test subset
    x = ((test["x"][pick].transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)
    return x, test["y"][pick].astype(np.int64)


def torch_resnet20(model: Path) -> nn.Module:
    """``benchmarks/models.py``'s ResNet-20 with the ONNX model's weights: its 19 convolutions (BatchNorm folded into
    their biases, so BatchNorm becomes the identity) in graph order, then the classifier."""
    graph = onnx.load(model).graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    net = ResNet20()
    for name, module in list(net.named_modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, nn.BatchNorm2d):
                setattr(module, child, nn.Identity())
    modules = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(modules) == len(convs) == 19
    with torch.no_grad():
        for m, node in zip(modules, convs):
            m.weight.copy_(torch.from_numpy(init[node.input[1]].copy()))
            m.bias = nn.Parameter(torch.from_numpy(init[node.input[2]].copy()))
        net.fc.weight.copy_(torch.from_numpy(init[gemm.input[1]]))
        net.fc.bias.copy_(torch.from_numpy(init[gemm.input[2]]))
    return net.eval()


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    with torch.no_grad():
        pred = torch.cat([net(torch.from_numpy(x[i:i + batch])).argmax(1) for i in range(0, len(x), batch)])
    return float((pred.numpy() == y).mean())


def stats(values: list, seconds: float) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / math.sqrt(len(v))), "std": float(v.std(ddof=1)),
            "samples": len(v), "seconds": round(seconds, 1), "values": [round(float(a), 5) for a in v]}


def drifted_digital(analog: nn.Module, digital: nn.Module) -> nn.Module:
    """``digital`` with each layer's weights set to what aihwkit's analog layer computes with now: its tile's drifted
    weights times the tile's drift-compensation factor (``InferenceTileWithPeriphery.post_forward``: ``x_output *
    alpha``). With ``forward.is_perfect`` that is the whole analog forward; the biases stay digital in both."""
    pairs = zip([m for m in analog.modules() if isinstance(m, (AnalogConv2d, AnalogLinear))],
                [m for m in digital.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    with torch.no_grad():
        for a, d in pairs:
            (tile,) = list(a.analog_tiles())
            d.weight.copy_(a.get_weights()[0].reshape(d.weight.shape) * tile.alpha)
    return digital


def run_aihwkit(net: nn.Module, x, y, times: list, samples: int, seed: int, check: int) -> dict:
    """aihwkit's programming, drift and compensation per sample; the first ``check`` samples are also read through
    aihwkit's own analog forward (about 10x slower here), which must give the same accuracy."""
    rpu = InferenceRPUConfig()
    rpu.forward.is_perfect = True
    rpu.noise_model = PCMLikeNoiseModel(g_max=25.0)
    rpu.drift_compensation = GlobalDriftCompensation()
    rpu.mapping.max_input_size = 0
    rpu.mapping.max_output_size = 0
    analog = convert_to_analog(net, rpu).eval()
    tiles = [m.analog_tile_count() for m in analog.modules() if isinstance(m, (AnalogConv2d, AnalogLinear))]
    assert len(tiles) == 20 and all(n == 1 for n in tiles), tiles  # 19 convolutions + fc, one tile each
    clean = accuracy(analog, x, y)  # before programming: the perfect forward of the digital weights
    digital = copy.deepcopy(net)
    torch.manual_seed(seed)
    values, checks = {t: [] for t in times}, []
    t0 = time.perf_counter()
    for k in range(samples):
        analog.program_analog_weights()
        for t in times:
            analog.drift_analog_weights(t)
            values[t].append(accuracy(drifted_digital(analog, digital), x, y))
            if k < check:
                tc = time.perf_counter()
                own = accuracy(analog, x, y)
                checks.append({"sample": k, "t": format_time(t), "analog_forward": own, "fast": values[t][-1],
                               "analog_forward_seconds": round(time.perf_counter() - tc, 1)})
                assert abs(own - values[t][-1]) <= 1 / len(y), checks[-1]
        print(f"aihwkit sample {k + 1}/{samples}: " + ", ".join(f"{format_time(t)} {100 * values[t][-1]:.2f}"
                                                                  for t in times), flush=True)
    seconds = time.perf_counter() - t0
    return {"clean": clean, "forward_checks": checks,
            "times": {format_time(t): stats(values[t], seconds / len(times)) for t in times}}


def run_ftcompile(data: Path, times: list, samples: int, seed: int) -> dict:
    out = {}
    for label, kwargs in (("ftcompile", None), ("reference=programmed", {"reference": "programmed"}),
                          ("path=aihwkit", {"path": "aihwkit", "reference": "programmed"})):
        rows = {}
        for t in times:
            drift = f"pcm:{format_time(t)},comp=global" if kwargs is None else PCMVariant(t, comp="global", **kwargs)
            r = ftcompile.validate(MODEL, data, drift=drift, samples=samples, seed=seed, targets="crossbar")
            rows[format_time(t)] = {**stats(r.values, r.seconds), "drift": r.drift, "clean": r.clean}
            print(f"{label} {format_time(t)}: {100 * rows[format_time(t)]['mean']:.2f} "
                  f"± {100 * rows[format_time(t)]['se']:.2f} ({r.seconds:.0f} s)", flush=True)
        out[label] = rows
    return out


def paired(a: list, b: list) -> dict:
    """Mean of ``b - a`` over common-random-number samples, with its standard error."""
    d = np.asarray(b) - np.asarray(a)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d)))}


def table(results: dict) -> str:
    lines = ["| time | aihwkit | ftcompile | ftcompile, reference read without read noise | ftcompile on aihwkit's "
             "weight path, that reference | ftcompile - aihwkit |", "| --- | --- | --- | --- | --- | --- |"]
    for t, a in results["aihwkit"]["times"].items():
        f = results["ftcompile"]
        cell = lambda r: f"{100 * r['mean']:.2f} ± {100 * r['se']:.2f} (K={r['samples']})"  # noqa: E731
        diff, se = f["ftcompile"][t]["mean"] - a["mean"], math.hypot(f["ftcompile"][t]["se"], a["se"])
        lines.append(f"| {t} | {cell(a)} | {cell(f['ftcompile'][t])} | {cell(f['reference=programmed'][t])} | "
                     f"{cell(f['path=aihwkit'][t])} | {100 * diff:+.2f} ± {100 * se:.2f} |")
    lines += ["", "Paired differences from ftcompile's default (same keyed draws), accuracy points:", "",
              "| time | reference without read noise | aihwkit's path and reference |", "| --- | --- | --- |"]
    for t, d in results["paired"].items():
        lines.append(f"| {t} | {100 * d['reference=programmed']['mean']:+.2f} ± "
                     f"{100 * d['reference=programmed']['se']:.2f} | "
                     f"{100 * d['path=aihwkit']['mean']:+.2f} ± {100 * d['path=aihwkit']['se']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100, help="ftcompile's Monte-Carlo samples per time")
    ap.add_argument("--aihwkit-samples", type=int, default=100)
    ap.add_argument("--times", default="1d,1y")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--check", type=int, default=2, help="aihwkit samples also read through its own analog forward")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=HERE / "results" / "aihwkit_accuracy.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    times = [parse_time(t) for t in args.times.split(",")]
    x, y = cifar_subset(args.data, args.images)
    net = torch_resnet20(MODEL)
    ref = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"]).run(None, {"x": x[:256]})[0]
    with torch.no_grad():
        parity = float(np.abs(net(torch.from_numpy(x[:256])).numpy() - ref).max())
    assert parity < 1e-3, parity
    # the variant without aihwkit's choices must be PCMDrift itself (same draws, same values)
    w = np.random.default_rng(0).standard_normal((16, 27)).astype(np.float32)
    same = PCMVariant(86400.0, comp="global").apply(w, np.random.default_rng(1))
    assert np.array_equal(same, PCMDrift(86400.0, comp="global").apply(w, np.random.default_rng(1)))
    results = {"aihwkit_version": aihwkit.__version__, "torch": torch.__version__,
               "model": str(MODEL.relative_to(ROOT)), "images": args.images, "seed": args.seed,
               "torch_onnx_parity_max_abs": parity, "digital_accuracy": accuracy(net, x, y)}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / f"test{args.images}.npz"
        np.savez(data, x=x, y=y)
        results["ftcompile"] = run_ftcompile(data, times, args.samples, args.seed)
    results["aihwkit"] = run_aihwkit(net, x, y, times, args.aihwkit_samples, args.seed, args.check)
    results["paired"] = {format_time(t): {label: paired(results["ftcompile"]["ftcompile"][format_time(t)]["values"],
                                                        results["ftcompile"][label][format_time(t)]["values"])
                                          for label in ("reference=programmed", "path=aihwkit")} for t in times}
    results["table"] = table(results)
    write_text_atomic(args.out, json.dumps(results, indent=1) + "\n")
    print(results["table"])
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
