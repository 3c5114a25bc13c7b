"""Tasks: what turns a model's outputs and a dataset's labels into one score (numpy and pycocotools, no torch).

- ``classification``: class scores ``(N, C)`` and integer labels ``y`` (``N``): accuracy or top-k.
- ``detection``: per image, boxes ``(M, 4)`` in pixels ``x1, y1, x2, y2``, scores ``(M,)`` and class ids ``(M,)``
  (torchvision's detectors export exactly these, one image per run). Labels on disk (npz, no pickle):
  ``boxes`` ``(N, K, 4)`` padded, ``labels`` ``(N, K)`` class ids >= 1, ``count`` ``(N,)`` objects per image.
  Metric: COCO mAP from ``pycocotools`` (``map50`` = AP at IoU 0.5, ``map`` = AP averaged over IoU
  0.5:0.95), not a hand-written AP.
- ``segmentation``: per-pixel scores ``(N, C, H, W)`` (``C = 1``: one foreground logit) and ``masks``
  ``(N, H, W)`` class ids, 0 = background, 255 = ignored. Metric: per image, the Dice (``dice``) or IoU
  (``iou``) of each foreground class, averaged over the classes present in the prediction or the truth;
  the overlaps come from ``pycocotools.mask.iou`` on run-length codes. Per-image scores give the total
  confidence interval, as accuracy does.

The task is named (``--task``) or read from the data layout (``infer_task``): ``boxes`` -> detection, ``masks``
-> segmentation, ``y`` -> classification.
"""
from __future__ import annotations

import contextlib
import importlib
import io

import numpy as np

from ftcompile.errors import ConfigError, DataError, UnsupportedModelError
from ftcompile.labels import IGNORE, BoxLabels
from ftcompile.runtime.metrics import accuracy, parse_metric

TASKS = ("classification", "detection", "segmentation")


def infer_task(arrays: dict) -> str:
    """The task a data file's arrays are laid out for."""
    if "boxes" in arrays:
        return "detection"
    if "masks" in arrays:
        return "segmentation"
    return "classification"


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ConfigError(f"--task {task!r} is unknown; use one of {', '.join(TASKS)}.")
    return task


# ------------------------------------------------------------------------------------------ predictions

def detection_outputs(outputs) -> list[str]:
    """Names of (boxes, scores, labels) among a model's ONNX outputs: by name, else by type and shape.

    ``outputs``: ONNX ``ValueInfoProto``s. A model without a class output (one-class detectors) gives
    ``[boxes, scores]``.
    """
    from ftcompile.runtime.model import elem_dtype, input_shape

    named = {}
    for o in outputs:
        for key in ("box", "score", "label"):
            if key in o.name.lower() and key not in named:
                named[key] = o.name
    if "box" not in named or "score" not in named:
        named = {}
        for o in outputs:
            dims, dtype = input_shape(o), elem_dtype(o)
            if np.issubdtype(dtype, np.integer):
                named.setdefault("label", o.name)
            elif dims and dims[-1] == 4 and "box" not in named:
                named["box"] = o.name
            else:
                named.setdefault("score", o.name)
    if "box" not in named or "score" not in named:
        raise UnsupportedModelError(f"detection needs box and score outputs; the model has "
                                    f"{[o.name for o in outputs]}; name them boxes/scores/labels when exporting.")
    return [named["box"], named["score"]] + ([named["label"]] if "label" in named else [])


def detections(raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's (boxes (M, 4), scores (M,), labels (M,)) from the outputs ``detection_outputs`` named."""
    boxes, scores = (np.asarray(a, dtype=np.float64) for a in raw[:2])
    boxes, scores = boxes.reshape(-1, 4), scores.reshape(-1)
    labels = np.asarray(raw[2]).reshape(-1).astype(np.int64) if len(raw) > 2 else np.ones(len(scores), np.int64)
    if not (len(boxes) == len(scores) == len(labels)):
        raise UnsupportedModelError(f"detection outputs disagree: {len(boxes)} boxes, {len(scores)} scores, "
                                    f"{len(labels)} labels for one image; check which outputs are which.")
    return boxes, scores, labels


def segment(scores: np.ndarray) -> np.ndarray:
    """Class ids per pixel from ``(B, C, H, W)`` scores (``C = 1``: foreground where the logit is > 0)."""
    if scores.ndim != 4:
        raise UnsupportedModelError(f"segmentation needs a (batch, classes, H, W) output; got shape {scores.shape}.")
    return (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(1)


# ------------------------------------------------------------------------------------------------ metrics

def _pycocotools(module: str):
    """``pycocotools.<module>``; pycocotools is an extra (a classifier's gate needs none of it)."""
    try:
        return importlib.import_module(f"pycocotools.{module}")
    except ImportError:
        raise ConfigError("detection and segmentation metrics need pycocotools, which is not installed: "
                          "pip install 'ftcompile[detection]'.") from None


class CocoMAP:
    """COCO box mAP (``pycocotools``): ``iou=0.5`` (``map50``) or averaged over 0.5:0.95 (``map``)."""

    def __init__(self, iou: float | None = 0.5):
        self.iou = iou
        self.__name__ = "map50" if iou == 0.5 else "map"

    def __call__(self, predictions: list, truth: BoxLabels) -> float:
        COCO, COCOeval = _pycocotools("coco").COCO, _pycocotools("cocoeval").COCOeval

        images, annotations, classes, results = [], [], set(), []
        for i in range(len(truth)):
            images.append({"id": i})
            for box, c in zip(*truth.image(i)):
                x1, y1, x2, y2 = box.tolist()
                annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(c),
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
                classes.add(int(c))
            boxes, scores, labels = predictions[i]
            for box, s, c in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                results.append({"image_id": i, "category_id": int(c), "score": float(s),
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
        if not results:  # pycocotools cannot load an empty result list (cocoapi #450); nothing found: AP 0
            return 0.0
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary table
            gt = COCO()
            gt.dataset = {"images": images, "annotations": annotations,
                          "categories": [{"id": c} for c in sorted(classes | {r["category_id"] for r in results})]}
            gt.createIndex()
            ev = COCOeval(gt, gt.loadRes(results), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        value = float(ev.stats[1] if self.iou == 0.5 else ev.stats[0])
        return max(0.0, value)  # -1 marks "no ground truth" in pycocotools; the labels check rules it out


class MaskOverlap:
    """Per-image Dice (``dice``) or IoU (``iou``) over foreground classes; the metric is their mean."""

    def __init__(self, kind: str = "dice"):
        self.kind = kind
        self.__name__ = kind

    def per_example(self, predicted: np.ndarray, masks: np.ndarray) -> np.ndarray:
        rle = _pycocotools("mask")

        if predicted.shape != masks.shape:
            raise DataError(f"masks are {masks.shape[1:]} but the model predicts {predicted.shape[1:]} pixels; "
                            "give masks at the model's output size.")
        scores = np.empty(len(masks))
        for i, (p, t) in enumerate(zip(predicted, masks)):
            keep = t != IGNORE
            per_class = []
            for c in np.union1d(np.unique(p[keep]), np.unique(t[keep])):
                if c == 0:
                    continue
                a = np.asfortranarray(((p == c) & keep).astype(np.uint8))
                b = np.asfortranarray(((t == c) & keep).astype(np.uint8))
                iou = float(rle.iou([rle.encode(a)], [rle.encode(b)], [0])[0, 0])
                per_class.append(iou if self.kind == "iou" else 2 * iou / (1 + iou))
            scores[i] = np.mean(per_class) if per_class else 1.0  # nothing to find, nothing found: perfect
        return scores

    def __call__(self, predicted: np.ndarray, masks: np.ndarray) -> float:
        return float(self.per_example(predicted, masks).mean())


class OnClassIds:
    """A segmentation metric applied to raw scores: ``metric(segment(scores), masks)`` (picklable, for the
    search's objective, which sees (N, C, H, W) scores)."""

    def __init__(self, metric):
        self.metric = metric
        self.__name__ = getattr(metric, "__name__", "metric")

    def __call__(self, scores: np.ndarray, masks: np.ndarray) -> float:
        return float(self.metric(segment(scores), masks))


TASK_METRICS = {"detection": {"map50": lambda: CocoMAP(0.5), "map": lambda: CocoMAP(None)},
                "segmentation": {"dice": lambda: MaskOverlap("dice"), "iou": lambda: MaskOverlap("iou")}}


def task_metric(task: str, spec=None):
    """The metric of ``task``: ``spec`` None or accuracy (the default everywhere) gives the task's default
    (accuracy, map50, dice); a callable or ``package.module:function`` is used as given; else a name from the
    task's table (classification: ``parse_metric``'s names)."""
    if spec is None or spec is accuracy or spec == "accuracy":
        spec = accuracy if task == "classification" else None
    if task == "classification" or callable(spec) or (isinstance(spec, str) and ":" in spec):
        return parse_metric(spec)
    table = TASK_METRICS[task]
    if spec is None:
        return next(iter(table.values()))()
    if spec not in table:
        raise ConfigError(f"--metric {spec!r} does not apply to {task}; use one of {', '.join(table)} or "
                          "package.module:function.")
    return table[spec]()
