"""Label layouts on disk beyond class indices (npz, no pickle), checked with one-line errors (numpy only).

- Detection: ``boxes`` ``(N, K, 4)`` float, x1 y1 x2 y2 in pixels, padded to ``K`` per image; ``labels`` ``(N, K)``
  integer class ids >= 1 (0 is the background in torchvision's detectors); ``count`` ``(N,)`` real boxes per image.
- Segmentation: ``masks`` ``(N, H, W)`` integer class ids per pixel, 0 = background, 255 = ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftcompile.errors import DataError

IGNORE = 255


@dataclass(frozen=True)
class BoxLabels:
    """Ground-truth boxes of ``N`` images, padded to ``K`` per image; ``count[i]`` rows of image i are real."""

    boxes: np.ndarray   # (N, K, 4) float, x1 y1 x2 y2 in pixels
    labels: np.ndarray  # (N, K) int, class ids >= 1
    count: np.ndarray   # (N,) int

    def __len__(self) -> int:
        return len(self.count)

    def __getitem__(self, index) -> "BoxLabels":
        return BoxLabels(self.boxes[index], self.labels[index], self.count[index])

    def image(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.count[i])
        return self.boxes[i, :n], self.labels[i, :n]


def check_box_labels(source: str, arrays: dict, n: int) -> BoxLabels:
    """``boxes``/``labels``/``count`` checked: shapes agree, counts fit, boxes finite with x2 > x1, y2 > y1."""
    missing = [k for k in ("boxes", "labels", "count") if k not in arrays]
    if missing:
        raise DataError(f"{source}: detection labels need 'boxes' (N, K, 4), 'labels' (N, K) and 'count' (N,); "
                        f"missing {missing}.")
    boxes, labels, count = (np.asarray(arrays[k]) for k in ("boxes", "labels", "count"))
    if boxes.ndim != 3 or boxes.shape[2] != 4 or not np.issubdtype(boxes.dtype, np.number):
        raise DataError(f"{source}: 'boxes' must be a numeric (N, K, 4) array of x1, y1, x2, y2 (got {boxes.dtype}, "
                        f"shape {boxes.shape}); pad every image to K boxes.")
    if labels.shape != boxes.shape[:2] or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{source}: 'labels' must be an integer (N, K) array matching 'boxes' {boxes.shape[:2]} "
                        f"(got {labels.dtype}, shape {labels.shape}).")
    if count.shape != (len(boxes),) or not np.issubdtype(count.dtype, np.integer):
        raise DataError(f"{source}: 'count' must be an integer (N,) array, one object count per image "
                        f"(got {count.dtype}, shape {count.shape}).")
    if len(boxes) != n:
        raise DataError(f"{source}: {len(boxes)} label rows for {n} images; give one row per image.")
    if count.min() < 0 or count.max() > boxes.shape[1]:
        raise DataError(f"{source}: 'count' spans [{count.min()}, {count.max()}] but each image holds at most "
                        f"{boxes.shape[1]} boxes; counts must be in [0, K].")
    if count.sum() == 0:
        raise DataError(f"{source}: no image has a ground-truth box; mAP is undefined without objects.")
    real = np.arange(boxes.shape[1])[None, :] < count[:, None]
    b, lab = boxes[real].astype(np.float64), labels[real]
    if not np.isfinite(b).all():
        raise DataError(f"{source}: {int((~np.isfinite(b)).any(1).sum())} boxes have NaN/inf coordinates; "
                        "fix or drop them.")
    bad = (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        raise DataError(f"{source}: {int(bad.sum())} boxes have x2 <= x1 or y2 <= y1 (first: {b[bad][0].tolist()}); "
                        "give corners x1, y1, x2, y2 in pixels.")
    if lab.min() < 1:
        raise DataError(f"{source}: box class ids must be >= 1 (0 is the background in torchvision's detectors); "
                        f"got {int(lab.min())}.")
    return BoxLabels(boxes.astype(np.float64), labels.astype(np.int64), count.astype(np.int64))


def check_masks(source: str, masks: np.ndarray, n: int, num_classes: int | None) -> np.ndarray:
    """``masks`` (N, H, W) integer class ids, 0 = background, 255 = ignored."""
    if masks.ndim != 3 or not np.issubdtype(masks.dtype, np.integer):
        raise DataError(f"{source}: 'masks' must be an integer (N, H, W) array of class ids (got {masks.dtype}, "
                        f"shape {masks.shape}); 0 = background, 255 = ignored.")
    if len(masks) != n:
        raise DataError(f"{source}: {len(masks)} masks for {n} images; give one mask per image.")
    # one output channel is a binary segmenter (background and one class); an unknown count (a symbolic output dim)
    # bounds the ids below only
    classes = 2 if num_classes == 1 else num_classes
    valid = masks[masks != IGNORE]
    if valid.size and (valid.min() < 0 or (classes is not None and valid.max() >= classes)):
        raise DataError(f"{source}: mask values span [{valid.min()}, {valid.max()}] but the model has "
                        f"{classes or 'an unknown number of'} classes; use ids in [0, {classes or 'C'}) and 255 for "
                        "ignored pixels.")
    return masks.astype(np.int64)
