"""Quantization: QuantizeLinear/DequantizeLinear as fake quantization, and the integer operators.

A QDQ model keeps its quantizers. A QuantizeLinear -> DequantizeLinear pair on an activation imports as one
fake quantizer (``FakeQuantize``: forward quantizes and dequantizes, backward is the straight-through
estimator, passing gradients inside the grid's range). A weight stored quantized (an integer initializer
read by DequantizeLinear, or a float initializer behind a QuantizeLinear -> DequantizeLinear pair) feeding a
crossbar layer becomes the layer's float parameter with its ``Grid`` on the ``ParamSource``: the layer reads
the parameter on the grid (``on_grid``), fine-tuning moves the float value under it (straight through), and
export writes it back quantized with the same scale and zero point, so an 8-bit model stays an 8-bit model.

Integer operators (MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv, DynamicQuantizeLinear) are
exact functions of their integer inputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.fx as fx

from ftcompile.frontend import ops
from ftcompile.frontend.dtypes import torch_dtype
from ftcompile.frontend.registry import converter


def spread(scale: torch.Tensor, shape, axis: int = 1, block: int = 0) -> torch.Tensor:
    """A per-tensor, per-axis or blocked scale (or zero point) broadcast to ``shape``."""
    if scale.dim() == 0 or scale.numel() == 1 and not block:
        return scale.reshape(())
    rank = len(shape)
    axis = axis % rank
    if block:
        return scale.repeat_interleave(block, dim=axis).narrow(axis, 0, shape[axis])
    return scale.reshape([-1 if d == axis else 1 for d in range(rank)])


def limits(dtype: torch.dtype) -> tuple[float, float]:
    if dtype in ops.FLOAT8:
        big = torch.finfo(dtype).max
        return -big, big
    info = torch.iinfo(dtype)
    return info.min, info.max


def quantize(x, scale, zero_point=None, axis: int = 1, block: int = 0, dtype: torch.dtype | None = None,
             saturate: int = 1):
    """``saturate(round_half_even(x / scale) + zero_point)`` in ``dtype`` (integer or float8; default: the zero
    point's type, else uint8)."""
    dtype = dtype or (zero_point.dtype if zero_point is not None else torch.uint8)
    s = spread(scale, x.shape, axis, block)
    zp = spread(zero_point, x.shape, axis, block).float() if zero_point is not None else 0.0
    if dtype in ops.FLOAT8:
        return ops.cast(x / s + zp, dtype, saturate)
    lo, hi = limits(dtype)
    return torch.clamp(torch.round(x / s) + zp, lo, hi).to(dtype)


def dequantize(q, scale, zero_point=None, axis: int = 1, block: int = 0, dtype: torch.dtype | None = None):
    s = spread(scale, q.shape, axis, block)
    zp = spread(zero_point, q.shape, axis, block).float() if zero_point is not None and q.dtype not in ops.FLOAT8 \
        else 0.0
    return ((q.float() - zp) * s).to(dtype or scale.dtype)


def fake_quantize(x, scale, zero_point=None, axis: int = 1, block: int = 0, dtype: torch.dtype = torch.uint8):
    """Quantize-dequantize; its gradient is the straight-through estimator (1 inside the grid's range, else 0)."""
    if dtype in ops.FLOAT8:
        return dequantize(quantize(x, scale, zero_point, axis, block, dtype), scale, zero_point, axis, block, x.dtype)
    s = spread(scale, x.shape, axis, block)
    zp = spread(zero_point, x.shape, axis, block).float() if zero_point is not None else 0.0
    lo, hi = limits(dtype)
    q = torch.round(x / s) + zp
    inside = ((q >= lo) & (q <= hi)).to(x.dtype).detach()
    y = ((q.clamp(lo, hi) - zp) * s).to(x.dtype)
    # value y, gradient `inside` (plain tensor algebra rather than an autograd.Function: vmap takes it as it is)
    return x * inside + (y - x * inside).detach()


@dataclass(frozen=True)
class Grid:
    """The quantization grid of a weight: scale, zero point, axis, block size, the integer dtype stored, and
    whether the initializer holds the integers (``stored_int``) or the float value a QuantizeLinear reads."""

    scale: torch.Tensor
    zero_point: torch.Tensor | None
    axis: int
    block: int
    dtype: torch.dtype
    stored_int: bool
    transposed: bool = field(default=False)  # the layer holds the initializer's transpose (MatMul -> Linear)

    def snap(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` on the grid (quantized and dequantized)."""
        v = w.t() if self.transposed else w
        v = dequantize(quantize(v, self.scale, self.zero_point, self.axis, self.block, self.dtype),
                       self.scale, self.zero_point, self.axis, self.block, w.dtype)
        return v.t() if self.transposed else v

    def to_stored(self, w: np.ndarray) -> np.ndarray:
        """What export writes into the initializer: the integers, or the float value itself."""
        if not self.stored_int:
            return w
        q = quantize(torch.from_numpy(np.ascontiguousarray(w)), self.scale, self.zero_point, self.axis, self.block,
                     self.dtype)
        return q.numpy()


class OnGrid:
    """Mixin for a layer whose parameters lie on quantization grids: ``self.weight`` (``bias``) reads as
    ``given + (snap(p) - p)``, ``p`` the layer's own parameter and ``given`` the tensor in its place.

    Without drift ``given`` is ``p``: the forward is ``snap(p)`` and the gradient reaches ``p`` unchanged (the
    straight-through estimator). Under drift, where ``functional_call`` puts ``p * d`` in its place, the layer
    reads ``snap(p) + p (d - 1)``: the programmed 8-bit weight drifted (exactly so while ``p`` is on the grid).
    """

    def __getattr__(self, name):
        value = super().__getattr__(name)
        grids = self.__dict__.get("_grids")
        if grids and name in grids and value is not None:
            own = self.__dict__["_grid_params"][name]
            return value + (grids[name].snap(own) - own).detach()
        return value


_ON_GRID: dict[type, type] = {}


def put_on_grid(module: torch.nn.Module, name: str, grid: Grid) -> None:
    """Make ``module.<name>`` read on ``grid`` (the module's class gains ``OnGrid``)."""
    cls = type(module)
    if not issubclass(cls, OnGrid):
        if cls not in _ON_GRID:
            # the same class name: passes name layers by their torch kind (Conv2d, Linear)
            _ON_GRID[cls] = type(cls.__name__, (OnGrid, cls), {"__module__": __name__})
        module.__class__ = _ON_GRID[cls]
        object.__setattr__(module, "_grids", {})
        object.__setattr__(module, "_grid_params", {})
    module.__dict__["_grids"][name] = grid
    module.__dict__["_grid_params"][name] = module._parameters[name]


def matmul_integer(a, b, a_zp=None, b_zp=None):
    a = a.double() - (a_zp.double() if a_zp is not None else 0)
    b = b.double() - (_per_row(b_zp, b).double() if b_zp is not None else 0)
    return torch.matmul(a, b).to(torch.int32)


def _per_row(zp, b):
    return zp.reshape(-1) if zp.numel() > 1 and b.dim() >= 2 and zp.numel() == b.shape[-1] else zp


def conv_integer(x, w, x_zp=None, w_zp=None, **geometry):
    x = x.double() - (x_zp.double() if x_zp is not None else 0)
    w = w.double() - (w_zp.double().reshape(-1, *([1] * (w.dim() - 1))) if w_zp is not None and w_zp.numel() > 1
                      else w_zp.double() if w_zp is not None else 0)
    return ops.conv(x, w, None, **geometry).round().to(torch.int32)


def qlinear_matmul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp):
    acc = torch.matmul(a.double() - a_zp.double(), b.double() - b_zp.double())
    lo, hi = limits(y_zp.dtype)
    y = acc * (a_scale.double() * b_scale.double() / y_scale.double()) + y_zp.double()
    return torch.clamp(torch.round(y), lo, hi).to(y_zp.dtype)


def qlinear_conv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias=None, **geometry):
    acc = conv_integer(x, w, x_zp, w_zp, **geometry).double()
    if bias is not None:
        acc = acc + bias.double().reshape(1, -1, *([1] * (x.dim() - 2)))
    ws = w_scale.double().reshape(1, -1, *([1] * (x.dim() - 2))) if w_scale.numel() > 1 else w_scale.double()
    y = acc * (x_scale.double() * ws / y_scale.double()) + y_zp.double()
    lo, hi = limits(y_zp.dtype)
    return torch.round(torch.clamp(y, lo, hi)).to(y_zp.dtype)


def dynamic_quantize(x):
    """DynamicQuantizeLinear: uint8 ``y``, the scale and zero point spanning [min(x, 0), max(x, 0)]."""
    hi, lo = torch.clamp(x.max(), min=0), torch.clamp(x.min(), max=0)
    scale = torch.where(hi == lo, torch.ones_like(hi), hi - lo) / 255
    zp = torch.round(torch.clamp(0 - lo / scale, 0, 255))
    y = torch.clamp(torch.round(x / scale) + zp, 0, 255).to(torch.uint8)
    return y, scale.to(x.dtype), zp.to(torch.uint8)


# --- converters ----------------------------------------------------------------------------------
def _axis_block(attrs):
    return {"axis": attrs.get("axis", 1), "block": attrs.get("block_size", 0)}


@converter("QuantizeLinear")
def _quantize(b, node, inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    dtype = torch_dtype(attrs["output_dtype"]) if attrs.get("output_dtype") else None
    return b.call(quantize, (x, scale, zp),
                  {**_axis_block(attrs), "dtype": dtype, "saturate": attrs.get("saturate", 1)})


@converter("DequantizeLinear")
def _dequantize(b, node, inputs, attrs):
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    out_dtype = torch_dtype(attrs["output_dtype"]) if attrs.get("output_dtype") else None
    q = b.producer.get(node.input[0])
    if isinstance(x, fx.Node) and q is not None and q.op_type == "QuantizeLinear" and \
            isinstance(b.env[q.input[0]], fx.Node) and torch.is_tensor(x_scale := b.env[q.input[1]]):
        # a Q -> DQ pair on an activation: one fake quantizer (straight through in training)
        source = b.env[q.input[0]]
        q_zp = b.env[q.input[2]] if len(q.input) > 2 and q.input[2] else None
        if torch.equal(x_scale, scale) and (q_zp is None) == (zp is None) and (zp is None or torch.equal(q_zp, zp)):
            dtype = zp.dtype if zp is not None else torch.uint8
            if dtype not in ops.FLOAT8 and out_dtype in (None, torch.float32):
                return b.call(fake_quantize, (source, scale, zp), {**_axis_block(attrs), "dtype": dtype})
    out = b.call(dequantize, (x, scale, zp), {**_axis_block(attrs), "dtype": out_dtype})
    if torch.is_tensor(out) and torch.is_tensor(scale) and (zp is None or torch.is_tensor(zp)):
        _note_grid(b, node, x, scale, zp, attrs)
    return out


def _note_grid(b, node, x, scale, zp, attrs):
    """Remember which initializer a constant DequantizeLinear output comes from, and on which grid."""
    src = node.input[0]
    if src in b.initializers and not x.dtype.is_floating_point:
        b.grids[node.output[0]] = (src, Grid(scale, zp, attrs.get("axis", 1), attrs.get("block_size", 0),
                                             x.dtype, True))
        return
    q = b.producer.get(src)
    if (q is not None and q.op_type == "QuantizeLinear" and q.input[0] in b.initializers
            and not x.dtype.is_floating_point):
        b.grids[node.output[0]] = (q.input[0], Grid(scale, zp, attrs.get("axis", 1), attrs.get("block_size", 0),
                                                    x.dtype, False))


@converter("DynamicQuantizeLinear")
def _dynamic_quantize(b, node, inputs, attrs):
    return b.parts(b.call(dynamic_quantize, (inputs[0],)), 3)


@converter("MatMulInteger")
def _matmul_integer(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    return b.call(matmul_integer, tuple(args[:4]))


def _conv_geometry(b, node, attrs, w, w_input: int):
    """``ops.conv``'s keyword arguments for an integer convolution whose weight is input ``w_input``."""
    from ftcompile.frontend.converters import geometry

    kernel, strides, dil, pads = geometry(b, node, attrs, w, w_input)
    rank = len(kernel)
    return {"strides": strides, "begin": pads[:rank], "end": pads[rank:], "dilations": dil,
            "groups": attrs.get("group", 1)}


@converter("ConvInteger")
def _conv_integer(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    return b.call(conv_integer, tuple(args[:4]), _conv_geometry(b, node, attrs, args[1], 1))


@converter("QLinearMatMul")
def _qlinear_matmul(b, node, inputs, attrs):
    return b.call(qlinear_matmul, tuple(inputs[:8]))


@converter("QLinearConv")
def _qlinear_conv(b, node, inputs, attrs):
    args = list(inputs) + [None] * (9 - len(inputs))
    return b.call(qlinear_conv, tuple(args[:9]), _conv_geometry(b, node, attrs, args[3], 3))

