"""CIFAR-10 for the CNN example: normalized NCHW float32 splits and an ERM AlexNet-style CNN in ONNX.

Reads `cifar10_train20k.npz` / `cifar10_test.npz` (x uint8 NHWC, y int64) from --data (default the
project's ../shared/data; docs/data.md) or any folder holding files of that form.
Splits (seed 0): train 18,000 / val 2,000 from the 20k training subset; test = --test-size images of the
10,000 test images (default 2,000, all with --test-size 10000).
Usage: python examples/cifar_cnn/prepare.py [--data DIR] [--work DIR] [--epochs 10] [--test-size 2000]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from examples.data_folder import DEFAULT, require  # noqa: E402
from models import cifar_cnn, export, train_erm  # noqa: E402

MEAN = np.array([0.4914, 0.4822, 0.4465], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.2470, 0.2435, 0.2616], np.float32).reshape(1, 3, 1, 1)


def normalize(x: np.ndarray) -> np.ndarray:
    return ((x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)


def main(data: Path, work: Path, epochs: int = 10, test_size: int = 2000) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if (work / "cnn.onnx").exists():
        return
    require(data, "cifar10_train20k.npz", "cifar10_test.npz")  # x uint8 NHWC, y int64
    files = {name: data / f"cifar10_{name}.npz" for name in ("train20k", "test")}
    train, test = np.load(files["train20k"]), np.load(files["test"])
    order = np.random.default_rng(0).permutation(len(train["y"]))
    x, y = normalize(train["x"]), train["y"].astype(np.int64)
    np.savez(work / "train.npz", x=x[order[:18000]], y=y[order[:18000]])
    np.savez(work / "val.npz", x=x[order[18000:]], y=y[order[18000:]])
    pick = np.random.default_rng(1).permutation(len(test["y"]))[:test_size]
    np.savez(work / "test.npz", x=normalize(test["x"][pick]), y=test["y"][pick].astype(np.int64))
    torch.set_num_threads(2)
    net = train_erm(x[order[:18000]], y[order[:18000]], epochs=epochs, net=cifar_cnn())
    export(net, work / "cnn.onnx", shape=(1, 3, 32, 32))
    print(f"wrote {work}/cnn.onnx and train/val/test.npz (18000/2000/{test_size} CIFAR-10 images)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--test-size", type=int, default=2000)
    a = ap.parse_args()
    main(a.data, a.work, a.epochs, a.test_size)
