"""A tiny detector and synthetic box data for the module-harden tests (the PennFudan example's CenterNet, narrow)."""
from __future__ import annotations

import numpy as np
import torch

from examples.pennfudan_det.detector import CenterNet

SIZE = 32


def tiny() -> CenterNet:
    """The factory the tests name as ``tests.search.detectors:tiny`` (seeded: the same weights every call)."""
    torch.manual_seed(0)
    return CenterNet(widths=(4, 8, 8, 8, 8), top=4).eval()


def not_a_module():
    return "a string"


def boxes_data(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` noisy 32 x 32 images, each with one or two bright rectangles (class 1) and their boxes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.1, (n, 3, SIZE, SIZE)).astype(np.float32)
    boxes, count = np.zeros((n, 2, 4), np.float32), rng.integers(1, 3, n)
    for i in range(n):
        for k in range(count[i]):
            w, h = rng.integers(6, 12, 2)
            x1, y1 = rng.integers(0, SIZE - w), rng.integers(0, SIZE - h)
            x[i, :, y1:y1 + h, x1:x1 + w] += 1.0
            boxes[i, k] = [x1, y1, x1 + w, y1 + h]
    labels = (np.arange(2)[None] < count[:, None]).astype(np.int64)
    return {"x": x, "boxes": boxes, "labels": labels, "count": count.astype(np.int64)}


def broken():
    raise ValueError("weights file missing")


def plain_classifier() -> torch.nn.Module:
    """A module whose eval forward returns a tensor, not per-image detections."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
