"""A folder of images, one subfolder per class (the torchvision ``ImageFolder`` layout), read for a model's input.

``val/cat/0001.png``, ``val/dog/0002.jpg``: the class ids are the subfolder names in sorted order (0, 1, ...).
Each image is decoded with Pillow, converted to the model's channels (1: grayscale ``L``, 3: ``RGB``), resized
to the model's input height and width (bilinear; a model with dynamic spatial dims keeps each image's size, so
all must then share one), scaled to [0, 1], then normalized per channel, ``(x - mean) / std`` when
``ImagePrep`` gives them: exactly what the model saw in training must be given here, as for an ``.npz``. The layout
follows the model's input: ``(N, C, H, W)``, or ``(N, H, W, C)`` when its last dim is 1 or 3 and its second is not.
Pillow is the ``images`` extra (``pip install 'ftcompile[images]'``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftcompile.errors import ConfigError, DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class ImagePrep:
    """Per-channel normalization after scaling to [0, 1]: ``(x - mean) / std``; None leaves the [0, 1] values."""

    mean: tuple | None = None
    std: tuple | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ConfigError("--image-mean and --image-std go together; give both (or neither).")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"--image-std {self.std} must be > 0 per channel.")

    @classmethod
    def parse(cls, mean: str | None, std: str | None) -> "ImagePrep":
        """From the CLI's ``--image-mean 0.485,0.456,0.406 --image-std 0.229,0.224,0.225``."""
        def floats(text, flag):
            if text is None:
                return None
            try:
                return tuple(float(v) for v in text.split(","))
            except ValueError:
                raise ConfigError(f"{flag} {text!r} must be numbers separated by commas, e.g. 0.5,0.5,0.5.") from None
        return cls(floats(mean, "--image-mean"), floats(std, "--image-std"))


@dataclass(frozen=True)
class ImageFolder:
    """An image folder and how to normalize it (what ``--data DIR --image-mean ... --image-std ...`` gives)."""

    path: Path
    prep: ImagePrep = ImagePrep()

    def __str__(self) -> str:
        return str(self.path)


def is_image_folder(spec) -> bool:
    return isinstance(spec, ImageFolder) or (isinstance(spec, (str, Path)) and Path(spec).is_dir())


def read_image_folder(folder: Path, shape: tuple, prep: ImagePrep | None = None) -> dict[str, np.ndarray]:
    """``{"x": float32 images in the model's layout, "y": int64 class ids}`` of ``folder`` for an input of ``shape``
    (its dims after the batch: C, H, W or H, W, C; a str/None dim is dynamic)."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("reading an image folder needs Pillow: pip install 'ftcompile[images]'.") from None
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [(c, f) for c in classes for f in sorted((folder / c).iterdir()) if f.suffix.lower() in SUFFIXES]
    if not files:
        raise DataError(f"{folder}: no images in class subfolders; lay it out as {folder}/<class>/<image>.png.")
    last = len(shape) == 3 and shape[-1] in (1, 3) and shape[0] not in (1, 3)
    channels, size = (shape[-1], shape[:2]) if last else (shape[0] if shape else 3, shape[1:3])
    if len(shape) != 3 or channels not in (1, 3):
        raise DataError(f"{folder}: an image folder feeds a model input of (channels, height, width) with 1 or 3 "
                        f"channels; this model's input is {shape}.")
    images = []
    for _, f in files:
        try:
            img = Image.open(f).convert("L" if channels == 1 else "RGB")
        except Exception as exc:
            raise DataError(f"{f}: not a readable image ({type(exc).__name__}); remove it or convert it.") from None
        if all(isinstance(d, int) for d in size):
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(img, np.float32) / 255.0
        images.append(a[..., None] if a.ndim == 2 else a)  # H, W, C
    if len({a.shape for a in images}) > 1:
        raise DataError(f"{folder}: images differ in size and the model's input has dynamic height/width; resize them "
                        "to one size first.")
    x = np.stack(images)
    if prep is not None and prep.mean is not None:
        if len(prep.mean) != channels or len(prep.std) != channels:
            raise ConfigError(f"--image-mean/--image-std give {len(prep.mean)} values; the model takes {channels} "
                              "channels.")
        x = (x - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    if not last:
        x = x.transpose(0, 3, 1, 2)
    labels = np.array([classes.index(c) for c, _ in files], np.int64)
    return {"x": np.ascontiguousarray(x, dtype=np.float32), "y": labels}
