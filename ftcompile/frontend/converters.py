"""Converters of the ONNX importer's op table (``registry.py``): crossbar layers (MatMul, Gemm, Conv,
ConvTranspose, LSTM/GRU/RNN), spatial sampling, shapes and constants. ``fn(b, node, inputs, attrs)``:

A converter reads its inputs (``fx.Node`` for dynamic values, ``torch.Tensor`` for constants) and returns
the op's output(s) through the builder ``b``: ``b.call`` emits a function (folded when every input is
constant), ``b.module`` a trainable layer whose parameters remember the initializer they came from.
Adding an op is one ``@converter`` entry and its node cases in the conformance suite. Operator semantics
live in ``ops.py``.
"""
from __future__ import annotations

import dataclasses

import onnx
import torch
import torch.fx as fx
from onnx import numpy_helper
from torch import nn

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import ops
from ftcompile.frontend.dtypes import to_torch
from ftcompile.frontend.recurrent import OnnxRecurrent, Recurrence, recurrence_of
from ftcompile.frontend.registry import converter


def _name(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


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
    """A convolution by constant weights is a trainable ``nn.ConvNd``/``nn.ConvTransposeNd``; one whose weights
    are computed is a function of them (nothing to store on a crossbar)."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    transpose = node.op_type == "ConvTranspose"
    kernel, strides, dil = window(b, node, attrs, w)
    rank = len(kernel)
    groups = attrs.get("group", 1)
    if transpose:
        begin, end = _transpose_pads(node, attrs, rank, b.shapes.get(node.input[0]), kernel, strides, dil)
        out_pad = list(attrs.get("output_padding", [0] * rank))
    else:
        pads = pads_of(attrs, rank, b.shapes.get(node.input[0]), kernel, strides, dil)
        begin, end, out_pad = pads[:rank], pads[rank:], None
    if begin != end and not transpose:
        x = b.call(ops.pad, (x,), {"pads": [0, 0] + begin + [0, 0] + end})
        begin = end = [0] * rank
    if not torch.is_tensor(w) or (bias is not None and not torch.is_tensor(bias)):
        return b.call(ops.conv, (x, w, bias), {"strides": strides, "begin": begin, "end": end, "dilations": dil,
                                               "groups": groups, "output_padding": out_pad})
    symmetric = begin == end
    if not symmetric and (min(begin + end) < 0 or any(p > e for p, e in zip(out_pad or [], end))):
        raise UnsupportedModelError(f"ConvTranspose {_name(node)!r} with uneven pads and an output_padding beyond "
                                    "the end pad is not supported; re-export with symmetric pads.")
    if transpose:
        cls = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[rank - 1]
        mod = cls(w.shape[0], w.shape[1] * groups, kernel, strides, begin if symmetric else 0,
                  out_pad if symmetric else 0, groups, bias is not None, dil)
    else:
        cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[rank - 1]
        mod = cls(w.shape[1] * groups, w.shape[0], kernel, strides, begin, dil, groups, bias is not None)
    with torch.no_grad():
        mod.weight.copy_(w)
        if bias is not None:
            mod.bias.copy_(bias)
    srcs = {"weight": b.source(node.input[1]), "bias": b.source(node.input[2]) if bias is not None else None}
    out = b.module(_layer_name(node, node.input[1]), mod, x, srcs)
    if not symmetric:  # a transposed convolution with uneven pads: the full output, cropped
        out = b.call(ops.crop, (out,), {"begin": begin, "end": [e - p for e, p in zip(end, out_pad)]})
    return out


def _transpose_pads(node, attrs, rank, in_shape, kernel, strides, dil) -> tuple[list, list]:
    """ConvTranspose's pads: given, or from ``output_shape``/``auto_pad`` (the spec's total padding, split)."""
    out_pad = list(attrs.get("output_padding", [0] * rank))
    mode = ops.text(attrs.get("auto_pad"), "NOTSET")
    if "pads" in attrs or ("output_shape" not in attrs and mode not in ("SAME_UPPER", "SAME_LOWER")):
        pads = list(attrs.get("pads", [0] * (2 * rank)))
        return pads[:rank], pads[rank:]
    if in_shape is None or any(d is None for d in in_shape[2:]):
        raise UnsupportedModelError(f"ConvTranspose {_name(node)!r} with output_shape/auto_pad needs static "
                                    "spatial sizes; re-export with explicit pads.")
    spatial = in_shape[2:]
    target = (list(attrs["output_shape"])[-rank:] if "output_shape" in attrs
              else [n * s for n, s in zip(spatial, strides)])
    begin, end = [], []
    for i in range(rank):
        total = strides[i] * (spatial[i] - 1) + out_pad[i] + (kernel[i] - 1) * dil[i] + 1 - target[i]
        small, big = total // 2, total - total // 2
        upper = mode == "SAME_UPPER"
        begin.append(small if upper else big)
        end.append(big if upper else small)
    return begin, end


@converter("LSTM", "GRU", "RNN")
def _recurrent(b, node, inputs, attrs):
    """A recurrent layer by constant weights keeps ONNX's layout (``recurrent.py``): its W, R, B drift and train."""
    op, name = node.op_type, _name(node)
    args = inputs + [None] * (8 - len(inputs))
    x, w, r, bias, lens, h0 = args[:6]
    c0, peep = (args[6], args[7]) if op == "LSTM" else (None, None)
    acts = tuple(ops.text(a) for a in attrs.get("activations", ()))
    spec = Recurrence(op, ops.text(attrs.get("direction"), "forward"), attrs.get("layout", 0),
                      attrs.get("linear_before_reset", 0), acts, tuple(attrs.get("activation_alpha", ())),
                      tuple(attrs.get("activation_beta", ())), attrs.get("clip"), attrs.get("input_forget", 0))
    outputs = 3 if op == "LSTM" else 2
    weights = (w, r) + tuple(t for t in (bias, peep) if t is not None)
    if not all(torch.is_tensor(t) for t in weights):
        return b.parts(b.call(recurrence_of, (x, w, r, bias, lens, h0, c0, peep), dataclasses.asdict(spec)), outputs)
    mod = OnnxRecurrent(spec, w, r, bias, peep)
    srcs = {"weight": b.source(node.input[1]), "weight_hh": b.source(node.input[2]),
            "bias": b.source(node.input[3]) if bias is not None else None,
            "peepholes": b.source(node.input[7]) if peep is not None else None}
    return b.parts(b.module(name, mod, x, srcs, extra=(lens, h0, c0)), outputs)


# --- pooling and spatial transforms --------------------------------------------------------------
@converter("GridSample")
def _grid_sample(b, node, inputs, attrs):
    return b.call(ops.grid_sample, (inputs[0], inputs[1]),
                  {"mode": ops.text(attrs.get("mode"), "bilinear"),
                   "padding_mode": ops.text(attrs.get("padding_mode"), "zeros"),
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
    kwargs = {"axis": attrs.get("axis", 0), "num_outputs": attrs.get("num_outputs", len(node.output))}
    if isinstance(sizes, fx.Node):
        return b.parts(b.call(ops.split, (inputs[0], sizes), kwargs), len(node.output))
    sizes = None if sizes is None else [int(v) for v in torch.as_tensor(sizes).tolist()]
    return b.parts(b.call(ops.split, (inputs[0],), {"sizes": sizes, **kwargs}), len(node.output))


@converter("Shape")
def _shape(b, node, inputs, attrs):
    return b.call(ops.shape, (inputs[0],), {"start": attrs.get("start", 0), "end": attrs.get("end")})


@converter("Gather")
def _gather(b, node, inputs, attrs):
    return b.call(ops.gather, (inputs[0], inputs[1]), {"axis": attrs.get("axis", 0)})


@converter("Unsqueeze", "Squeeze")
def _squeeze(b, node, inputs, attrs):
    axes = inputs[1] if len(inputs) > 1 else attrs.get("axes")
    fn = ops.unsqueeze if node.op_type == "Unsqueeze" else ops.squeeze
    if isinstance(axes, fx.Node):
        return b.call(fn, (inputs[0], axes))
    return b.call(fn, (inputs[0],), {"axes": None if axes is None else ops.ints(axes)})


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
    t = to_torch(numpy_helper.to_array(value)) if value is not None else torch.zeros(1)
    return b.call(ops.constant_of_shape, (inputs[0],), {"value": t.reshape(-1)[0].item(), "dtype": t.dtype})


@converter("Expand")
def _expand(b, node, inputs, attrs):
    return b.call(ops.expand, (inputs[0], inputs[1]))


@converter("Range")
def _range(b, node, inputs, attrs):
    return b.call(ops.range_, (inputs[0], inputs[1], inputs[2]))


@converter("Pad", until=10)
def _pad_attrs(b, node, inputs, attrs):
    return b.call(ops.pad, (inputs[0],), {"pads": list(attrs.get("pads", attrs.get("paddings", []))),
                                          "value": attrs.get("value", 0.0),
                                          "mode": ops.text(attrs.get("mode"), "constant")})


@converter("Pad", since=11)
def _pad(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    return b.call(ops.pad, tuple(args), {"mode": ops.text(attrs.get("mode"), "constant")})


@converter("Constant")
def _constant(b, node, inputs, attrs):
    """Tensor-valued Constants became initializers before conversion; these are the scalar/list forms."""
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in attrs:
            return torch.tensor(attrs[key], dtype=dtype)
    raise UnsupportedModelError(f"Constant {_name(node)!r} of kind {', '.join(attrs)} is not supported.")


def window(b, node, attrs: dict, weight=None, weight_input: int = 1) -> tuple[list, list, list]:
    """Kernel, strides and dilations of a convolution or pooling node: the kernel from ``kernel_shape``, else the
    spatial dims of the weight (``weight`` when constant, else the inferred shape of input ``weight_input``)."""
    if "kernel_shape" in attrs:
        kernel = list(attrs["kernel_shape"])
    else:
        shape = list(weight.shape) if torch.is_tensor(weight) else b.shapes.get(node.input[weight_input])
        kernel = list(shape[2:])
    rank = len(kernel)
    return kernel, list(attrs.get("strides", [1] * rank)), list(attrs.get("dilations", [1] * rank))


def geometry(b, node, attrs: dict, weight=None, weight_input: int = 1) -> tuple[list, list, list, list]:
    """``window`` and the pads (begins, then ends) of a convolution or pooling node reading input 0."""
    kernel, strides, dil = window(b, node, attrs, weight, weight_input)
    return kernel, strides, dil, pads_of(attrs, len(kernel), b.shapes.get(node.input[0]), kernel, strides, dil)


def pads_of(attrs: dict, rank: int, in_shape, kernel, strides, dilations) -> list[int]:
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    mode = ops.text(attrs.get("auto_pad"), "NOTSET")
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
