"""Pooling: MaxPool (with its indices), AveragePool, LpPool, the global pools, MaxUnpool, Col2Im.

torch's pooling kernels take symmetric pads of at most half the kernel and no dilation for averages; the
general case here sums each window with a depthwise convolution by ones (zero padding, dilations, ceil mode)
and divides by the count of the window's cells that ONNX counts.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import ops
from ftcompile.frontend.converters import geometry
from ftcompile.frontend.registry import converter

_CONV = (F.conv1d, F.conv2d, F.conv3d)


def out_size(n: int, k: int, s: int, d: int, begin: int, end: int, ceil_mode: int) -> int:
    """ONNX pooling output length: a ceil-mode window must start inside the input or its begin padding."""
    span = n + begin + end - (d * (k - 1) + 1)
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + begin:
        out -= 1
    return out


def window_sum(x, kernel, strides, dilations, begin, end, ceil_mode: int, fill: float = 0.0):
    """Sum of each window of ``x`` (N x C x spatial), ``x`` padded with ``fill`` (and zeros beyond, for ceil mode)."""
    rank = len(kernel)
    extra = []
    for i in range(rank):
        n = x.shape[2 + i]
        out = out_size(n, kernel[i], strides[i], dilations[i], begin[i], end[i], ceil_mode)
        need = (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - (n + begin[i] + end[i])
        extra.append(max(0, need))
    padded = ops.pad(x, [0, 0] + list(begin) + [0, 0] + list(end), fill)
    padded = ops.pad(padded, [0] * (rank + 2) + [0, 0] + extra, 0.0)
    c = x.shape[1]
    ones = torch.ones((c, 1, *kernel), dtype=x.dtype)
    return _CONV[rank - 1](padded, ones, None, list(strides), 0, list(dilations), c)


def avg_pool(x, kernel, strides, pads, dilations, ceil_mode: int = 0, count_include_pad: int = 0):
    rank = len(kernel)
    begin, end = list(pads[:rank]), list(pads[rank:])
    simple = (all(d == 1 for d in dilations) and begin == end and all(p <= k // 2 for p, k in zip(begin, kernel))
              and not ceil_mode)
    if simple:
        fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[rank - 1]
        return fn(x, kernel, strides, begin, count_include_pad=bool(count_include_pad))
    total = window_sum(x, kernel, strides, dilations, begin, end, ceil_mode)
    mask = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype)
    count = window_sum(mask, kernel, strides, dilations, begin, end, ceil_mode, fill=float(bool(count_include_pad)))
    return total / count


def lp_pool(x, kernel, strides, pads, dilations, ceil_mode: int = 0, p: float = 2.0):
    rank = len(kernel)
    total = window_sum(x.abs() ** p, kernel, strides, dilations, pads[:rank], pads[rank:], ceil_mode)
    return total ** (1.0 / p)


def max_pool(x, kernel, strides, pads, dilations, ceil_mode: int = 0, indices: bool = False, storage_order: int = 0):
    """ONNX MaxPool; with ``indices`` also the flat index of each maximum in the input (N, C and spatial)."""
    rank = len(kernel)
    begin, end = list(pads[:rank]), list(pads[rank:])
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[rank - 1]
    fits = begin == end and all(p <= k // 2 for p, k in zip(begin, kernel))
    if not fits:
        if indices:
            raise ValueError("MaxPool indices with pads beyond half the kernel")
        # explicit -inf padding; ceil mode then measures windows against the padded input
        x = ops.pad(x, [0, 0] + begin + [0, 0] + end, float("-inf") if x.dtype.is_floating_point else
                    torch.iinfo(x.dtype).min)
        begin = [0] * rank
    if not x.dtype.is_floating_point:
        return fn(x.double(), kernel, strides, begin, dilations, ceil_mode=bool(ceil_mode)).to(x.dtype)
    if not indices:
        return fn(x, kernel, strides, begin, dilations, ceil_mode=bool(ceil_mode))
    y, idx = fn(x, kernel, strides, begin, dilations, ceil_mode=bool(ceil_mode), return_indices=True)
    spatial = x.shape[2:]
    if storage_order and rank == 2:
        h, w = idx // spatial[1], idx % spatial[1]
        idx = w * spatial[0] + h
    planes = torch.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], *([1] * rank))
    return y, idx + planes * math.prod(spatial)


def max_unpool(x, indices, output_shape=None, inferred=()):
    """Each value back at its MaxPool index in a zero tensor of the pooled input's shape ``inferred``
    (its top-left corner of ``output_shape`` when that is larger)."""
    n, c = x.shape[0], x.shape[1]
    plane = math.prod(inferred)
    out = torch.zeros(n, c, plane, dtype=x.dtype)
    out = out.scatter(2, (indices % plane).reshape(n, c, -1), x.reshape(n, c, -1)).reshape(n, c, *inferred)
    if output_shape is None:
        return out
    target = ops.ints(output_shape)[2:]
    return ops.crop(out, [0] * len(target), [i - t for i, t in zip(inferred, target)])


def col2im(x, image_shape, block_shape, dilations=None, pads=None, strides=None):
    image, block = ops.ints(image_shape), ops.ints(block_shape)
    if len(image) != 2:
        raise ValueError("Col2Im is supported for 2-D images (torch's fold)")
    dilations, strides = dilations or [1, 1], strides or [1, 1]
    pads = pads or [0, 0, 0, 0]
    size = [image[0] + pads[0] + pads[2], image[1] + pads[1] + pads[3]]
    y = F.fold(x, size, block, dilation=dilations, padding=0, stride=strides)
    return ops.crop(y, pads[:2], pads[2:])


def global_lp_pool(x, p: float = 2.0):
    dims = tuple(range(2, x.dim()))
    return (x.abs() ** p).sum(dim=dims, keepdim=True) ** (1.0 / p)


# --- converters ----------------------------------------------------------------------------------
@converter("MaxPool")
def _max_pool(b, node, inputs, attrs):
    kernel, strides, dil, pads = geometry(b, node, attrs)
    indices = len(node.output) > 1 and bool(node.output[1])
    out = b.call(max_pool, (inputs[0],), {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dil,
                                          "ceil_mode": attrs.get("ceil_mode", 0), "indices": indices,
                                          "storage_order": attrs.get("storage_order", 0)})
    return b.parts(out, 2) if indices else out


@converter("AveragePool")
def _avg_pool(b, node, inputs, attrs):
    kernel, strides, dil, pads = geometry(b, node, attrs)
    return b.call(avg_pool, (inputs[0],), {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dil,
                                           "ceil_mode": attrs.get("ceil_mode", 0),
                                           "count_include_pad": attrs.get("count_include_pad", 0)})


@converter("LpPool")
def _lp_pool(b, node, inputs, attrs):
    kernel, strides, dil, pads = geometry(b, node, attrs)
    return b.call(lp_pool, (inputs[0],), {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dil,
                                          "ceil_mode": attrs.get("ceil_mode", 0), "p": float(attrs.get("p", 2))})


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b, node, inputs, attrs):
    return b.call(ops.global_pool, (inputs[0],), {"kind": "avg" if node.op_type == "GlobalAveragePool" else "max"})


@converter("GlobalLpPool")
def _global_lp_pool(b, node, inputs, attrs):
    return b.call(global_lp_pool, (inputs[0],), {"p": float(attrs.get("p", 2))})


@converter("MaxUnpool")
def _max_unpool(b, node, inputs, attrs):
    kernel, strides, _, pads = geometry(b, node, {**attrs, "auto_pad": "NOTSET"})
    shape = b.shapes.get(node.input[0])
    if shape is None or any(d is None for d in shape[2:]):
        raise UnsupportedModelError(f"MaxUnpool {node.name or node.output[0]!r} needs static spatial input sizes.")
    rank = len(kernel)
    inferred = [(shape[2 + i] - 1) * strides[i] + kernel[i] - pads[i] - pads[rank + i] for i in range(rank)]
    out_shape = inputs[2] if len(inputs) > 2 else None
    return b.call(max_unpool, (inputs[0], inputs[1], out_shape), {"inferred": inferred})


@converter("Col2Im")
def _col2im(b, node, inputs, attrs):
    dims = inputs[1].numel() if torch.is_tensor(inputs[1]) else (b.shapes.get(node.input[1]) or [2])[0]
    if dims != 2:
        raise UnsupportedModelError(f"Col2Im {node.name or node.output[0]!r} on {dims}-D images: only 2-D images "
                                    "are supported (torch's fold).")
    return b.call(col2im, (inputs[0], inputs[1], inputs[2]),
                  {"dilations": list(attrs["dilations"]) if "dilations" in attrs else None,
                   "pads": list(attrs["pads"]) if "pads" in attrs else None,
                   "strides": list(attrs["strides"]) if "strides" in attrs else None})
