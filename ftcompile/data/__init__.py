"""Datasets shared by the runtime and the hardening side (numpy only).

A dataset is a dict of input arrays (first axis = examples) and labels: integer classes ``y``, or the
layouts of ``runtime.tasks`` (detection boxes, segmentation masks). Data comes from one of three sources
(``sources.read_arrays``): an ``.npz`` file with ``x`` (or the model's input names) and the labels, loaded with
``allow_pickle=False`` (``npz.py``); a folder of images, one subfolder per class (``image_folder.py``); or a
Python factory ``package.module:function`` returning arrays or a torch Dataset (``factory.py``). Whatever the
source, ``as_dataset`` checks the arrays against the model before any run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ftcompile.errors import DataError
from ftcompile.labels import BoxLabels, check_box_labels, check_masks
from ftcompile.provenance import DataRecord, arrays_sha256, example_hashes


@dataclass(frozen=True)
class InputSpec:
    """What a model expects at one input: name, dims (int, or str/None when dynamic) and dtype."""

    name: str
    shape: tuple
    dtype: np.dtype


@dataclass
class Dataset:
    """Inputs by model input name, and labels (``None`` when the data is unlabeled)."""

    inputs: dict
    labels: "np.ndarray | BoxLabels | None"
    source: str = "<memory>"
    unbatched: bool = False  # the model takes one example without a batch axis (torchvision's detectors)
    sha256: str = ""         # of the source file; empty for data from memory (``record`` then hashes the arrays)
    part: str = ""           # how these examples were taken from the source, when not all of it

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batches(self, batch_size: int, per_image: bool = False) -> Iterator[tuple[dict, slice]]:
        n = len(self)
        if per_image and self.unbatched:
            for i in range(n):
                yield {k: v[i] for k, v in self.inputs.items()}, slice(i, i + 1)
            return
        for start in range(0, n, batch_size):
            sl = slice(start, min(start + batch_size, n))
            yield {k: v[sl] for k, v in self.inputs.items()}, sl

    def subset(self, index: np.ndarray, part: str = "") -> "Dataset":
        labels = None if self.labels is None else self.labels[index]
        return Dataset({k: v[index] for k, v in self.inputs.items()}, labels, self.source, self.unbatched,
                       self.sha256, part or self.part)

    def record(self, role: str) -> DataRecord:
        """What a report names: this data's source, sha256 (of the file, or of the arrays), size and part."""
        digest = self.sha256 or arrays_sha256({**self.inputs, **_label_arrays(self.labels)})
        return DataRecord(role, self.source, digest, len(self), self.part)


def _label_arrays(labels) -> dict:
    if labels is None:
        return {}
    if isinstance(labels, BoxLabels):
        return {"boxes": labels.boxes, "labels": labels.labels, "count": labels.count}
    return {"labels": labels}


def hold_out(data: Dataset, fraction: float, role: str = "validation") -> tuple[Dataset, Dataset]:
    """Split ``data`` into (kept, held out): an example is held out when the hash of its inputs falls in the lowest
    ``fraction`` of the hash range. The split depends on each example alone, not on the order of the file or a
    seed, so the same examples are held out on every run, and duplicates land on the same side."""
    h = example_hashes(data.inputs)
    held = (h >> np.uint64(11)).astype(np.float64) / 2.0 ** 53 < fraction
    n_held = int(held.sum())
    if n_held == 0 or n_held == len(data):
        raise DataError(f"{data.source}: holding out {fraction:g} of its {len(data)} examples leaves "
                        f"{'none' if n_held == 0 else 'nothing else'} to "
                        f"{'sign off on' if n_held == 0 else 'choose on'}; "
                        "give held-out data (--test) or more examples.")
    share = f"{fraction:g}"
    return (data.subset(np.flatnonzero(~held),
                        f"{role} part: all but the held-out {share} ({len(data) - n_held} examples)"),
            data.subset(np.flatnonzero(held), f"held-out {share} of it by example hash ({n_held} examples)"))


def as_dataset(data, specs: Sequence[InputSpec], *, num_classes: int | None = None,
               require_labels: bool = True, task: str = "classification") -> Dataset:
    """Bind ``data`` (a Dataset, an (x, y) tuple, a dict of arrays, or a source ``sources.read_arrays`` reads: an
    ``.npz`` path, an image folder (a path, or ``image_folder.ImageFolder`` with its normalization), a
    ``package.module:function`` factory) to a model's inputs.

    Checks before any run: names, shapes (static dims), dtypes, NaN/inf, empty data, label dtype,
    length and range. Floats are cast to the model's float type; integers never silently become floats.
    """
    digest, part = "", ""
    if isinstance(data, Dataset):
        arrays, source, digest, part = dict(data.inputs), data.source, data.sha256, data.part
        if isinstance(data.labels, BoxLabels):
            arrays.update(boxes=data.labels.boxes, labels=data.labels.labels, count=data.labels.count)
        elif data.labels is not None:
            arrays["masks" if task == "segmentation" else "y"] = data.labels
    elif isinstance(data, tuple) and len(data) == 2:
        arrays, source = {"x": np.asarray(data[0]), "y": np.asarray(data[1])}, "<arrays>"
    elif isinstance(data, dict):
        arrays, source = {k: np.asarray(v) for k, v in data.items()}, "<arrays>"
    else:
        from ftcompile.data.sources import read_arrays

        arrays, source, digest = read_arrays(data, specs)
    inputs, unbatched = {}, False
    for i, spec in enumerate(specs):
        key = spec.name if spec.name in arrays else ("x" if i == 0 and len(specs) == 1 and "x" in arrays else None)
        if key is None:
            raise DataError(f"{source}: no array for model input {spec.name!r} (has {sorted(arrays)}); "
                            + (f"name it {spec.name!r}." if spec.name == "x" else f"name it 'x' or {spec.name!r}."))
        x = arrays[key]
        if task == "detection" and len(spec.shape) == np.ndim(x) - 1:  # one (C, H, W) image per run
            unbatched = True
            spec = InputSpec(spec.name, ("N", *spec.shape), spec.dtype)
        inputs[spec.name] = _check_input(source, key, x, spec)
    lengths = {len(v) for v in inputs.values()}
    if len(lengths) > 1:
        raise DataError(f"{source}: input arrays have different lengths {sorted(lengths)}; give one row per example.")
    n = lengths.pop()
    if task == "detection":
        labels = check_box_labels(source, arrays, n) if "boxes" in arrays or require_labels else None
    elif task == "segmentation":
        if "masks" not in arrays and require_labels:
            raise DataError(f"{source}: no labels; add an integer array 'masks' (N, H, W) of class ids per pixel.")
        labels = check_masks(source, arrays["masks"], n, num_classes) if "masks" in arrays else None
    else:
        labels = arrays.get("y")
        if labels is None and require_labels:
            raise DataError(f"{source}: no labels; add an integer array 'y' with one class index per example.")
        if labels is not None:
            labels = _check_labels(source, labels, n, num_classes)
    return Dataset(inputs, labels, source, unbatched, digest, part)


def _check_input(source: str, key: str, x: np.ndarray, spec: InputSpec) -> np.ndarray:
    if x.dtype == object:
        raise DataError(f"{source}: array {key!r} holds Python objects; save numeric arrays.")
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"{source}: array {key!r} is empty; give at least one example.")
    want = tuple(spec.shape)
    if len(want) != x.ndim or any(isinstance(d, int) and d > 0 and d != s for d, s in zip(want[1:], x.shape[1:])):
        shown = tuple(d if isinstance(d, int) else "N" for d in want)
        raise DataError(f"{source}: array {key!r} has shape {x.shape} but model input {spec.name!r} expects "
                        f"{shown}; reshape the data (first axis = examples).")
    if x.dtype != spec.dtype:
        if np.issubdtype(x.dtype, np.floating) and np.issubdtype(spec.dtype, np.floating):
            x = x.astype(spec.dtype)
        else:
            raise DataError(f"{source}: array {key!r} is {x.dtype} but model input {spec.name!r} expects "
                            f"{spec.dtype}; convert (and normalize) it as the model was trained.")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise DataError(f"{source}: array {key!r} has {bad} NaN/inf values; clean or drop those examples.")
    return np.ascontiguousarray(x)


def _check_labels(source: str, y: np.ndarray, n: int, num_classes: int | None) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: labels 'y' must be a 1-D integer array of class indices (got {y.dtype}, "
                        f"shape {y.shape}); convert one-hot or float labels with argmax/astype(int).")
    if len(y) != n:
        raise DataError(f"{source}: {len(y)} labels for {n} examples; give one label per example.")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (num_classes is not None and hi >= num_classes):
        raise DataError(f"{source}: labels span [{lo}, {hi}] but the model has {num_classes} classes; "
                        f"labels must be in [0, {num_classes}).")
    return y.astype(np.int64)
