"""The CIFAR-10 Figure 3 on one GPU: full-width ResNet-18 and VGG-11, ERM and every method, in one timed run.

Data: the 20,000 CIFAR-10 training images of ../shared/data (18,000 train / 2,000 val, seed 0) and all 10,000
test images; `--pack FILE` writes them once as lossless WebP (44.4 MiB for the 30,000 images, half the raw
bytes) so that they fit in what travels to a device machine, `--data FILE` reads that file instead of the folder.
Per network: ERM (examples/cifar_resnet20/prepare.py's recipe at batch 256, bf16 autocast; `--erm-epochs`),
exported by torch's exporter; then each method through `ftcompile.harden` (the Python API of `ftcompile harden`,
`--device cuda`) at sigma 0.6 with a GPU-budget search (`--trials/--trial-epochs/--final-epochs`, 10 objective
samples) and its onnxruntime sign-off on 1,000 test images (a seeded random subset: the test file is sorted by
class); then the sweep: accuracy on all 10,000 test images under lognormal drift, sigma 0-1.5, K samples,
computed on the GPU by the objective's vmapped drift (the runtime's lognormal formula).
A deadline (`--deadline` seconds from the start) skips, and records as skipped, any run that the measured epoch
time says would not finish: the device lends 15 minutes a session, start included.
Results are written after every step (`--out`), so a run cut short keeps what it measured.
`--smoke` shrinks everything (width 8, 512 images, 2 trials, CPU) so that a test runs the code path.
Usage: python benchmarks/bench_gpu.py [--device cuda] [--models resnet18,vgg11] [--samples 20] [--smoke]
       python benchmarks/bench_gpu.py --pack .gpudata/cifar10.webp.npz
"""
import argparse
import io
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples" / "cifar_resnet20"))
from datasets import example  # noqa: E402
from models import export, resnet18_cifar, resnet20, vgg11_cifar  # noqa: E402
from prepare import train as train_erm  # noqa: E402 (the CIFAR ERM recipe)

import ftcompile  # noqa: E402
from ftcompile.api import bind_data, load_model, open_session  # noqa: E402
from ftcompile.fileio import write_text_atomic  # noqa: E402
from ftcompile.resources import peak_rss_mb  # noqa: E402
from ftcompile.runtime.drift import LogNormalDrift  # noqa: E402
from ftcompile.runtime.validate import clean_metric, sample_metrics  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402
from ftcompile.search.objective import DriftObjective  # noqa: E402

normalize = example("cifar_cnn").normalize
SIGMAS = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]
# the cheap and the measured-best first: what a cut-short run keeps
METHODS = ["noise-injection", "bayesft", "bayesft+noise", "fixed-dropout", "awp", "ftna"]
# resnet20: the ERM model (`--models resnet20 --methods "" --erm-epochs 160`; 84.08% that way on the CPU);
# it has no width knob
NETS = {"resnet18": resnet18_cifar, "vgg11": vgg11_cifar, "resnet20": lambda width: resnet20()}
# fine-tuning epochs of a method at the budget (trials x epochs + final), in units of a plain epoch
COST = {"awp": 2.0, "noise-injection": 1.2, "bayesft+noise": 1.2}


def pack(data_dir: Path, path: Path) -> None:
    """The training subset and the test set as lossless WebP in one npz (bytes, offsets, labels; no pickle)."""
    from PIL import Image

    arrays = {}
    for split, name in (("train", "cifar10_train20k"), ("test", "cifar10_test")):
        d = np.load(data_dir / f"{name}.npz")
        blobs = []
        for im in d["x"]:
            b = io.BytesIO()
            Image.fromarray(im).save(b, format="WEBP", lossless=True, method=2)
            blobs.append(np.frombuffer(b.getvalue(), np.uint8))
        arrays[f"{split}_bytes"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.cumsum([0] + [len(b) for b in blobs])
        arrays[f"{split}_y"] = d["y"].astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def load(source: Path) -> dict:
    """``{"train": (x, y), "test": (x, y)}``, uint8 NHWC images, from the shared folder or a packed file."""
    if source.is_dir():
        return {s: (lambda d: (d["x"], d["y"].astype(np.int64)))(np.load(source / f"{n}.npz"))
                for s, n in (("train", "cifar10_train20k"), ("test", "cifar10_test"))}
    from PIL import Image

    d = np.load(source)
    out = {}
    for s in ("train", "test"):
        raw, off = d[f"{s}_bytes"], d[f"{s}_offsets"]
        x = np.stack([np.asarray(Image.open(io.BytesIO(raw[a:b].tobytes())).convert("RGB"))
                      for a, b in zip(off[:-1], off[1:])])
        out[s] = (x, d[f"{s}_y"])
    return out


def split(data: dict, work: Path, smoke: bool) -> dict:
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    order = np.random.default_rng(0).permutation(len(ytr))
    n_train, n_val, n_test = (512, 128, 256) if smoke else (18000, 2000, len(yte))
    x = normalize(xtr)
    # the test file is sorted by class: every subset is a seeded random one (the first 1,000 are all airplanes)
    pick = np.random.default_rng(1).permutation(len(yte))[:n_test]
    sets = {"train": (x[order[:n_train]], ytr[order[:n_train]]),
            "val": (x[order[n_train:n_train + n_val]], ytr[order[n_train:n_train + n_val]]),
            "test": (normalize(xte[pick]), yte[pick]),
            "signoff": (normalize(xte[pick[:1000]]), yte[pick[:1000]])}
    work.mkdir(parents=True, exist_ok=True)
    for name, (xs, ys) in sets.items():
        np.savez(work / f"{name}.npz", x=xs, y=ys)
    return sets


def gpu_sweep(model: Path, x: torch.Tensor, y: torch.Tensor, samples: int, device: str) -> list:
    """Mean accuracy and standard error per sigma, all test images, K lognormal drifts (vmapped on ``device``)."""
    module = load_model(model).module.to(device).eval()
    row = []
    for s in SIGMAS:
        score = DriftObjective(module, x, y, drift=LogNormalDrift(s), samples=1 if s == 0 else samples,
                               device=device, chunk=1, max_batch=16384, max_elements=2**27)(module)
        row.append([round(100 * score.mean, 2), round(100 * score.stderr, 2)])
    return row


def validate_ratio(model: Path, data: Path, samples: int) -> dict:
    """The runtime's drifted validate against its floor (the same passes without drift), onnxruntime."""
    import onnxruntime as ort

    session = open_session(model,
                           provider="cuda" if "CUDAExecutionProvider" in ort.get_available_providers() else "cpu")
    dataset = bind_data(session, data)
    t = time.perf_counter()
    for _ in range(samples):
        clean_metric(session, dataset)
    floor = time.perf_counter() - t
    t = time.perf_counter()
    sample_metrics(session, dataset, LogNormalDrift(0.6), samples=samples)
    drifted = time.perf_counter() - t
    return {"provider": session.provider, "floor_s": floor, "validate_s": drifted, "ratio": drifted / floor}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", default="resnet18,vgg11")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--erm-epochs", type=int, default=15)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--trial-epochs", type=int, default=1)
    ap.add_argument("--final-epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-4, help="harden's --lr (its default 1e-3 destroyed both nets)")
    ap.add_argument("--deadline", type=float, default=None, help="seconds from the start; later runs are skipped")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=HERE / "work" / "gpu")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    ap.add_argument("--pack", type=Path, default=None, help="write the packed data file and stop")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.pack:
        pack(args.data, args.pack)
        print(f"{args.pack}: {args.pack.stat().st_size / 2**20:.1f} MiB")
        return
    t_start = time.perf_counter()
    left = ((lambda: float("inf")) if args.deadline is None
            else (lambda: args.deadline - (time.perf_counter() - t_start)))
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    budget = (dict(trials=2, epochs=1, final_epochs=1, samples=2) if args.smoke else
              dict(trials=args.trials, epochs=args.trial_epochs, final_epochs=args.final_epochs, samples=10,
                   lr=args.lr))
    samples = 2 if args.smoke else args.samples
    results = {"device": args.device, "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
               "torch": torch.__version__, "python": platform.python_version(), "smoke": args.smoke,
               "sigmas": SIGMAS, "samples": samples, "harden_budget": budget, "erm_epochs": args.erm_epochs,
               "models": {}}

    def save() -> None:
        results["seconds"] = round(time.perf_counter() - t_start, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")

    sets = split(load(args.data), args.work, args.smoke)
    x_test, y_test = (torch.from_numpy(a) for a in sets["test"])
    print(f"data ready at {time.perf_counter() - t_start:.0f} s", flush=True)
    for name in args.models.split(","):
        rec = results["models"][name] = {"accuracy": {}, "harden": {}, "skipped": [], "errors": {}}
        work = args.work / name
        work.mkdir(parents=True, exist_ok=True)
        net = NETS[name](width=8 if args.smoke else 64)
        rec["params"] = sum(p.numel() for p in net.parameters())
        t = time.perf_counter()
        log = []
        lr, opt = (0.1, "sgd") if name.startswith("resnet") else (1e-3, "adam")  # VGG-11 has no batch norm
        net = train_erm(*sets["train"], 1 if args.smoke else args.erm_epochs, log, net=net, device=args.device,
                        batch=256, lr=lr, optimizer=opt)
        export(net, work / "base.onnx", shape=(1, 3, 32, 32))
        rec["erm"] = {"seconds": round(time.perf_counter() - t, 1), "optimizer": opt, "lr": lr, "log": log}
        epoch_s = float(np.median([e["seconds"] for e in log]))
        t = time.perf_counter()
        rec["accuracy"]["erm"] = gpu_sweep(work / "base.onnx", x_test, y_test, samples, args.device)
        sweep_s = time.perf_counter() - t
        rec["sweep_seconds"] = round(sweep_s, 1)
        print(f"{name} erm: {rec['accuracy']['erm']} (trained {rec['erm']['seconds']} s, sweep {sweep_s:.0f} s)",
              flush=True)
        try:
            rec["validate"] = validate_ratio(work / "base.onnx", args.work / "signoff.npz", 2 if args.smoke else 5)
        except Exception as exc:  # a report, not a crash: the GPU minutes are spent either way
            rec["errors"]["validate"] = f"{type(exc).__name__}: {exc}"[:500]
        save()
        for method in [m for m in args.methods.split(",") if m]:
            # the harden's epochs at the measured ERM epoch time (bf16 there, fp32 here: x2), its sign-off, the sweep
            need = ((budget["trials"] * budget["epochs"] + budget["final_epochs"]) * epoch_s * 2 * COST.get(method, 1)
                    + sweep_s + 20)
            if left() < need:
                rec["skipped"].append(method)
                print(f"{name} {method}: skipped ({left():.0f} s left, ~{need:.0f} s needed)", flush=True)
                continue
            try:
                if args.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                t = time.perf_counter()
                r = ftcompile.harden(work / "base.onnx", args.work / "train.npz", args.work / "val.npz",
                                     test=args.work / "signoff.npz", out=work / f"{method}.onnx", validate_samples=3,
                                     plot=False, config=HardenConfig(method=method, sigma=0.6, device=args.device,
                                                                     batch_size=128, **budget))
                rec["harden"][method] = {
                    "seconds": round(time.perf_counter() - t, 1), "rates": [round(v, 3) for v in r.rates],
                    "signoff_before": round(100 * r.before.stats.mean, 2),
                    "signoff_after": round(100 * r.after.stats.mean, 2),
                    "gpu_peak_mb": (round(torch.cuda.max_memory_allocated() / 2**20) if args.device.startswith("cuda")
                                    else None),
                    "rss_peak_mb": round(peak_rss_mb())}
                rec["accuracy"][method] = gpu_sweep(work / f"{method}.onnx", x_test, y_test, samples, args.device)
                print(f"{name} {method}: {rec['accuracy'][method]} ({rec['harden'][method]['seconds']} s)", flush=True)
            except Exception as exc:
                rec["errors"][method] = f"{type(exc).__name__}: {exc}"[:500]
                traceback.print_exc()
            save()
    save()
    for name, rec in results["models"].items():
        for m, row in rec["accuracy"].items():
            print(f"{name:9s} {m:16s} " + " ".join(f"{v[0]:6.2f}" for v in row), flush=True)


if __name__ == "__main__":
    main()
