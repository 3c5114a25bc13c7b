"""The full CIFAR-10 Figure 3 for one GPU: ResNet-18 and VGG-11, every method, and validate on CUDA.

Data: the 20,000 CIFAR-10 training images of ../shared/data (18,000 train / 2,000 val) and all 10,000
test images. ERM 30 epochs, then each method through `ftcompile harden --device cuda` (default search
budget: 20 trials x 3 epochs, 15 final epochs, 20 objective samples), then `sweep` with onnxruntime's
CUDA provider (sigma 0 to 1.5, K samples) on the test set, and validate's time against its floor on CUDA.
`--smoke` shrinks everything (width 8, 512 images, 2 trials, CPU) so that a test runs the code path.
Usage: python benchmarks/bench_gpu.py [--device cuda] [--models resnet18,vgg11] [--samples 100] [--smoke]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_harden import run_harden  # noqa: E402
from datasets import example  # noqa: E402
from models import export, resnet18_cifar, train_erm, vgg11_cifar  # noqa: E402

normalize = example("cifar_cnn").normalize

import ftcompile  # noqa: E402
from ftcompile.api import bind_data, open_session  # noqa: E402
from ftcompile.runtime.drift import LogNormalDrift  # noqa: E402
from ftcompile.runtime.validate import clean_metric, sample_metrics  # noqa: E402

SIGMAS = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]
METHODS = ["fixed-dropout", "noise-injection", "awp", "ftna", "bayesft", "bayesft+noise"]
NETS = {"resnet18": resnet18_cifar, "vgg11": vgg11_cifar}


def split(data_dir: Path, work: Path, smoke: bool) -> None:
    train, test = np.load(data_dir / "cifar10_train20k.npz"), np.load(data_dir / "cifar10_test.npz")
    order = np.random.default_rng(0).permutation(len(train["y"]))
    n_train, n_val, n_test = (512, 128, 256) if smoke else (18000, 2000, len(test["y"]))
    x, y = normalize(train["x"]), train["y"].astype(np.int64)
    work.mkdir(parents=True, exist_ok=True)
    np.savez(work / "train.npz", x=x[order[:n_train]], y=y[order[:n_train]])
    np.savez(work / "val.npz", x=x[order[n_train:n_train + n_val]], y=y[order[n_train:n_train + n_val]])
    np.savez(work / "test.npz", x=normalize(test["x"][:n_test]), y=test["y"][:n_test].astype(np.int64))


def validate_ratio(model: Path, data: Path, provider: str, samples: int) -> dict:
    session = open_session(model, provider=provider)
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
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=HERE / "work" / "gpu")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    provider = "cuda" if args.device.startswith("cuda") else "cpu"
    budget = dict(trials=2, epochs=1, final_epochs=1, samples=2, validate_samples=2) if args.smoke else {}
    results = {"device": args.device, "smoke": args.smoke, "sigmas": SIGMAS, "models": {}}
    split(args.data, args.work, args.smoke)
    d = np.load(args.work / "train.npz")
    for name in args.models.split(","):
        work = args.work / name
        work.mkdir(exist_ok=True)
        for f in ("train", "val", "test"):
            (work / f"{f}.npz").write_bytes((args.work / f"{f}.npz").read_bytes())
        net = NETS[name](width=8 if args.smoke else 64)
        export(train_erm(d["x"], d["y"], epochs=1 if args.smoke else 30, net=net, device=args.device),
               work / "base.onnx", shape=(1, 3, 32, 32))
        runs, models = {}, [work / "base.onnx"]
        for method in args.methods.split(","):
            runs[method] = run_harden(work, "base.onnx", f"{method}.onnx", method=method, sigma=0.6,
                                      device=args.device, **budget)
            models.append(work / f"{method}.onnx")
            print(f"{name} {method}: {runs[method]['seconds']:.0f} s", flush=True)
        curves = ftcompile.sweep(models, work / "test.npz", sigmas=SIGMAS, samples=2 if args.smoke else args.samples,
                                 provider=provider).curves
        table = {m: [round(100 * p.mean, 2) for p in pts] for m, pts in zip(["erm", *runs], curves.values())}
        for m, row in table.items():
            print(f"{name:9s} {m:16s} " + " ".join(f"{v:6.2f}" for v in row), flush=True)
        results["models"][name] = {"accuracy": table, "seconds": {m: r["seconds"] for m, r in runs.items()},
                                   "validate": validate_ratio(work / "base.onnx", work / "test.npz", provider,
                                                              2 if args.smoke else 20)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
