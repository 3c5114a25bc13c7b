"""Harden the CIFAR-10 CNN at sigma 0.6 with bayesft and bayesft+noise (2 worker processes) and compare.

Budget sized for 2 CPU cores (about 15 minutes in all): 10 trials x 1 epoch on the 18,000 training images,
5 final epochs, 10 drift samples in the objective (2,000 validation images), sign-off with 100 samples on
2,000 test images. Use --device cuda and bigger budgets where a GPU is available.
Usage: python examples/cifar_cnn/run.py [--data DIR] [--methods bayesft,bayesft+noise] [extra harden flags]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
sys.path.insert(0, str(HERE))
from prepare import DEFAULT, main as prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT, help="folder with cifar10_train20k.npz and cifar10_test.npz")
    ap.add_argument("--methods", default="bayesft,bayesft+noise")
    args, extra = ap.parse_known_args()
    prepare(args.data, WORK)
    out_json = HERE / "results.json"
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    for method in args.methods.split(","):
        out = f"cnn.{method}.onnx"
        cmd = ["harden", "cnn.onnx", "--train", "train.npz", "--val", "val.npz", "--test", "test.npz",
               "--sigma", "0.6", "--method", method, "--trials", "10", "--epochs", "1", "--final-epochs", "5",
               "--samples", "10", "--workers", "2", "--out", out, *extra]
        print("$ ftcompile " + " ".join(cmd), flush=True)
        code = subprocess.run([sys.executable, "-m", "ftcompile.cli", *cmd], cwd=WORK).returncode
        if code not in (0, 1):  # 1: gate failed, the model and report are still written
            sys.exit(f"harden {method} exited {code}; see the error above.")
        report = json.loads((WORK / f"cnn.{method}.report.json").read_text())
        results[method] = {k: report[k] for k in ("rates", "seconds", "verdict")}
        results[method].update(before=report["before"]["mean"], after=report["after"]["mean"],
                               clean_before=report["before"]["clean"], clean_after=report["after"]["clean"])
    out_json.write_text(json.dumps(results, indent=2) + "\n")
    for method, r in results.items():
        print(f"{method:14s} sigma 0.6: {100 * r['before']:.2f}% -> {100 * r['after']:.2f}% "
              f"(clean {100 * r['clean_before']:.2f} -> {100 * r['clean_after']:.2f}), {r['seconds']:.0f} s")


if __name__ == "__main__":
    main()
