"""A compact one-stage pedestrian detector (CenterNet, Zhou et al. 2019, "Objects as Points"), small enough to
train from scratch on 120 PennFudan images on a 2-core CPU.

It follows torchvision's detector contract, so ``ftcompile harden`` takes it as a module factory
(``examples.pennfudan_det.detector:erm``) exactly as it would take a torchvision detector:

- training mode: ``model(images, targets)`` -> ``{"heatmap": ..., "size": ..., "offset": ...}`` losses, where
  ``targets`` is a list of ``{"boxes": (k, 4) x1 y1 x2 y2 pixels, "labels": (k,)}``;
- eval mode: ``model(images)`` -> one ``{"boxes", "scores", "labels"}`` per image, the ``top`` highest peaks of
  the centre heatmap (a 3 x 3 max-pool keeps local maxima, CenterNet's replacement for NMS, so the exported ONNX
  has no NMS and fixed output shapes).

Network: a stride-32 convolutional encoder (16-128 channels, BatchNorm, ReLU), a top-down path back to stride 4
with lateral additions (a small FPN), and three heads at stride 4: the centre heatmap (one class, focal loss
with CenterNet's Gaussian penalty reduction), the box size (L1 on log width/height) and the sub-pixel centre
offset (L1).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 4
# the ERM weights prepare.py writes; PENNFUDAN_DET_WORK names another work folder (run.py --work sets it, so that
# the factory `examples.pennfudan_det.detector:erm`, called with no arguments by ftcompile, loads that folder's)
WEIGHTS = Path(os.environ.get("PENNFUDAN_DET_WORK", Path(__file__).resolve().parent / "work")) / "detector.pt"


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class CenterNet(nn.Module):
    # the last layer of each head predicts, it gets no dropout site (ftcompile reads this attribute)
    output_layers = ("heat.1", "size.1", "offset.1")

    def __init__(self, widths=(16, 32, 64, 96, 128), top: int = 20):
        super().__init__()
        a, b, c, d, e = widths
        self.top = top
        self.stem = nn.Sequential(conv(3, a, 2), conv(a, a))                 # stride 2
        self.down = nn.ModuleList([nn.Sequential(conv(cin, cout, 2), conv(cout, cout))
                                   for cin, cout in ((a, b), (b, c), (c, d), (d, e))])  # strides 4..32
        self.lateral = nn.ModuleList([nn.Conv2d(w, 64, 1) for w in (b, c, d, e)])
        self.smooth = conv(64, 64)
        self.heat = nn.Sequential(conv(64, 64), nn.Conv2d(64, 1, 1))
        self.size = nn.Sequential(conv(64, 64), nn.Conv2d(64, 2, 1))
        self.offset = nn.Sequential(conv(64, 64), nn.Conv2d(64, 2, 1))
        nn.init.constant_(self.heat[1].bias, -2.19)  # prior 0.1 on every cell (the paper's focal-loss init)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feats, h = [], self.stem(x)
        for stage in self.down:
            h = stage(h)
            feats.append(h)
        top = self.lateral[-1](feats[-1])
        for lat, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            top = F.interpolate(top, size=f.shape[-2:], mode="nearest") + lat(f)
        return self.smooth(top)

    def forward(self, images: torch.Tensor, targets: list | None = None):
        f = self.features(images)
        heat, size, offset = self.heat(f), self.size(f), self.offset(f)
        if self.training:
            return losses(heat, size, offset, targets)
        return decode(heat, size, offset, self.top)


def gaussian_radius(h: float, w: float, overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre shift that keeps IoU >= ``overlap`` with the true box (its three
    corner cases, in output cells)."""
    a1, b1, c1 = 1, h + w, w * h * (1 - overlap) / (1 + overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * a1 * c1)) / 2
    a2, b2, c2 = 4, 2 * (h + w), (1 - overlap) * w * h
    r2 = (b2 + math.sqrt(b2 ** 2 - 4 * a2 * c2)) / 2
    a3, b3, c3 = 4 * overlap, -2 * overlap * (h + w), (overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return max(0.0, min(r1, r2, r3))


def losses(heat, size, offset, targets) -> dict[str, torch.Tensor]:
    n, _, hh, ww = heat.shape
    goal = torch.zeros_like(heat)
    ys = torch.arange(hh, dtype=heat.dtype)[:, None]
    xs = torch.arange(ww, dtype=heat.dtype)[None, :]
    index, size_goal, offset_goal = [], [], []
    for i, t in enumerate(targets):
        for x1, y1, x2, y2 in (t["boxes"] / STRIDE).tolist():
            cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            px, py = min(int(cx), ww - 1), min(int(cy), hh - 1)
            sigma = (2 * max(0, int(gaussian_radius(bh, bw))) + 1) / 6
            blob = torch.exp(-((xs - px) ** 2 + (ys - py) ** 2) / (2 * sigma ** 2))
            goal[i, 0] = torch.maximum(goal[i, 0], blob)
            index.append((i, py, px))
            size_goal.append([math.log(bw), math.log(bh)])
            offset_goal.append([cx - px, cy - py])
    p = torch.sigmoid(heat).clamp(1e-4, 1 - 1e-4)
    peak = goal.eq(1).to(heat.dtype)
    focal = -(peak * (1 - p) ** 2 * torch.log(p) + (1 - peak) * (1 - goal) ** 4 * p ** 2 * torch.log(1 - p)).sum()
    count = max(1, len(index))
    if not index:
        zero = heat.sum() * 0
        return {"heatmap": focal, "size": zero, "offset": zero}
    i, y, x = (torch.tensor(v) for v in zip(*index))
    return {"heatmap": focal / count,
            "size": 0.5 * F.l1_loss(size[i, :, y, x], torch.tensor(size_goal, dtype=heat.dtype)),
            "offset": F.l1_loss(offset[i, :, y, x], torch.tensor(offset_goal, dtype=heat.dtype))}


def decode(heat, size, offset, top: int) -> list[dict[str, torch.Tensor]]:
    """The ``top`` strongest local maxima of each image's heatmap as boxes in input pixels."""
    p = torch.sigmoid(heat)
    p = p * (F.max_pool2d(p, 3, stride=1, padding=1) == p).to(p.dtype)
    n, _, hh, ww = p.shape
    scores, idx = p.flatten(1).topk(top, dim=1)
    ys, xs = (idx // ww).to(p.dtype), (idx % ww).to(p.dtype)
    wh = size.flatten(2).gather(2, idx[:, None].expand(-1, 2, -1)).exp()
    off = offset.flatten(2).gather(2, idx[:, None].expand(-1, 2, -1))
    cx, cy = xs + off[:, 0], ys + off[:, 1]
    boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], -1) * STRIDE
    labels = torch.ones_like(idx)
    return [{"boxes": boxes[k], "scores": scores[k], "labels": labels[k]} for k in range(n)]


def erm() -> CenterNet:
    """The ERM detector ``prepare.py`` trained (``work/detector.pt``, a plain state dict)."""
    model = CenterNet()
    if not WEIGHTS.is_file():
        raise FileNotFoundError(f"{WEIGHTS}: run examples/pennfudan_det/prepare.py first")
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    return model.eval()
