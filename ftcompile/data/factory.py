"""Data from Python: ``package.module:function`` returning arrays, an ``(x, y)`` pair or a torch ``Dataset``.

For data that lives in a user's own loader (a database, a custom format, torchvision's datasets): the function is
called with no arguments in this process (the current directory is importable, as with ``python -m``) and returns

- a dict of arrays (``x`` or the model's input names, and ``y`` / ``masks`` / ``boxes``...), as an ``.npz`` holds;
- an ``(x, y)`` pair of arrays;
- a map-style torch ``Dataset`` whose items are ``(input, label)`` pairs (tensors or arrays): stacked into arrays.

Its provenance is the arrays' sha256 (there is no file to hash).
"""
from __future__ import annotations

import os

import numpy as np

from ftcompile.errors import DataError, one_line


def is_factory(spec) -> bool:
    """``package.module:function``: a dotted or plain module name, a colon, an attribute (not a file path)."""
    text = str(spec)
    if not isinstance(spec, str) or ":" not in text or os.path.exists(text):
        return False
    module, _, attr = text.partition(":")
    return bool(module) and attr.isidentifier() and all(part.isidentifier() for part in module.split("."))


def read_factory(spec: str) -> dict[str, np.ndarray]:
    from ftcompile.plugins import load_object

    fn = load_object(spec, "data factory", DataError)
    try:
        got = fn()
    except Exception as exc:
        raise DataError(f"data factory {spec} failed ({type(exc).__name__}: {one_line(exc)}).") from None
    if isinstance(got, dict):
        return {k: np.asarray(v) for k, v in got.items()}
    if isinstance(got, tuple) and len(got) == 2:
        return {"x": np.asarray(got[0]), "y": np.asarray(got[1])}
    if hasattr(got, "__getitem__") and hasattr(got, "__len__"):
        return _stack(spec, got)
    raise DataError(f"data factory {spec} returned {type(got).__name__}; return a dict of arrays, an (x, y) pair or a "
                    "torch Dataset of (input, label) pairs.")


def _stack(spec: str, dataset) -> dict[str, np.ndarray]:
    xs, ys = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise DataError(f"data factory {spec}: item {i} of its Dataset is {type(item).__name__}, not an "
                            "(input, label) pair.")
        xs.append(_numpy(item[0]))
        ys.append(_numpy(item[1]))
    if not xs:
        raise DataError(f"data factory {spec}: its Dataset is empty; give at least one example.")
    try:
        return {"x": np.stack(xs), "y": np.stack(ys)}
    except ValueError as exc:
        raise DataError(f"data factory {spec}: its items do not stack into arrays ({one_line(exc)}); give inputs of "
                        "one shape.") from None


def _numpy(value):
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)
