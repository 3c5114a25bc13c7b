"""ONNX operators as torch functions (the semantics the importer emits into fx graphs).

Each function takes torch tensors (or Python values for attributes) and follows the ONNX spec,
including the cases where torch differs (integer Div, Flatten's 2-D result, Reshape's 0 and
``allowzero``, pre-13 Softmax flattening, ONNX pad order).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def div(a, b):
    if not a.dtype.is_floating_point and not b.dtype.is_floating_point:
        return torch.div(a, b, rounding_mode="trunc")
    return torch.div(a, b)


def flatten(x, axis: int = 1):
    axis = axis % x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), -1)


def reshape(x, shape, allowzero: int = 0):
    dims = [int(d) for d in shape.tolist()]
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def shape(x, start: int = 0, end: int | None = None):
    return torch.tensor(list(x.shape)[start:end], dtype=torch.int64)


def gather(data, indices, axis: int = 0):
    axis = axis % data.dim()
    idx = torch.where(indices < 0, indices + data.shape[axis], indices)
    out = data.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))


def unsqueeze(x, axes):
    axes = ints(axes)
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return x


def squeeze(x, axes=None):
    if axes is None:
        return x.squeeze()
    axes = ints(axes)
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def concat(*xs, axis: int = 0):
    return torch.cat(xs, dim=axis)


def transpose(x, perm=None):
    return x.permute(*(perm if perm is not None else reversed(range(x.dim()))))


def ints(v) -> list[int]:
    """A list of ints from a tensor, a list or a single int."""
    if v is None:
        return []
    if torch.is_tensor(v):
        return [int(i) for i in v.reshape(-1).tolist()]
    return [int(i) for i in v] if isinstance(v, (list, tuple)) else [int(v)]



def slice_(x, starts, ends, axes=None, steps=None):
    starts, ends = ints(starts), ints(ends)
    axes = list(range(len(starts))) if axes is None else ints(axes)
    steps = [1] * len(starts) if steps is None else ints(steps)
    index = [slice(None)] * x.dim()
    backward = []
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ValueError("Slice with step 0")
        n = x.shape[a]
        s, e = s + n if s < 0 else s, e + n if e < 0 else e
        if st > 0:
            index[a % x.dim()] = slice(max(0, min(n, s)), max(0, min(n, e)), st)
        else:  # ONNX clamps a backward slice to [0, n-1] and [-1, n-1]; torch has no negative steps
            backward.append((a % x.dim(), max(-1, min(n - 1, s)), max(-1, min(n - 1, e)), st))
    x = x[tuple(index)]
    for axis, s, e, st in backward:
        x = x.index_select(axis, torch.arange(s, e, st, device=x.device))
    return x


def constant_of_shape(shape, value: float = 0.0, dtype: torch.dtype = torch.float32):
    return torch.full([int(d) for d in shape.tolist()], value, dtype=dtype)


def expand(x, shape):
    return x.expand(torch.broadcast_shapes(x.shape, tuple(int(d) for d in shape.tolist())))


def clip(x, lo=None, hi=None):
    lo = None if lo is None else torch.as_tensor(lo, dtype=x.dtype)
    hi = None if hi is None else torch.as_tensor(hi, dtype=x.dtype)
    if lo is None and hi is None:
        return x.clone()
    return torch.clamp(x, min=lo, max=hi)


def hardmax(x, dim: int):
    return F.one_hot(x.argmax(dim), x.shape[dim]).movedim(-1, dim).to(x.dtype)


_NORMALIZERS = {"Softmax": F.softmax, "LogSoftmax": F.log_softmax, "Hardmax": hardmax}


def softmax(x, axis: int = -1, legacy: bool = False, kind: str = "Softmax"):
    """Softmax, LogSoftmax or Hardmax over ``axis``; ``legacy`` (opset < 13): over the input flattened to 2-D there."""
    fn = _NORMALIZERS[kind]
    if not legacy:
        return fn(x, dim=axis)
    axis = axis % x.dim() if x.dim() else 0
    flat = x.reshape(math.prod(x.shape[:axis]), -1)
    return fn(flat, dim=1).reshape(x.shape)


def text(value, default: str = "") -> str:
    """A string attribute (onnx gives bytes) or ``default``."""
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else value


def align_at(y, x, axis: int):
    """Opset < 7 broadcasting: ``y``'s dims line up with ``x``'s from ``axis`` on."""
    return y.reshape(tuple(y.shape) + (1,) * (x.dim() - axis - y.dim()))


def pow_(x, y):
    """ONNX Pow keeps the base's type."""
    return torch.pow(x, y).to(x.dtype)


def variadic(*xs, fn: str):
    """Sum, Mean, Max, Min of any number of broadcast inputs."""
    out = xs[0]
    step = {"Sum": torch.add, "Mean": torch.add, "Max": torch.maximum, "Min": torch.minimum}[fn]
    for x in xs[1:]:
        out = step(out, x)
    if fn == "Mean":
        out = out / len(xs)
    return out if len(xs) > 1 else out.clone()


def is_inf(x, negative: int = 1, positive: int = 1):
    none = torch.zeros_like(x, dtype=torch.bool)
    return (torch.isposinf(x) if positive else none) | (torch.isneginf(x) if negative else none)


def ones_mask(x):
    return torch.ones_like(x, dtype=torch.bool)


def selu(x, alpha: float, gamma: float):
    return gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


def thresholded_relu(x, alpha: float = 1.0):
    return torch.where(x > alpha, x, torch.zeros_like(x))


def shrink(x, lambd: float = 0.5, bias: float = 0.0):
    zero = torch.zeros_like(x)
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, zero)).to(x.dtype)


def swish(x, alpha: float = 1.0):
    return x * torch.sigmoid(alpha * x)


def swiglu(a, b, alpha: float = 1.0):
    return swish(a, alpha) * b


def prelu(x, slope, legacy: bool = False):
    if legacy and slope.dim() == 1 and slope.numel() > 1 and x.dim() > 2:  # opset < 7: a slope per channel
        slope = slope.reshape(-1, *([1] * (x.dim() - 2)))
    return torch.where(x < 0, x * slope, x).to(x.dtype)


FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2, torch.float8_e5m2fnuz)


def cast(x, dtype: torch.dtype, saturate: int = 1):
    """ONNX Cast; to float8 with ``saturate`` values beyond the type's range (infinities too) clamp to its max."""
    if dtype in FLOAT8 and x.dtype.is_floating_point:
        big = torch.finfo(dtype).max
        if saturate:
            x = torch.where(torch.isnan(x), x, x.clamp(-big, big))
        elif dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz):  # no infinities: beyond the range is NaN
            half_step = 2.0 ** (math.floor(math.log2(big)) - 3) / 2  # 3 mantissa bits
            x = torch.where(x.abs() >= big + half_step, torch.full_like(x, float("nan")), x)
    return x.to(dtype)


def cast_like(x, like, saturate: int = 1):
    return cast(x, like.dtype, saturate)


def bit_cast(x, dtype: torch.dtype):
    return x.view(dtype)


def einsum(*xs, equation: str):
    return torch.einsum(equation, *xs)


def gemm(a, b, c=None, alpha: float = 1.0, beta: float = 1.0, trans_a: int = 0, trans_b: int = 0):
    y = alpha * torch.matmul(a.t() if trans_a else a, b.t() if trans_b else b)
    return y if c is None else y + beta * c


def pad(x, pads, value=None, axes=None, mode: str = "constant"):
    """ONNX Pad: ``pads`` lists the begin counts then the end counts of ``axes`` (all axes by default); a
    negative count removes elements. Modes constant, reflect, edge and wrap, on any axis."""
    pads = ints(pads)
    axes = list(range(x.dim())) if axes is None else [a % x.dim() for a in ints(axes)]
    half = len(pads) // 2
    value = 0.0 if value is None else (value.reshape(-1)[0].item() if torch.is_tensor(value) and value.numel()
                                       else 0.0 if torch.is_tensor(value) else value)
    if mode == "constant":
        torch_pads = [0, 0] * x.dim()
        for a, bgn, end in zip(axes, pads[:half], pads[half:]):
            torch_pads[2 * (x.dim() - 1 - a)], torch_pads[2 * (x.dim() - 1 - a) + 1] = bgn, end
        return F.pad(x, torch_pads, mode="constant", value=value)
    for a, bgn, end in zip(axes, pads[:half], pads[half:]):
        n = x.shape[a]
        idx = torch.arange(-bgn, n + end)
        if mode == "edge":
            idx = idx.clamp(0, n - 1)
        elif mode == "wrap":
            idx = idx % n
        else:  # reflect: mirror without repeating the edge
            period = 2 * (n - 1) if n > 1 else 1
            idx = idx.abs() % period
            idx = torch.where(idx >= n, period - idx, idx)
        x = x.index_select(a, idx)
    return x


def range_(start, limit, delta):
    """ONNX Range in the inputs' type: ``max(ceil((limit - start) / delta), 0)`` steps."""
    n = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    return (torch.arange(n, dtype=torch.float64) * float(delta) + float(start)).to(start.dtype) \
        if start.dtype.is_floating_point else torch.arange(int(start), int(limit), int(delta), dtype=start.dtype)


def global_pool(x, kind: str):
    dims = tuple(range(2, x.dim()))
    return x.mean(dim=dims, keepdim=True) if kind == "avg" else x.amax(dim=dims, keepdim=True)


def instance_norm(x, scale, bias, eps: float):
    return F.instance_norm(x, weight=scale, bias=bias, eps=eps)


def hard_sigmoid(x, alpha: float = 0.2, beta: float = 0.5):
    return torch.clamp(alpha * x + beta, 0, 1)


def split(x, sizes=None, axis: int = 0, num_outputs: int | None = None):
    """ONNX Split: explicit ``sizes`` or ``num_outputs`` parts (the last one smaller when uneven)."""
    if sizes is None:
        n = num_outputs
        step = -(-x.shape[axis] // n)
        return tuple(torch.split(x, step, dim=axis))
    return tuple(torch.split(x, ints(sizes), dim=axis))


def mod(a, b, fmod: int = 0):
    """ONNX Mod: ``fmod=1`` is C's fmod (sign of the dividend), ``fmod=0`` Python's (sign of the divisor)."""
    return torch.fmod(a, b) if fmod else torch.remainder(a, b)


_GRID_MODES = {"linear": "bilinear", "cubic": "bicubic"}


def grid_sample(x, grid, mode: str = "bilinear", padding_mode: str = "zeros", align_corners: int = 0):
    """ONNX GridSample (opset 16 names bilinear/bicubic, opset 20 linear/cubic)."""
    return F.grid_sample(x, grid, mode=_GRID_MODES.get(mode, mode), padding_mode=padding_mode,
                         align_corners=bool(align_corners))


def affine_grid(theta, size, align_corners: int = 0):
    return F.affine_grid(theta, [int(s) for s in size.tolist()], align_corners=bool(align_corners))


def conv(x, w, bias=None, strides=(1,), begin=(0,), end=(0,), dilations=(1,), groups: int = 1,
         output_padding=None):
    """Convolution (``output_padding`` None) or transposed convolution with ONNX's begin/end pads, by computed
    weights."""
    rank = w.dim() - 2
    if output_padding is None:
        if list(begin) != list(end):
            x = pad(x, [0, 0] + list(begin) + [0, 0] + list(end))
            begin = [0] * rank
        fn = (F.conv1d, F.conv2d, F.conv3d)[rank - 1]
        return fn(x, w, bias, list(strides), list(begin), list(dilations), groups)
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[rank - 1]
    full = fn(x, w, None, list(strides), 0, 0, groups, list(dilations))
    full = F.pad(full, [v for p in reversed(list(output_padding)) for v in (0, p)])
    y = crop(full, begin, end)
    return y if bias is None else y + bias.reshape(1, -1, *([1] * rank))


def crop(x, begin, end):
    """Remove ``begin``/``end`` elements from each spatial dim (dims 2 on); a negative count adds zeros."""
    return F.pad(x, [-v for b, e in zip(reversed(list(begin)), reversed(list(end))) for v in (b, e)])
