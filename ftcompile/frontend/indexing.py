"""Indexing and rearranging: gathers and scatters, TopK, NonZero, Compress, Unique, OneHot, Trilu, Tile,
EyeLike, Size, DepthToSpace/SpaceToDepth, ReverseSequence, CenterCropPad, TensorScatter.

Index outputs are exact (int64, ONNX's order for ties); values gathered or scattered keep their gradients.
Negative indices count from the end of their axis, as ONNX allows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftcompile.frontend.dtypes import torch_dtype
from ftcompile.frontend import ops
from ftcompile.frontend.ops import ints, text
from ftcompile.frontend.registry import converter


def _wrap(idx, n):
    return torch.where(idx < 0, idx + n, idx)


def gather_elements(data, indices, axis: int = 0):
    return torch.gather(data, axis, _wrap(indices, data.shape[axis]).long())


def gather_nd(data, indices, batch_dims: int = 0):
    """ONNX GatherND: the last axis of ``indices`` addresses the leading dims of ``data`` after ``batch_dims``."""
    indices = indices.long()
    k = indices.shape[-1]
    batch = data.shape[:batch_dims]
    nb = math.prod(batch)
    flat = data.reshape(nb, *data.shape[batch_dims:])
    idx = indices.reshape(nb, -1, k)
    dims = torch.tensor(flat.shape[1:k + 1], dtype=torch.long)
    idx = _wrap(idx, dims)
    strides = torch.tensor([math.prod(flat.shape[2 + i:k + 1]) for i in range(k)], dtype=torch.long)
    linear = (idx * strides).sum(-1)  # nb x m
    rows = flat.reshape(nb, math.prod(flat.shape[1:k + 1]), *flat.shape[k + 1:])
    out = torch.stack([rows[i].index_select(0, linear[i]) for i in range(nb)]) if nb else rows[:, :0]
    return out.reshape(*indices.shape[:-1], *data.shape[batch_dims + k:])


_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}


def scatter_elements(data, indices, updates, axis: int = 0, reduction: str = "none"):
    idx = _wrap(indices, data.shape[axis]).long()
    if reduction == "none":
        return data.scatter(axis, idx, updates)
    return data.scatter_reduce(axis, idx, updates, reduce=_REDUCE[reduction], include_self=True)


def scatter_nd(data, indices, updates, reduction: str = "none"):
    indices = indices.long()
    k = indices.shape[-1]
    rest = data.shape[k:]
    flat = data.reshape(math.prod(data.shape[:k]), *rest)
    dims = torch.tensor(data.shape[:k], dtype=torch.long)
    idx = _wrap(indices.reshape(-1, k), dims)
    strides = torch.tensor([math.prod(data.shape[i + 1:k]) for i in range(k)], dtype=torch.long)
    linear = (idx * strides).sum(-1)
    upd = updates.reshape(-1, *rest)
    if reduction == "none":
        out = flat.index_copy(0, linear, upd)
    else:
        index = linear.reshape(-1, *([1] * len(rest))).expand(-1, *rest)
        out = flat.scatter_reduce(0, index, upd, reduce=_REDUCE[reduction], include_self=True)
    return out.reshape(data.shape)


def top_k(x, k, axis: int = -1, largest: int = 1, sorted_: int = 1):
    """Values and int64 indices of the ``k`` largest (smallest) along ``axis``; ties keep the lower index first."""
    k = int(k) if not torch.is_tensor(k) else int(k.reshape(-1)[0])
    order = torch.sort(x, dim=axis, descending=bool(largest), stable=True).indices.narrow(axis, 0, k)
    return torch.gather(x, axis, order), order


def non_zero(x):
    return torch.nonzero(x).t().contiguous() if x.dim() else torch.zeros((0, int(bool(x))), dtype=torch.long)


def compress(x, condition, axis=None):
    keep = torch.nonzero(condition.reshape(-1)).reshape(-1)
    if axis is None:
        return x.reshape(-1).index_select(0, keep)
    return x.index_select(axis, keep)


def unique(x, axis=None, sorted_: int = 1):
    """ONNX Unique: values, index of each one's first occurrence, inverse indices, counts (all int64)."""
    values, inverse, counts = torch.unique(x if axis is not None else x.reshape(-1), sorted=True, return_inverse=True,
                                           return_counts=True, dim=axis)
    n = (x.shape[axis] if axis is not None else x.numel())
    first = torch.full((values.shape[axis if axis is not None else 0],), n, dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(n), reduce="amin")
    if not sorted_:  # order of first occurrence
        order = torch.argsort(first)
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order))
        values = values.index_select(axis if axis is not None else 0, order)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    return values, first, inverse, counts


def one_hot(indices, depth, values, axis: int = -1):
    depth = int(depth.reshape(-1)[0]) if torch.is_tensor(depth) else int(depth)
    idx = indices.to(torch.long) if not indices.dtype.is_floating_point else indices.trunc().long()
    idx = torch.where(idx < 0, idx + depth, idx)
    rank = indices.dim() + 1
    axis = axis % rank
    hot = idx.unsqueeze(axis) == torch.arange(depth).reshape([-1] + [1] * (rank - 1 - axis))
    return torch.where(hot, values[1], values[0])


def trilu(x, k=None, upper: int = 1):
    k = 0 if k is None else int(k.reshape(-1)[0]) if torch.is_tensor(k) else int(k)
    return torch.triu(x, k) if upper else torch.tril(x, k)


def tile(x, repeats):
    return x.repeat(ints(repeats)) if x.dim() else x.clone()


def eye_like(x, k: int = 0, dtype=None):
    rows = torch.arange(x.shape[0]).unsqueeze(1)
    cols = torch.arange(x.shape[1]).unsqueeze(0)
    return (cols - rows == k).to(dtype or x.dtype)


def size(x):
    return torch.tensor(x.numel(), dtype=torch.int64)


def depth_to_space(x, blocksize: int, mode: str = "DCR"):
    n, c, h, w = x.shape
    bs = blocksize
    if mode == "DCR":
        y = x.reshape(n, bs, bs, c // bs ** 2, h, w).permute(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // bs ** 2, bs, bs, h, w).permute(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // bs ** 2, h * bs, w * bs)


def space_to_depth(x, blocksize: int, mode: str = "DCR"):
    n, c, h, w = x.shape
    bs = blocksize
    y = x.reshape(n, c, h // bs, bs, w // bs, bs).permute(*((0, 3, 5, 1, 2, 4) if mode == "DCR"
                                                            else (0, 1, 3, 5, 2, 4)))
    return y.reshape(n, c * bs * bs, h // bs, w // bs)


def reverse_sequence(x, lens, batch_axis: int = 1, time_axis: int = 0):
    """Reverse the first ``lens[b]`` steps of each batch entry along ``time_axis``."""
    t = torch.arange(x.shape[time_axis]).unsqueeze(1)
    lens = lens.long().unsqueeze(0)
    src = torch.where(t < lens, lens - 1 - t, t)  # time x batch
    if batch_axis < time_axis:
        src = src.t()
    shape = [1] * x.dim()
    shape[time_axis], shape[batch_axis] = x.shape[time_axis], x.shape[batch_axis]
    return torch.gather(x, time_axis, src.reshape(shape).expand(x.shape))


def center_crop_pad(x, shape, axes=None):
    axes = list(range(x.dim())) if axes is None else [a % x.dim() for a in axes]
    for a, target in zip(axes, ints(shape)):
        n = x.shape[a]
        if target < n:  # crop: the larger half of the surplus goes off the end
            x = x.narrow(a, (n - target) // 2, target)
        elif target > n:
            before = (target - n) // 2
            pads = [0, 0] * x.dim()
            pads[2 * (x.dim() - 1 - a)], pads[2 * (x.dim() - 1 - a) + 1] = before, target - n - before
            x = F.pad(x, pads)
    return x


def tensor_scatter(cache, update, write_indices=None, axis: int = -2, mode: str = "linear"):
    """Write ``update`` into ``cache`` along ``axis`` at each batch entry's write index (circular: modulo)."""
    axis = axis % cache.dim()
    n, steps = cache.shape[axis], update.shape[axis]
    start = torch.zeros(cache.shape[0], dtype=torch.long) if write_indices is None else write_indices.long()
    pos = start.unsqueeze(1) + torch.arange(steps).unsqueeze(0)  # batch x steps
    if mode == "circular":
        pos = pos % n
    shape = [1] * cache.dim()
    shape[0], shape[axis] = cache.shape[0], steps
    return cache.scatter(axis, pos.reshape(shape).expand(update.shape), update)


# --- converters ----------------------------------------------------------------------------------
@converter("GatherElements")
def _gather_elements(b, node, inputs, attrs):
    return b.call(gather_elements, (inputs[0], inputs[1]), {"axis": attrs.get("axis", 0)})


@converter("GatherND")
def _gather_nd(b, node, inputs, attrs):
    return b.call(gather_nd, (inputs[0], inputs[1]), {"batch_dims": attrs.get("batch_dims", 0)})


@converter("ScatterElements", "Scatter")
def _scatter_elements(b, node, inputs, attrs):
    return b.call(scatter_elements, (inputs[0], inputs[1], inputs[2]),
                  {"axis": attrs.get("axis", 0), "reduction": text(attrs.get("reduction"), "none")})


@converter("ScatterND")
def _scatter_nd(b, node, inputs, attrs):
    return b.call(scatter_nd, (inputs[0], inputs[1], inputs[2]), {"reduction": text(attrs.get("reduction"), "none")})


@converter("TopK", until=9)
def _top_k_attr(b, node, inputs, attrs):
    return b.parts(b.call(top_k, (inputs[0],), {"k": attrs["k"], "axis": attrs.get("axis", -1)}), 2)


@converter("TopK", since=10)
def _top_k(b, node, inputs, attrs):
    return b.parts(b.call(top_k, (inputs[0], inputs[1]), {"axis": attrs.get("axis", -1),
                                                            "largest": attrs.get("largest", 1),
                                                            "sorted_": attrs.get("sorted", 1)}), 2)


@converter("NonZero")
def _non_zero(b, node, inputs, attrs):
    return b.call(non_zero, (inputs[0],))


@converter("Compress")
def _compress(b, node, inputs, attrs):
    return b.call(compress, (inputs[0], inputs[1]), {"axis": attrs.get("axis")})


@converter("Unique")
def _unique(b, node, inputs, attrs):
    return b.parts(b.call(unique, (inputs[0],), {"axis": attrs.get("axis"), "sorted_": attrs.get("sorted", 1)}), 4)


@converter("OneHot")
def _one_hot(b, node, inputs, attrs):
    return b.call(one_hot, (inputs[0], inputs[1], inputs[2]), {"axis": attrs.get("axis", -1)})


@converter("Trilu")
def _trilu(b, node, inputs, attrs):
    k = inputs[1] if len(inputs) > 1 else None
    return b.call(trilu, (inputs[0], k), {"upper": attrs.get("upper", 1)})


@converter("Tile", since=6)
def _tile(b, node, inputs, attrs):
    return b.call(tile, (inputs[0], inputs[1]))


@converter("Tile", until=5)
def _tile_axis(b, node, inputs, attrs):
    """Opset 1-5: ``tiles`` copies along ``axis`` (both inputs)."""
    return b.call(_tile_along, (inputs[0], inputs[1], inputs[2]))


def _tile_along(x, tiles, axis):
    reps = [1] * x.dim()
    reps[int(axis.reshape(-1)[0])] = int(tiles.reshape(-1)[0])
    return x.repeat(reps)


@converter("EyeLike")
def _eye_like(b, node, inputs, attrs):
    dtype = torch_dtype(attrs["dtype"]) if "dtype" in attrs else None
    return b.call(eye_like, (inputs[0],), {"k": attrs.get("k", 0), "dtype": dtype})


@converter("Size")
def _size(b, node, inputs, attrs):
    return b.call(size, (inputs[0],))


@converter("DepthToSpace")
def _depth_to_space(b, node, inputs, attrs):
    return b.call(depth_to_space, (inputs[0],), {"blocksize": attrs["blocksize"],
                                                 "mode": text(attrs.get("mode"), "DCR")})


@converter("SpaceToDepth")
def _space_to_depth(b, node, inputs, attrs):
    return b.call(space_to_depth, (inputs[0],), {"blocksize": attrs["blocksize"],
                                                 "mode": ops.text(attrs.get("mode"), "DCR")})


@converter("ReverseSequence")
def _reverse_sequence(b, node, inputs, attrs):
    return b.call(reverse_sequence, (inputs[0], inputs[1]), {"batch_axis": attrs.get("batch_axis", 1),
                                                             "time_axis": attrs.get("time_axis", 0)})


@converter("CenterCropPad")
def _center_crop_pad(b, node, inputs, attrs):
    axes = attrs.get("axes")
    return b.call(center_crop_pad, (inputs[0], inputs[1]), {"axes": None if axes is None else list(axes)})


@converter("TensorScatter")
def _tensor_scatter(b, node, inputs, attrs):
    args = list(inputs) + [None] * (3 - len(inputs))
    return b.call(tensor_scatter, tuple(args[:3]), {"axis": attrs.get("axis", -2),
                                                    "mode": text(attrs.get("mode"), "linear")})

