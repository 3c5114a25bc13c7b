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


_TRAINED: dict = {}


def trained() -> CenterNet:
    """The tiny detector after 30 epochs on ``boxes_data(48, 0)`` (seeded; trained once per process): one that
    finds the rectangles, for tests that need a clean mAP."""
    if "state" not in _TRAINED:
        from ftcompile.labels import BoxLabels
        from ftcompile.search.trainer import TrainConfig, box_targets, fine_tune, module_loss

        d = boxes_data(48, 0)
        model = tiny()
        fine_tune(model, torch.from_numpy(d["x"]), box_targets(BoxLabels(d["boxes"], d["labels"], d["count"])),
                  TrainConfig(epochs=30, lr=5e-3, batch_size=16), loss_fn=module_loss)
        _TRAINED["state"] = {k: v.clone() for k, v in model.state_dict().items()}
    model = tiny()
    model.load_state_dict(_TRAINED["state"])
    return model.eval()


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
