"""GTSRB (43 traffic-sign classes) with a spatial transformer in front of a CNN: the ERM model the paper's GTSRB task
hardens (Arcos-Garcia et al. 2018 use three transformers and wider layers; this is a reduced one for 2 CPU cores).

Network: localization (max-pool, conv 8 5x5, max-pool, conv 10 5x5, max-pool, linear 32, linear 6 started at the
identity) -> affine grid -> grid sample -> classifier (conv 32/32, pool, conv 64/64, pool, conv 128, pool,
linear 256, linear 43; BatchNorm, folded into the convolutions by the exporter).
Data (from --data, default ../shared/data, see its SOURCES.md; never copied into the project): the 25,087
training images are ordered in tracks of about 30 images of one physical sign, so the validation split holds
out whole tracks: per class the last contiguous 10% of its images (rounded up to whole tracks of 30).
All 7,949 test images. Normalized per channel with the training mean and std.
Training: AdamW (weight decay 1e-4), batch 128, one-cycle learning rate 2e-3, random
translations of up to 2 pixels (no flips: mirrored signs change meaning).
Writes work/{train,val,test}.npz and the ERM model to benchmarks/models/gtsrb_stn.onnx (opset 20: AffineGrid,
GridSample; kept in the repository so that benchmarks never retrain it: when it exists only the splits are
written), with its training log beside it (gtsrb_stn.json; the saved model: `--epochs 8`, 98.53% on the 7,949
test images).
Usage: python examples/gtsrb_stn/prepare.py [--epochs 12] [--threads 1] [--data DIR] [--model PATH]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MODEL = ROOT / "benchmarks" / "models" / "gtsrb_stn.onnx"
sys.path.insert(0, str(ROOT))
from examples.data_folder import DEFAULT, require  # noqa: E402


def conv(cin: int, cout: int) -> list:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class STNNet(nn.Module):
    def __init__(self, classes: int = 43):
        super().__init__()
        self.loc = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(3, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 10, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(10 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 6))
        with torch.no_grad():  # start at the identity transform
            self.loc[-1].weight.zero_()
            self.loc[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1, 0]))
        self.features = nn.Sequential(*conv(3, 32), *conv(32, 32), nn.MaxPool2d(2), *conv(32, 64), *conv(64, 64),
                                      nn.MaxPool2d(2), *conv(64, 128), nn.MaxPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(128 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x):
        theta = self.loc(x).view(-1, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return self.head(self.features(F.grid_sample(x, grid, align_corners=False)))


def track_split(y: np.ndarray, share: float = 0.1, track: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the last ``share`` of its (contiguous) images, rounded up to whole tracks, for validation."""
    val = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(len(idx) - track, int(np.ceil(share * len(idx) / track)) * track)
        val.append(idx[-k:])
    val = np.sort(np.concatenate(val))
    return np.setdiff1d(np.arange(len(y)), val), val


def shift(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to 2 pixels (pad 2, crop 32), per image."""
    n = len(xb)
    padded = F.pad(xb, (2, 2, 2, 2), mode="replicate")
    dx, dy = torch.randint(0, 5, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(32))[:, :, None].expand(n, 32, 32)
    cols = (dx[:, None] + torch.arange(32))[:, None, :].expand(n, 32, 32)
    return padded.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows, cols].permute(0, 3, 1, 2)


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        return float(sum((net(xb).argmax(1) == yb).sum() for xb, yb in zip(x.split(1000), y.split(1000))) / len(y))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", type=Path, default=MODEL, help="where the ERM model goes (kept if it exists)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    require(args.data, "gtsrb32_train.npz", "gtsrb32_test.npz")
    tr, te = np.load(args.data / "gtsrb32_train.npz"), np.load(args.data / "gtsrb32_test.npz")
    x = tr["x"].astype(np.float32).transpose(0, 3, 1, 2) / 255
    mean, std = x.mean((0, 2, 3), keepdims=True), x.std((0, 2, 3), keepdims=True)
    norm = lambda a: ((a.astype(np.float32).transpose(0, 3, 1, 2) / 255 - mean) / std).astype(np.float32)  # noqa: E731
    x, y, xt, yt = (x - mean) / std, tr["y"].astype(np.int64), norm(te["x"]), te["y"].astype(np.int64)
    train_idx, val_idx = track_split(y)
    np.savez(args.work / "train.npz", x=x[train_idx], y=y[train_idx])
    np.savez(args.work / "val.npz", x=x[val_idx], y=y[val_idx])
    np.savez(args.work / "test.npz", x=xt, y=yt)
    print(f"train {len(train_idx)}, val {len(val_idx)} (whole tracks held out), test {len(yt)}", flush=True)
    if args.model.exists():
        print(f"{args.model} exists; wrote the splits only")
        return

    torch.manual_seed(0)
    net = STNNet()
    xtr, ytr = torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx])
    xva, yva = torch.from_numpy(x[val_idx]), torch.from_numpy(y[val_idx])
    # Adam: SGD at 0.05 left the network at chance after an epoch (the localization net's transforms ran off
    # the image before the classifier had learned anything)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.epochs * -(-len(xtr) // 128),
                                                pct_start=0.2)
    gen, log, t0 = torch.Generator().manual_seed(0), [], time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(xtr), generator=gen).split(128):
            loss = F.cross_entropy(net(shift(xtr[idx], gen)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log.append({"epoch": epoch + 1, "loss": round(loss.item(), 4), "val": round(accuracy(net, xva, yva), 4),
                    "seconds": round(time.perf_counter() - t0)})
        print(json.dumps(log[-1]), flush=True)
    log.append({"test": round(accuracy(net, torch.from_numpy(xt), torch.from_numpy(yt)), 4)})
    net.eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), str(args.model), dynamo=False, opset_version=20,
                      input_names=["x"], output_names=["logits"], dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}})
    args.model.with_suffix(".json").write_text(json.dumps(log, indent=1))
    print(f"wrote {args.model}: test accuracy {log[-1]['test']:.4f}")


if __name__ == "__main__":
    main()
