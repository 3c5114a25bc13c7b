"""The MLP the paper starts from: 784-512-512-10 on the 5,000 real MNIST digits, hardened at sigma 1.0.

Same split, ERM training and flags as the `mnist-mlp` task of benchmarks/bench_methods.py: 3,500 train / 500 val /
1,000 test (seed 0), Adam 15 epochs, then `ftcompile harden --sigma 1.0` with default flags.
Usage: python examples/mnist_mlp/run.py [--method bayesft] [extra harden flags]
"""
import argparse
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
sys.path.insert(0, str(HERE.parent.parent / "benchmarks"))
from datasets import mnist, save  # noqa: E402
from models import export, mlp, train_erm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="bayesft")
    args, extra = ap.parse_known_args()
    if not (WORK / "mlp.onnx").exists():
        data = mnist()
        save(data, WORK)
        torch.manual_seed(0)
        export(train_erm(*data["train"], net=mlp(512, 2)).eval(), WORK / "mlp.onnx")
    cmd = ["harden", "mlp.onnx", "--train", "train.npz", "--val", "val.npz", "--test", "test.npz", "--sigma", "1.0",
           "--method", args.method, "--out", f"mlp.{args.method}.onnx", *extra]
    print("$ cd", WORK, "&& ftcompile", " ".join(cmd), flush=True)
    sys.exit(subprocess.run([sys.executable, "-m", "ftcompile.cli", *cmd], cwd=WORK).returncode)


if __name__ == "__main__":
    main()
