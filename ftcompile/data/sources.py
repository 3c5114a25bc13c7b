"""Where data comes from: one entry point for the three sources (``.npz``, image folder, Python factory)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ftcompile.data.factory import is_factory, read_factory
from ftcompile.data.image_folder import ImageFolder, is_image_folder, read_image_folder
from ftcompile.data.npz import load_npz
from ftcompile.errors import DataError
from ftcompile.fileio import sha256_file


def read_arrays(spec, specs) -> tuple[dict[str, np.ndarray], str, str]:
    """``(arrays, source, sha256)`` of a data source: ``sha256`` of an ``.npz`` file, empty for the others (their
    records hash the arrays). ``specs``: the model's inputs (an image folder is read for the first one's shape)."""
    if is_factory(spec):
        return read_factory(str(spec)), str(spec), ""
    if is_image_folder(spec):
        folder = spec if isinstance(spec, ImageFolder) else ImageFolder(Path(spec))
        if len(specs) != 1:
            raise DataError(f"{folder}: an image folder feeds a model with one input; this one has {len(specs)}.")
        return read_image_folder(folder.path, tuple(specs[0].shape[1:]), folder.prep), str(folder), ""
    path = Path(spec)
    return load_npz(path), str(path), sha256_file(path)
