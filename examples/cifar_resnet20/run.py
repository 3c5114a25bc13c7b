"""ResNet-20 on CIFAR-10 through the normal `ftcompile harden` path, at a budget 2 CPU cores can pay for.

1. The ERM model (benchmarks/models/resnet20_cifar10.onnx, from prepare.py) is swept over sigma on a test
   subset; the harden sigma is the smallest where ERM loses at least --min-loss points.
2. Each --methods entry runs `ftcompile harden` (CLI, subprocess) with the budget flags below; the sign-off
   runs on the same test subset. Reports (seconds, the harden process's own peak memory, before/after)
   are collected into benchmarks/results/resnet20.json.
Usage: python examples/cifar_resnet20/run.py [--methods noise-injection,bayesft] [--test-size 2000]
       [--trials 8 --epochs 1 --trial-fraction 0.1 --final-epochs 10 --rates per-stage]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODEL = ROOT / "benchmarks" / "models" / "resnet20_cifar10.onnx"
OUT = ROOT / "benchmarks" / "results" / "resnet20.json"
SIGMAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--methods", default="noise-injection,bayesft")
    ap.add_argument("--test-size", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=10, help="drift samples of the ERM sweep")
    ap.add_argument("--min-loss", type=float, default=0.20)
    ap.add_argument("--sigma", type=float, default=None, help="skip the sweep and harden at this sigma")
    ap.add_argument("--flags", default="--trials 8 --epochs 1 --trial-fraction 0.1 --final-epochs 10 "
                                       "--rates per-stage --samples 10 --validate-samples 20 --lr 5e-4")
    args = ap.parse_args()
    import ftcompile

    if not MODEL.exists() or not (args.work / "train.npz").exists():
        sys.exit(f"error: run examples/cifar_resnet20/prepare.py first ({MODEL} and {args.work}/train.npz).")
    test = np.load(args.work / "test.npz")
    pick = np.random.default_rng(1).permutation(len(test["y"]))[:args.test_size]
    subset = args.work / f"test{args.test_size}.npz"
    np.savez(subset, x=test["x"][pick], y=test["y"][pick])
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    if args.sigma is None:
        curve = ftcompile.sweep([MODEL], subset, sigmas=SIGMAS, samples=args.samples).curves[MODEL.stem]
        results["erm_sweep"] = {f"{p.sigma:g}": round(100 * p.mean, 2) for p in curve}
        clean = curve[0].mean
        sigma = next((p.sigma for p in curve if clean - p.mean >= args.min_loss), SIGMAS[-1])
        print(f"ERM on {args.test_size} test images: " + ", ".join(f"{p.sigma:g}: {100 * p.mean:.2f}" for p in curve))
    else:
        sigma = args.sigma
    results["sigma"] = sigma
    runs = results.setdefault("runs", {})
    for method in args.methods.split(","):
        out = args.work / f"resnet20.{method}.onnx"
        cmd = [sys.executable, "-m", "ftcompile.cli", "harden", str(MODEL), "--train", str(args.work / "train.npz"),
               "--val", str(args.work / "val.npz"), "--test", str(subset), "--sigma", f"{sigma:g}", "--method", method,
               "--out", str(out), "--no-plot", "--json", *args.flags.split()]
        print("$ " + " ".join(cmd[2:]), flush=True)
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode not in (0, 1):
            print(res.stderr[-2000:])
            continue
        report = json.loads(res.stdout)
        runs[method] = {"flags": args.flags or "defaults", "test_size": args.test_size, "seconds": round(report["seconds"]), "peak_mb": round(report["peak_mb"]),
                        "rates": report["rates"], "before": {k: report["before"][k] for k in ("clean", "mean", "total_ci_low")},
                        "after": {k: report["after"][k] for k in ("clean", "mean", "total_ci_low")}}
        runs[method]["method"] = report["config"]["method"]  # what auto resolved to
        print(json.dumps({method: runs[method]}), flush=True)
        OUT.write_text(json.dumps(results, indent=2) + "\n")
    OUT.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
