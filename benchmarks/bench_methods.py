"""BayesFT Figure 3 on this project: accuracy vs drift sigma of every method, per task.

Tasks (data and budgets stated; see datasets.py):
- mnist-mlp: MLP 784-512-512-10 on the 5,000 real MNIST digits (3,500 / 500 / 1,000), hardened at sigma 1.0.
- mnist-lenet: LeNet-5, same data, hardened at sigma 0.6.
- fashion-mlp: MLP 784-256-256-10 on Fashion-MNIST (10,000 train / 1,000 val / 2,000 test), sigma 1.0.
- cifar-cnn (opt-in, --tasks ...,cifar-cnn): the examples/cifar_cnn CNN (18,000 / 2,000 / 2,000 CIFAR-10 images)
  at sigma 0.6 with a reduced budget (10 trials x 1 epoch, 5 final epochs, 10 objective samples, --workers 2),
  in the example's work folder: with --reuse, models that examples/cifar_cnn/run.py already hardened there with
  these flags are measured, not hardened again.
Each method runs `ftcompile.harden` in a fresh process (default flags unless stated: 20 trials x 3 epochs,
15 final epochs, 20 objective samples) from the same ERM model; every number is `ftcompile.sweep` (onnxruntime,
K samples) of the exported ONNX on the task's test split, which the search never saw.
Usage: python benchmarks/bench_methods.py [--tasks mnist-mlp,mnist-lenet,fashion-mlp] [--methods ...] [--samples 100]
"""
import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_harden import run_harden  # noqa: E402
from datasets import example, fashion_mnist, mnist, save  # noqa: E402
from models import export, lenet5, mlp, train_erm  # noqa: E402

import ftcompile  # noqa: E402
from ftcompile.runtime.plot import plot_curves  # noqa: E402

SIGMAS = [0.0, 0.3, 0.6, 0.9, 1.2, 1.5]
METHODS = ["erm", "fixed-dropout", "noise-injection", "awp", "ftna", "bayesft", "bayesft+noise"]
TASKS = {
    "mnist-mlp": dict(sigma=1.0, data=mnist, net=lambda: mlp(512, 2)),
    "mnist-lenet": dict(sigma=0.6, data=mnist, net=lenet5),
    "fashion-mlp": dict(sigma=1.0, data=fashion_mnist, net=lambda: mlp(256, 2)),
    "cifar-cnn": dict(sigma=0.6, data=None, net=None, work=ROOT / "examples" / "cifar_cnn" / "work", base="cnn.onnx",
                      prefix="cnn.", flags=dict(trials=10, epochs=1, final_epochs=5, samples=10, workers=2)),
}


def prepare(task: str, work: Path) -> None:
    spec = TASKS[task]
    if spec["data"] is None:  # the CIFAR example builds its own splits and ERM model
        example("cifar_cnn").main(ROOT.parent / "shared" / "data", work)
        return
    if (work / "base.onnx").exists():
        return
    data = spec["data"]()
    save(data, work)
    torch.manual_seed(0)
    net = train_erm(*data["train"], net=spec["net"]())
    export(net.eval(), work / "base.onnx")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="mnist-mlp,mnist-lenet,fashion-mlp")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--reuse", action="store_true", help="measure hardened models already in the work folder")
    ap.add_argument("--work", type=Path, default=HERE / "work" / "methods")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "methods.json")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {"sigmas": SIGMAS, "tasks": {}}
    for task in args.tasks.split(","):
        spec = TASKS[task]
        work = spec.get("work", args.work / task)
        try:
            prepare(task, work)
        except (FileNotFoundError, SystemExit) as exc:  # data this machine lacks: say so, run the rest
            print(f"{task}: skipped ({exc})", flush=True)
            results["tasks"][task] = {"skipped": str(exc)}
            continue
        base, prefix = spec.get("base", "base.onnx"), spec.get("prefix", "")
        runs, models = {}, [work / base]
        for method in args.methods.split(","):
            if method == "erm":
                continue
            out = work / f"{prefix}{method}.onnx"
            report = out.with_name(out.stem + ".report.json")
            if args.reuse and out.exists() and report.exists():
                runs[method] = {"seconds": json.loads(report.read_text())["seconds"], "peak_mb": float("nan")}
            else:
                runs[method] = run_harden(work, base, out.name, method=method, sigma=spec["sigma"],
                                          validate_samples=20, **spec.get("flags", {}))
            models.append(out)
            print(f"{task} {method}: {runs[method]['seconds']:.0f} s, peak {runs[method]['peak_mb']:.0f} MB",
                  flush=True)
        curves = ftcompile.sweep(models, work / "test.npz", sigmas=SIGMAS, samples=args.samples).curves
        labels = ["erm", *runs]
        table = {m: [round(100 * p.mean, 2) for p in pts] for m, pts in zip(labels, curves.values())}
        for m, row in table.items():
            print(f"{task:12s} {m:16s} " + " ".join(f"{v:6.2f}" for v in row), flush=True)
        plot_curves(list(zip(labels, curves.values())), args.out.with_name(f"methods_{task}.png"),
                    title=f"{task}: hardened at sigma {spec['sigma']:g}")
        results["tasks"][task] = {"target_sigma": spec["sigma"], "samples": args.samples, "accuracy": table,
                                  "cost": {m: {"seconds": round(r["seconds"], 1),
                                               "peak_mb": None if r["peak_mb"] != r["peak_mb"] else round(r["peak_mb"])}
                                           for m, r in runs.items()},
                                  "flags": spec.get("flags", "defaults")}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")  # after each task: partial runs keep results


if __name__ == "__main__":
    main()
