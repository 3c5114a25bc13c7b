"""Resize and Upsample as separable interpolation: one (output x input) weight matrix per resized axis.

Why not ``F.interpolate``: it covers a few of ONNX's combinations (nearest = asymmetric/floor, bilinear and
bicubic with A = -0.75 under half_pixel or align_corners) and differs on the rest (nearest modes, cubic A,
exclude_outside, half_pixel_symmetric, pytorch_half_pixel, tf_crop_and_resize, antialias weights). Every
mode here is one matrix per axis following the ONNX reference's taps and coefficients, so all of them match
it; the matrix depends only on the sizes and attributes (cached) and the product keeps gradients flowing.
Nearest resizing gathers instead of multiplying, so integer images stay integer.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ftcompile.frontend.ops import ints, text
from ftcompile.frontend.registry import converter


def _x_original(mode: str, out_w: int, scale: float, in_w: int, roi: tuple | None):
    y = np.arange(out_w, dtype=np.float64)
    out_f = scale * in_w
    outside = None
    if mode == "align_corners":
        x = np.zeros(out_w) if out_f == 1 else y * (in_w - 1) / (out_f - 1)
    elif mode == "asymmetric":
        x = y / scale
    elif mode == "tf_crop_and_resize":
        x = np.full(out_w, (roi[1] - roi[0]) * (in_w - 1) / 2) if out_f == 1 else \
            y * (roi[1] - roi[0]) * (in_w - 1) / (out_f - 1)
        x = x + roi[0] * (in_w - 1)
        outside = (x < 0) | (x > in_w - 1)
    elif mode == "pytorch_half_pixel":
        x = np.full(out_w, -0.5) if out_f == 1 else (y + 0.5) / scale - 0.5
    elif mode == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif mode == "half_pixel_symmetric":
        offset = in_w / 2 * (1 - out_w / out_f)
        x = offset + (y + 0.5) / scale - 0.5
    else:
        raise ValueError(f"coordinate_transformation_mode {mode!r}")
    return x, outside


def _coeffs(kind: str, ratio: float, scale: float, nearest: str, a: float, antialias: int) -> np.ndarray:
    if kind == "nearest":
        if ratio == 1:
            return np.array([0.0, 1.0])
        up = {"round_prefer_floor": ratio > 0.5, "round_prefer_ceil": ratio >= 0.5, "floor": False,
              "ceil": True}[nearest]
        return np.array([0.0, 1.0]) if up else np.array([1.0, 0.0])
    if kind == "linear":
        if not antialias:
            return np.array([1 - ratio, ratio])
        s = min(scale, 1.0)
        start = int(np.floor(-1 / s) + 1)
        c = np.clip(1 - np.abs((np.arange(start, 2 - start) - ratio) * s), 0, 1)
        return c / c.sum()
    if not antialias:
        r1, r2 = ratio + 1, 2 - ratio
        return np.array([((a * r1 - 5 * a) * r1 + 8 * a) * r1 - 4 * a,
                         ((a + 2) * ratio - (a + 3)) * ratio * ratio + 1,
                         ((a + 2) * (1 - ratio) - (a + 3)) * (1 - ratio) * (1 - ratio) + 1,
                         ((a * r2 - 5 * a) * r2 + 8 * a) * r2 - 4 * a])
    s = min(scale, 1.0)
    start = int(np.floor(-2 / s) + 1)
    x = np.abs(s * (np.arange(start, 2 - start) - ratio))
    c = np.where(x <= 1, (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1,
                 np.where(x < 2, a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a, 0.0))
    return c / c.sum()


@functools.lru_cache(maxsize=256)
def weights(in_w: int, out_w: int, scale: float, kind: str, mode: str, nearest: str, a: float,
            exclude_outside: int, antialias: int, roi: tuple | None):
    """The (out_w x in_w) interpolation matrix of one axis and the rows that extrapolate (or None)."""
    x, outside = _x_original(mode, out_w, scale, in_w, roi)
    base = np.floor(x)
    ratios = np.where(x == base, 1.0, x - base)
    coeffs = np.stack([_coeffs(kind, float(r), scale, nearest, a, antialias) for r in ratios]) if out_w else \
        np.zeros((0, 2))
    n = coeffs.shape[1]
    pad = math.ceil(n / 2)
    xp = x + pad
    p = np.floor(xp).astype(np.int64)
    frac = xp - p
    if n % 2 == 0:
        offset = np.where(frac == 0, -(n // 2), -(n // 2) + 1)
    else:
        offset = np.where(frac <= 0.5, -((n - 1) // 2), -((n - 1) // 2) + 1)
    idx = (p + offset)[:, None] + np.arange(n)[None, :] - pad
    if exclude_outside:
        coeffs = np.where((idx < 0) | (idx >= in_w), 0.0, coeffs)
        total = coeffs.sum(-1, keepdims=True)
        coeffs = coeffs / np.where(total == 0, 1.0, total)
    matrix = np.zeros((out_w, in_w))
    np.add.at(matrix, (np.repeat(np.arange(out_w), n), np.clip(idx, 0, in_w - 1).reshape(-1)), coeffs.reshape(-1))
    return matrix, outside


def resize(x, scales=None, sizes=None, roi=None, *, kind: str = "nearest", mode: str = "half_pixel",
           nearest: str = "round_prefer_floor", a: float = -0.75, exclude_outside: int = 0,
           extrapolation: float = 0.0, antialias: int = 0, axes=None, policy: str = "stretch"):
    """ONNX Resize of ``x`` to ``sizes`` (or by ``scales``) along ``axes`` (default all)."""
    rank = x.dim()
    axes = list(range(rank)) if axes is None else [d % rank for d in axes]
    roi_list = [float(v) for v in roi.reshape(-1).tolist()] if roi is not None and roi.numel() else None
    if sizes is not None and sizes.numel():
        out = ints(sizes)
        factor = [o / x.shape[d] for o, d in zip(out, axes)]
        if policy != "stretch":
            s = min(factor) if policy == "not_larger" else max(factor)
            factor = [s] * len(axes)
            out = [int(s * x.shape[d] + 0.5) for d in axes]
    else:
        factor = [float(v) for v in scales.reshape(-1).tolist()]
        if len(factor) == rank and len(axes) != rank:
            factor = [factor[d] for d in axes]
        out = [int(f * x.shape[d]) for f, d in zip(factor, axes)]
    y = x if kind == "nearest" or x.dtype.is_floating_point else x.double()
    for i, d in enumerate(axes):
        roi_d = None
        if roi_list is not None:
            half = len(roi_list) // 2
            k = d if half == rank else i
            roi_d = (roi_list[k], roi_list[half + k])
        if math.isclose(factor[i], 1.0) and out[i] == y.shape[d] and (roi_d is None or roi_d == (0.0, 1.0)):
            continue
        matrix, outside = weights(y.shape[d], out[i], factor[i], kind, mode, nearest, a, exclude_outside,
                                  antialias, roi_d)
        if kind == "nearest":
            y = y.index_select(d, torch.from_numpy(matrix.argmax(1)))
        else:
            m = torch.from_numpy(matrix).to(y.dtype)
            y = torch.movedim(torch.matmul(torch.movedim(y, d, -1), m.t()), -1, d)
        if outside is not None and outside.any():
            shape = [1] * rank
            shape[d] = out[i]
            y = torch.where(torch.from_numpy(outside).reshape(shape), torch.tensor(extrapolation, dtype=y.dtype), y)
    if y.dtype != x.dtype:  # integer images: round and saturate back
        info = torch.iinfo(x.dtype)
        y = y.round().clamp(info.min, info.max).to(x.dtype)
    return y


# --- converters ----------------------------------------------------------------------------------
@converter("Resize", since=11)
def _resize(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    x, roi, scales, sizes = args[:4]
    axes = attrs.get("axes")
    return b.call(resize, (x, scales, sizes, roi), {
        "kind": text(attrs.get("mode"), "nearest"), "mode": text(attrs.get("coordinate_transformation_mode"),
                                                                   "half_pixel"),
        "nearest": text(attrs.get("nearest_mode"), "round_prefer_floor"), "a": attrs.get("cubic_coeff_a", -0.75),
        "exclude_outside": attrs.get("exclude_outside", 0), "extrapolation": attrs.get("extrapolation_value", 0.0),
        "antialias": attrs.get("antialias", 0), "axes": None if axes is None else list(axes),
        "policy": text(attrs.get("keep_aspect_ratio_policy"), "stretch")})


@converter("Resize", until=10)
@converter("Upsample", since=9)
def _upsample(b, node, inputs, attrs):
    """Opset 10's Resize and Upsample: asymmetric coordinates, nearest rounds down."""
    return b.call(resize, (inputs[0], inputs[1]), {"kind": text(attrs.get("mode"), "nearest"), "mode": "asymmetric",
                                                   "nearest": "floor"})


@converter("Upsample", until=8)
def _upsample_attr(b, node, inputs, attrs):
    scales = torch.tensor(list(attrs["scales"]), dtype=torch.float32) if "scales" in attrs else \
        torch.tensor([1.0, 1.0, attrs.get("height_scale", 1.0), attrs.get("width_scale", 1.0)])
    return b.call(resize, (inputs[0], scales), {"kind": text(attrs.get("mode"), "nearest"), "mode": "asymmetric",
                                                "nearest": "floor"})
