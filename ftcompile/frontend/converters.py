"""Converters of the ONNX importer's op table (``registry.py``): element-wise math, crossbar layers,
normalization, pooling, shapes. ``fn(b, node, inputs, attrs)``:

A converter reads its inputs (``fx.Node`` for dynamic values, ``torch.Tensor`` for constants) and returns
the op's output(s) through the builder ``b``: ``b.call`` emits a function (folded when every input is
constant), ``b.module`` a trainable layer whose parameters remember the initializer they came from.
Adding an op is one ``@converter`` entry and its node cases in the conformance suite. Operator semantics
live in ``ops.py``.
"""
from __future__ import annotations

import operator

import numpy as np
import onnx
import torch
import torch.fx as fx
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import ops
from ftcompile.frontend.dtypes import torch_dtype
from ftcompile.frontend.recurrent import OnnxRecurrent
from ftcompile.frontend.registry import converter



class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm for any rank (ONNX does not tell torch's 1d/2d/3d apart)."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError("BatchNormalization needs (N, C, ...) input")


class InstanceNorm(nn.Module):
    def __init__(self, scale: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(scale), nn.Parameter(bias), eps

    def forward(self, x):
        return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _text(value, default: str) -> str:
    value = default if value is None else value
    return value.decode() if isinstance(value, bytes) else value


def _static(node, value, what: str):
    if isinstance(value, fx.Node):
        raise UnsupportedModelError(f"{node.op_type} {_name(node)!r} with computed {what} is not supported.")
    return value


# --- crossbar layers and normalization -----------------------------------------------------------
@converter("MatMul")
def _matmul(b, node, inputs, attrs):
    w = b.const(node.input[1])
    if w is not None and w.dim() == 2 and isinstance(inputs[0], fx.Node):
        return _linear_from_matmul(b, node, inputs)
    return b.call(torch.matmul, (inputs[0], inputs[1]))


@converter("Gemm")
def _gemm(b, node, inputs, attrs):
    a, w = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    as_linear = (torch.is_tensor(w) and isinstance(a, fx.Node) and alpha == 1.0 and beta == 1.0 and not trans_a
                 and (c is None or (torch.is_tensor(c) and c.numel() == (w.shape[0] if trans_b else w.shape[1]))))
    if not as_linear:
        return b.call(ops.gemm, tuple(x for x in (a, w, c) if x is not None),
                      {"alpha": alpha, "beta": beta, "trans_a": trans_a, "trans_b": trans_b})
    weight = w if trans_b else w.t()
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=c is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if c is not None:
            lin.bias.copy_(c.reshape(-1))
    srcs = {"weight": b.source(node.input[1], transposed=not trans_b),
            "bias": b.source(node.input[2]) if c is not None else None}
    return b.module(_layer_name(node, node.input[1]), lin, a, srcs)


def _linear_from_matmul(b, node, inputs):
    """MatMul by a constant matrix (and an Add of a constant vector right after it) is a Linear."""
    w = b.const(node.input[1])
    users = b.consumers.get(node.output[0], [])
    add = users[0] if len(users) == 1 and users[0].op_type == "Add" else None
    bias_name = None
    if add is not None:
        other = [i for i in add.input if i != node.output[0]]
        c = b.const(other[0]) if len(other) == 1 else None
        if c is not None and c.numel() == w.shape[1] and c.dim() <= 1 and node.output[0] not in \
                {o.name for o in b.model.graph.output}:
            bias_name = other[0]
    lin = nn.Linear(w.shape[0], w.shape[1], bias=bias_name is not None)
    with torch.no_grad():
        lin.weight.copy_(w.t())
        if bias_name is not None:
            lin.bias.copy_(b.const(bias_name).reshape(-1))
    srcs = {"weight": b.source(node.input[1], transposed=True),
            "bias": b.source(bias_name) if bias_name else None}
    out = b.module(_layer_name(node, node.input[1]), lin, inputs[0], srcs)
    if bias_name is None:
        return out
    # the Add is folded into the Linear: its output is this module's output
    b.skip.add(list(b.model.graph.node).index(add))
    out.meta["onnx_tensor"] = add.output[0]
    b.env[add.output[0]] = out
    return out


@converter("Conv", "ConvTranspose")
def _conv(b, node, inputs, attrs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if not torch.is_tensor(w) or (bias is not None and not torch.is_tensor(bias)):
        raise UnsupportedModelError(f"{node.op_type} {node.name!r} needs constant weights.")
    transpose = node.op_type == "ConvTranspose"
    rank = w.dim() - 2
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    strides = list(attrs.get("strides", [1] * rank))
    dil = list(attrs.get("dilations", [1] * rank))
    groups = attrs.get("group", 1)
    if transpose and "output_shape" in attrs:
        raise UnsupportedModelError(f"ConvTranspose {node.name!r} with output_shape is not supported; use pads.")
    pads = pads_of(attrs, rank, b.shapes.get(node.input[0]), kernel, strides, dil)
    begin, end = pads[:rank], pads[rank:]
    if begin != end:
        if transpose:
            raise UnsupportedModelError(f"ConvTranspose {node.name!r} with asymmetric pads is not supported.")
        x = b.call(ops.pad, (x,), {"pads": [0, 0] + begin + [0, 0] + end})
        begin = [0] * rank
    if transpose:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[rank - 1]
        mod = cls(w.shape[0], w.shape[1] * groups, kernel, strides, begin, list(attrs.get("output_padding", [0] * rank)),
                  groups, bias is not None, dil)
    else:
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1]
        mod = cls(w.shape[1] * groups, w.shape[0], kernel, strides, begin, dil, groups, bias is not None)
    with torch.no_grad():
        mod.weight.copy_(w)
        if bias is not None:
            mod.bias.copy_(bias)
    srcs = {"weight": b.source(node.input[1]), "bias": b.source(node.input[2]) if bias is not None else None}
    return b.module(_layer_name(node, node.input[1]), mod, x, srcs)


@converter("LSTM", "GRU")
def _recurrent(b, node, inputs, attrs):
    """A recurrent layer keeps ONNX's weight layout (see ``recurrent.py``); its W, R, B drift and train."""
    op, name = node.op_type, _name(node)
    args = inputs + [None] * (8 - len(inputs))
    x, w, r, bias, lens, h0 = args[:6]
    c0 = args[6] if op == "LSTM" else None
    refused = [k for k in ("clip", "input_forget") if attrs.get(k)]
    if attrs.get("activations") and [_text(a, "") for a in attrs["activations"]] != \
            (["Sigmoid", "Tanh", "Tanh"] if op == "LSTM" else ["Sigmoid", "Tanh"]) * len(attrs["activations"]):
        refused.append("activations")
    if op == "LSTM" and args[7] is not None:
        refused.append("peepholes")
    if refused:
        raise UnsupportedModelError(f"{op} {name!r} uses {', '.join(refused)}; only the default recurrence is "
                                    "supported, re-export without them.")
    if not torch.is_tensor(w) or not torch.is_tensor(r) or (bias is not None and not torch.is_tensor(bias)):
        raise UnsupportedModelError(f"{op} {name!r} needs constant weights.")
    if lens is not None:  # torch's exporters give full-length sequences; ragged batches are refused
        if not torch.is_tensor(lens):
            raise UnsupportedModelError(f"{op} {name!r} with computed sequence_lens is not supported.")
    mod = OnnxRecurrent(op, w, r, bias, _text(attrs.get("direction"), "forward"), attrs.get("layout", 0),
                        attrs.get("linear_before_reset", 0))
    srcs = {"weight": b.source(node.input[1]), "weight_hh": b.source(node.input[2]),
            "bias": b.source(node.input[3]) if bias is not None else None}
    out = b.module(name, mod, x, srcs, extra=(h0, c0))
    return [b.graph.call_function(operator.getitem, (out, i)) for i in range(3 if op == "LSTM" else 2)]


@converter("BatchNormalization")
def _batchnorm(b, node, inputs, attrs):
    x, scale, bias, mean, var = inputs[:5]
    if any(not torch.is_tensor(t) for t in (scale, bias, mean, var)):
        raise UnsupportedModelError(f"BatchNormalization {_name(node)!r} needs constant parameters.")
    bn = BatchNorm(scale.numel(), eps=attrs.get("epsilon", 1e-5), momentum=1 - attrs.get("momentum", 0.9))
    with torch.no_grad():
        bn.weight.copy_(scale), bn.bias.copy_(bias)
        bn.running_mean.copy_(mean), bn.running_var.copy_(var)
    srcs = {"weight": b.source(node.input[1]), "bias": b.source(node.input[2]),
            "running_mean": b.source(node.input[3]), "running_var": b.source(node.input[4])}
    return b.module(_name(node), bn, x, srcs)


@converter("LayerNormalization")
def _layernorm(b, node, inputs, attrs):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    ln = nn.LayerNorm(tuple(scale.shape), eps=attrs.get("epsilon", 1e-5), bias=bias is not None)
    with torch.no_grad():
        ln.weight.copy_(scale)
        if bias is not None:
            ln.bias.copy_(bias.expand(scale.shape))
    return b.module(_name(node), ln, x, {"weight": b.source(node.input[1]),
                                         "bias": b.source(node.input[2]) if bias is not None else None})


@converter("InstanceNormalization")
def _instancenorm(b, node, inputs, attrs):
    mod = InstanceNorm(inputs[1].clone(), inputs[2].clone(), attrs.get("epsilon", 1e-5))
    return b.module(_name(node), mod, inputs[0], {"weight": b.source(node.input[1]), "bias": b.source(node.input[2])})


# --- pooling and spatial transforms --------------------------------------------------------------
@converter("MaxPool", "AveragePool")
def _pool(b, node, inputs, attrs):
    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedModelError(f"MaxPool {_name(node)!r} with an indices output is not supported.")
    kernel = list(attrs["kernel_shape"])
    rank = len(kernel)
    strides = list(attrs.get("strides", [1] * rank))
    dil = list(attrs.get("dilations", [1] * rank))
    pads = pads_of(attrs, rank, b.shapes.get(node.input[0]), kernel, strides, dil)
    return b.call(ops.pool, (inputs[0],), {"kind": "max" if node.op_type == "MaxPool" else "avg", "kernel": kernel,
                                           "strides": strides, "pads": pads, "dilations": dil,
                                           "ceil_mode": attrs.get("ceil_mode", 0),
                                           "count_include_pad": attrs.get("count_include_pad", 0)})


@converter("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(b, node, inputs, attrs):
    return b.call(ops.global_pool, (inputs[0],), {"kind": "avg" if node.op_type == "GlobalAveragePool" else "max"})


@converter("GridSample")
def _grid_sample(b, node, inputs, attrs):
    return b.call(ops.grid_sample, (inputs[0], inputs[1]),
                  {"mode": _text(attrs.get("mode"), "bilinear"), "padding_mode": _text(attrs.get("padding_mode"), "zeros"),
                   "align_corners": attrs.get("align_corners", 0)})


@converter("AffineGrid")
def _affine_grid(b, node, inputs, attrs):
    return b.call(ops.affine_grid, (inputs[0], inputs[1]), {"align_corners": attrs.get("align_corners", 0)})


# --- shapes and indexing -------------------------------------------------------------------------
@converter("Flatten")
def _flatten(b, node, inputs, attrs):
    return b.call(ops.flatten, (inputs[0],), {"axis": attrs.get("axis", 1)})


@converter("Reshape")
def _reshape(b, node, inputs, attrs):
    if "shape" in attrs:  # opset 1-4
        inputs = [inputs[0], torch.tensor(attrs["shape"])]
    return b.call(ops.reshape, (inputs[0], inputs[1]), {"allowzero": attrs.get("allowzero", 0)})


@converter("Transpose")
def _transpose(b, node, inputs, attrs):
    return b.call(ops.transpose, (inputs[0],), {"perm": list(attrs["perm"]) if "perm" in attrs else None})


@converter("Concat")
def _concat(b, node, inputs, attrs):
    return b.call(ops.concat, tuple(inputs), {"axis": attrs["axis"]})


@converter("Split")
def _split(b, node, inputs, attrs):
    sizes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("split")
    _static(node, sizes, "split sizes")
    kwargs = {"axis": attrs.get("axis", 0), "num_outputs": attrs.get("num_outputs", len(node.output))}
    parts = b.call(ops.split, (inputs[0],), {"sizes": None if sizes is None else torch.as_tensor(sizes), **kwargs})
    if not isinstance(parts, fx.Node):
        return list(parts)
    return [b.graph.call_function(operator.getitem, (parts, i)) for i in range(len(node.output))]


@converter("Shape")
def _shape(b, node, inputs, attrs):
    return b.call(ops.shape, (inputs[0],), {"start": attrs.get("start", 0), "end": attrs.get("end")})


@converter("Gather")
def _gather(b, node, inputs, attrs):
    return b.call(ops.gather, (inputs[0], inputs[1]), {"axis": attrs.get("axis", 0)})


@converter("Unsqueeze", "Squeeze")
def _squeeze(b, node, inputs, attrs):
    axes = _static(node, inputs[1] if len(inputs) > 1 else attrs.get("axes"), "axes")
    fn = ops.unsqueeze if node.op_type == "Unsqueeze" else ops.squeeze
    return b.call(fn, (inputs[0],), {"axes": None if axes is None else [int(a) for a in torch.as_tensor(axes).tolist()]})


@converter("Slice")
def _slice(b, node, inputs, attrs):
    if len(inputs) == 1:  # opset < 10: attributes
        t = lambda k: None if k not in attrs else torch.tensor(attrs[k])  # noqa: E731
        inputs = [inputs[0], t("starts"), t("ends"), t("axes")]
    args = inputs + [None] * (5 - len(inputs))
    if all(not isinstance(a, fx.Node) for a in args[1:]):
        return b.call(ops.slice_, (args[0], args[1], args[2]), {"axes": args[3], "steps": args[4]})
    return b.call(ops.slice_, tuple(args))


@converter("ConstantOfShape")
def _constant_of_shape(b, node, inputs, attrs):
    value = attrs.get("value")
    arr = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return b.call(ops.constant_of_shape, (inputs[0],), {"value": arr.reshape(-1)[0].item(),
                                                         "dtype": torch.from_numpy(arr.copy()).dtype})


@converter("Expand")
def _expand(b, node, inputs, attrs):
    return b.call(ops.expand, (inputs[0], inputs[1]))


@converter("Range")
def _range(b, node, inputs, attrs):
    return b.call(torch.arange, (inputs[0], inputs[1], inputs[2]))


@converter("Pad")
def _pad(b, node, inputs, attrs):
    pads = inputs[1] if len(inputs) > 1 else attrs["pads"]
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("value", 0.0)
    if len(inputs) > 3 and inputs[3] is not None:
        raise UnsupportedModelError(f"Pad {_name(node)!r} with axes is not supported.")
    _static(node, pads, "pads"), _static(node, value, "pads")
    return b.call(ops.pad, (inputs[0],), {"pads": [int(p) for p in torch.as_tensor(pads).tolist()],
                                          "value": float(torch.as_tensor(value)), "mode": _text(attrs.get("mode"), "constant")})


@converter("Constant")
def _constant(b, node, inputs, attrs):
    """Tensor-valued Constants became initializers before conversion; these are the scalar/list forms."""
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in attrs:
            return torch.tensor(attrs[key], dtype=dtype)
    raise UnsupportedModelError(f"Constant {_name(node)!r} of kind {', '.join(attrs)} is not supported.")


def pads_of(attrs: dict, rank: int, in_shape, kernel, strides, dilations) -> list[int]:
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    mode = _text(attrs.get("auto_pad"), "NOTSET")
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        if in_shape is None or any(d is None for d in in_shape[2:]):
            raise UnsupportedModelError(f"auto_pad={mode} needs static spatial sizes; re-export with explicit pads.")
        pads = [0] * (2 * rank)
        for i in range(rank):
            n = in_shape[2 + i]
            out = -(-n // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - n)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + rank] = (small, big) if mode == "SAME_UPPER" else (big, small)
    elif mode == "VALID":
        pads = [0] * (2 * rank)
    return pads


def _layer_name(node, weight_name: str) -> str:
    base = weight_name[: -len(".weight")] if weight_name.endswith(".weight") else (node.name or weight_name)
    return base.replace(".", "_")
