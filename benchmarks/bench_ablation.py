"""BayesFT Figure 2 on this project's runtime: which architecture choices make an MLP tolerate drift.

MLPs on the 5,000 real MNIST digits (3,500 train / 1,000 test), trained ERM (Adam, 15 epochs, seed 0), exported
to ONNX, then accuracy vs lognormal sigma (0 to 1.5) measured by `ftcompile.sweep` (onnxruntime, K samples,
every learned parameter drifted). The base is 784-256-256-10 with ReLU; each panel changes one thing:
(a) dropout 0.3 vs alpha dropout 0.3 vs none after every hidden layer; (b) batch / layer / instance / group
normalization vs none; (c) 1, 2, 4, 6 hidden layers; (d) ReLU / GELU / Tanh / Sigmoid.
Usage: python benchmarks/bench_ablation.py [--samples 50] [--epochs 15]
"""
import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from datasets import mnist, save  # noqa: E402
from models import export, train_erm  # noqa: E402

import ftcompile  # noqa: E402
from ftcompile.runtime.plot import plot_curves  # noqa: E402

SIGMAS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
ACTS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class InstanceNormFeatures(nn.Module):
    """Instance norm of a feature vector: normalize each example over its features (no running stats)."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.InstanceNorm1d(1, affine=False)

    def forward(self, x):
        return self.norm(x.unsqueeze(1)).squeeze(1)


NORMS = {"batch": nn.BatchNorm1d, "layer": nn.LayerNorm, "instance": InstanceNormFeatures,
         "group": lambda w: nn.GroupNorm(4, w)}


def mlp(depth=2, width=256, act="relu", norm=None, dropout=None) -> nn.Module:
    layers, prev = [nn.Flatten()], 784
    for _ in range(depth):
        layers.append(nn.Linear(prev, width))
        if norm:
            layers.append(NORMS[norm](width))
        layers.append(ACTS[act]())
        if dropout == "dropout":
            layers.append(nn.Dropout(0.3))
        elif dropout == "alpha":
            layers.append(nn.AlphaDropout(0.3))
        prev = width
    return nn.Sequential(*layers, nn.Linear(prev, 10))


PANELS = {
    "a_dropout": {"none": {}, "dropout 0.3": {"dropout": "dropout"}, "alpha dropout 0.3": {"dropout": "alpha"}},
    "b_normalization": {"none": {}, **{f"{n} norm": {"norm": n} for n in NORMS}},
    "c_depth": {f"{d} hidden": {"depth": d} for d in (1, 2, 4, 6)},
    "d_activation": {a: {"act": a} for a in ACTS},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--work", type=Path, default=HERE / "work" / "ablation")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ablation.json")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = mnist()
    save(data, args.work)
    x, y = data["train"]
    results = {"sigmas": SIGMAS, "samples": args.samples, "epochs": args.epochs, "panels": {}}
    trained = {}
    for panel, configs in PANELS.items():
        results["panels"][panel] = {}
        curves = []
        for label, kwargs in configs.items():
            key = json.dumps(kwargs, sort_keys=True)
            path = args.work / f"mlp_{hashlib.sha1(key.encode()).hexdigest()[:8]}.onnx"
            if key not in trained:  # "none" and "2 hidden"/"relu" are the same base network
                t = time.perf_counter()
                torch.manual_seed(0)
                export(train_erm(x, y, epochs=args.epochs, net=mlp(**kwargs)).eval(), path)
                trained[key] = (path, time.perf_counter() - t)
            path = trained[key][0]
            points = list(ftcompile.sweep([path], args.work / "test.npz", sigmas=SIGMAS,
                                          samples=args.samples).curves.values())[0]
            results["panels"][panel][label] = [round(100 * p.mean, 2) for p in points]
            curves.append((label, points))
            print(f"{panel:16s} {label:18s} " + " ".join(f"{100 * p.mean:6.2f}" for p in points), flush=True)
        plot_curves(curves, args.out.with_name(f"ablation_{panel}.png"), title=f"Figure 2{panel[0]}: MLP on MNIST")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
