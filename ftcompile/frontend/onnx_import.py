"""ONNX -> torch.fx: an importer that keeps every weight's provenance.

Why our own importer (measured, see README): onnx2torch 1.5.15 fails on torch's dynamo exporter
(Reshape-19 ``allowzero``), onnx2pytorch is unmaintained, both pull in torchvision (a 5.5 GB CUDA
build here), and neither records which initializer each trained parameter came from. We need that
record: export writes fine-tuned weights back into the source graph, so the hardened model is the
user's graph, opset and dynamic shapes unchanged.

Crossbar layers become ``nn.Linear``/``nn.ConvNd``/``nn.ConvTransposeNd`` modules and normalization
becomes modules with ``nn.Parameter`` affines (the tensors that drift); every other constant is a
buffer. Subgraphs whose inputs are all constant are folded at import.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import torch
import torch.fx as fx
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import ops
from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights
from ftcompile.runtime.model import STANDARD_DOMAINS, choose_output, graph_inputs, load_onnx


@dataclass(frozen=True)
class ParamSource:
    """Where a state-dict entry came from: initializer ``name``, stored transposed or not, its shape."""

    name: str
    transposed: bool
    shape: tuple


@dataclass
class ImportedModel:
    """An fx graph plus what is needed to go back to ONNX."""

    module: fx.GraphModule
    onnx_model: onnx.ModelProto
    sources: dict = field(default_factory=dict)  # state-dict key -> ParamSource
    output: str = ""
    parity: "Parity | None" = None
    source_path: str = ""


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


_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64,
           9: torch.bool, 10: torch.float16, 11: torch.float64, 16: torch.bfloat16}
_UNARY = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Exp": torch.exp, "Log": torch.log,
          "Sqrt": torch.sqrt, "Neg": torch.neg, "Abs": torch.abs, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
          "Floor": torch.floor, "Ceil": torch.ceil, "Softplus": F.softplus, "Softsign": F.softsign,
          "Not": torch.logical_not, "Sin": torch.sin, "Cos": torch.cos, "HardSwish": F.hardswish,
          "Mish": F.mish, "Round": torch.round, "Sign": torch.sign}
_BINARY = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": ops.div, "Pow": torch.pow,
           "MatMul": torch.matmul, "Equal": torch.eq, "Less": torch.lt, "Greater": torch.gt,
           "And": torch.logical_and, "Or": torch.logical_or, "Max": torch.maximum, "Min": torch.minimum}


class _Builder:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 13)
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, object] = {}  # tensor name -> fx.Node (dynamic) or torch.Tensor (constant)
        self.sources: dict[str, ParamSource] = {}
        self.init_names: dict[int, str] = {}  # id(tensor) -> initializer it came from
        self.buffers: dict[int, fx.Node] = {}
        self.names: set[str] = set()
        self.consumers: dict[str, list] = {}
        self.skip: set[int] = set()
        for node in model.graph.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
        self.shapes = _static_shapes(model)

    # --- values -------------------------------------------------------------------------------
    def const(self, name: str) -> torch.Tensor | None:
        v = self.env.get(name)
        return v if torch.is_tensor(v) else None

    def as_node(self, v):
        """A constant used by a dynamic op becomes a buffer read by get_attr."""
        if not torch.is_tensor(v):
            return v
        key = id(v)
        if key not in self.buffers:
            name = self.unique("const")
            self.root.register_buffer(name, v)
            self.buffers[key] = self.graph.get_attr(name)
        return self.buffers[key]

    def unique(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "m"
        if base[0].isdigit():
            base = f"layer_{base}"
        name, i = base, 1
        while name in self.names or hasattr(nn.Module, name):
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def call(self, fn: Callable, args: tuple, kwargs: dict | None = None):
        """Fold when every input is constant, else emit a call_function node."""
        kwargs = kwargs or {}
        if all(not isinstance(a, fx.Node) for a in args):
            with torch.no_grad():
                return fn(*args, **kwargs)
        return self.graph.call_function(fn, tuple(self.as_node(a) for a in args), kwargs)

    def module(self, base: str, mod: nn.Module, x, params: dict) -> fx.Node:
        name = self.unique(base)
        self.root.add_module(name, mod)
        for attr, init in params.items():
            if init is not None:
                self.sources[f"{name}.{attr}"] = init
        return self.graph.call_module(name, (self.as_node(x),))

    def source(self, init_name: str, transposed: bool = False) -> ParamSource:
        t = self.const(init_name)
        return ParamSource(init_name, transposed, tuple(t.shape))


def import_onnx(model: "str | Path | onnx.ModelProto", *, output: str | None = None,
                check_parity: bool = True, rtol: float = 1e-4) -> ImportedModel:
    """Convert an ONNX classifier into a trainable ``fx.GraphModule`` and check it against onnxruntime.

    Example:
        >>> imported = import_onnx("lenet.onnx")          # doctest: +SKIP
        >>> imported.module.graph.print_tabular()           # doctest: +SKIP
    """
    proto = unshare_weights(constants_to_initializers(load_onnx(model)))  # each layer its own weights
    out_name = choose_output(proto, output)
    _check_supported(proto)
    b = _Builder(proto)
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        b.env[init.name] = torch.from_numpy(np.array(arr, copy=True))
    for value in graph_inputs(proto):
        node = b.graph.placeholder(b.unique(value.name))
        node.meta["onnx_tensor"] = value.name
        b.env[value.name] = node
    for index, node in enumerate(proto.graph.node):
        if index in b.skip:
            continue
        inputs = [b.env[i] if i else None for i in node.input]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        try:
            results = _convert(b, index, node, inputs, attrs)
        except UnsupportedModelError:
            raise
        except Exception as exc:
            raise UnsupportedModelError(f"cannot import node {node.name or node.output[0]!r} ({node.op_type}): "
                                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}.") from None
        results = results if isinstance(results, (list, tuple)) else [results]
        for name, value in zip(node.output, results):
            if name:
                if isinstance(value, fx.Node):
                    value.meta.setdefault("onnx_tensor", name)
                b.env[name] = value
    b.graph.output(b.as_node(b.env[out_name]))
    gm = fx.GraphModule(b.root, b.graph, class_name="ImportedModel")
    gm.eval()
    imported = ImportedModel(gm, proto, b.sources, out_name,
                             source_path="" if isinstance(model, onnx.ModelProto) else str(model))
    if check_parity:
        from ftcompile.frontend.parity import check_import_parity

        imported.parity = check_import_parity(imported, rtol=rtol)
    return imported


SUPPORTED = sorted({"Gemm", "Conv", "ConvTranspose", "BatchNormalization", "LayerNormalization",
                    "InstanceNormalization", "LeakyRelu", "Elu", "Selu", "Gelu", "Clip", "HardSigmoid",
                    "Softmax", "LogSoftmax", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                    "Flatten", "Reshape", "Transpose", "Concat", "Identity", "Dropout", "Pad", "Shape", "Gather",
                    "Unsqueeze", "Squeeze", "Slice", "Cast", "ConstantOfShape", "Expand", "Where", "ReduceMean",
                    "ReduceSum", "ReduceMax", "ReduceMin", "Range", "Constant"} | set(_UNARY) | set(_BINARY))


def _check_supported(model: onnx.ModelProto) -> None:
    custom = [(n.name or n.output[0], f"{n.domain}.{n.op_type}") for n in model.graph.node
              if n.domain not in STANDARD_DOMAINS]
    if custom:
        raise UnsupportedModelError(f"custom-domain ops cannot be imported: {_listing(custom)}; "
                                    "export the model with standard ONNX ops only.")
    missing = [(n.name or n.output[0], n.op_type) for n in model.graph.node if n.op_type not in SUPPORTED]
    if missing:
        raise UnsupportedModelError(f"unsupported ops: {_listing(missing)}; supported are listed by "
                                    "`ftcompile inspect --ops`.")


def _listing(items) -> str:
    shown = ", ".join(f"{name} ({op})" for name, op in items[:10])
    return shown + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def _static_shapes(model: onnx.ModelProto) -> dict[str, list]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    shapes = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _pads(attrs: dict, rank: int, in_shape, kernel, strides, dilations) -> list[int]:
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
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


def _convert(b: _Builder, index: int, node: onnx.NodeProto, inputs: list, attrs: dict):
    op = node.op_type
    name = node.name or node.output[0]
    if op in _UNARY:
        return b.call(_UNARY[op], (inputs[0],))
    if op == "MatMul" and b.const(node.input[1]) is not None and b.const(node.input[1]).dim() == 2 \
            and isinstance(inputs[0], fx.Node):
        return _linear_from_matmul(b, index, node, inputs)
    if op in _BINARY:
        return b.call(_BINARY[op], (inputs[0], inputs[1]))
    if op in ("Identity", "Dropout"):
        return [inputs[0]] + ([None] if len(node.output) > 1 else [])
    if op == "Gemm":
        return _gemm(b, node, inputs, attrs)
    if op in ("Conv", "ConvTranspose"):
        return _conv(b, node, inputs, attrs)
    if op == "BatchNormalization":
        x, scale, bias, mean, var = inputs[:5]
        if any(not torch.is_tensor(t) for t in (scale, bias, mean, var)):
            raise UnsupportedModelError(f"BatchNormalization {name!r} needs constant parameters.")
        bn = BatchNorm(scale.numel(), eps=attrs.get("epsilon", 1e-5), momentum=1 - attrs.get("momentum", 0.9))
        with torch.no_grad():
            bn.weight.copy_(scale), bn.bias.copy_(bias)
            bn.running_mean.copy_(mean), bn.running_var.copy_(var)
        srcs = {"weight": b.source(node.input[1]), "bias": b.source(node.input[2]),
                "running_mean": b.source(node.input[3]), "running_var": b.source(node.input[4])}
        return b.module(name, bn, x, srcs)
    if op == "LayerNormalization":
        x, scale = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        ln = nn.LayerNorm(tuple(scale.shape), eps=attrs.get("epsilon", 1e-5), bias=bias is not None)
        with torch.no_grad():
            ln.weight.copy_(scale)
            if bias is not None:
                ln.bias.copy_(bias.expand(scale.shape))
        return b.module(name, ln, x, {"weight": b.source(node.input[1]),
                                      "bias": b.source(node.input[2]) if bias is not None else None})
    if op == "InstanceNormalization":
        mod = InstanceNorm(inputs[1].clone(), inputs[2].clone(), attrs.get("epsilon", 1e-5))
        return b.module(name, mod, inputs[0], {"weight": b.source(node.input[1]), "bias": b.source(node.input[2])})
    if op == "LeakyRelu":
        return b.call(F.leaky_relu, (inputs[0],), {"negative_slope": attrs.get("alpha", 0.01)})
    if op == "Elu":
        return b.call(F.elu, (inputs[0],), {"alpha": attrs.get("alpha", 1.0)})
    if op == "Selu":
        return b.call(F.selu, (inputs[0],))
    if op == "Gelu":
        approx = attrs.get("approximate", b"none")
        return b.call(F.gelu, (inputs[0],), {"approximate": approx.decode() if isinstance(approx, bytes) else approx})
    if op == "HardSigmoid":
        return b.call(ops.hard_sigmoid, (inputs[0],), {"alpha": attrs.get("alpha", 0.2), "beta": attrs.get("beta", 0.5)})
    if op == "Clip":
        lo = inputs[1] if len(inputs) > 1 else attrs.get("min")
        hi = inputs[2] if len(inputs) > 2 else attrs.get("max")
        if isinstance(lo, fx.Node) or isinstance(hi, fx.Node):
            raise UnsupportedModelError(f"Clip {name!r} with computed bounds is not supported.")
        return b.call(ops.clip, (inputs[0],), {"lo": None if lo is None else float(lo),
                                                "hi": None if hi is None else float(hi)})
    if op in ("Softmax", "LogSoftmax"):
        legacy = b.opset < 13
        axis = attrs.get("axis", 1 if legacy else -1)
        return b.call(ops.softmax, (inputs[0],), {"axis": axis, "legacy": legacy, "log": op == "LogSoftmax"})
    if op in ("MaxPool", "AveragePool"):
        if len(node.output) > 1 and node.output[1]:
            raise UnsupportedModelError(f"MaxPool {name!r} with an indices output is not supported.")
        kernel = list(attrs["kernel_shape"])
        rank = len(kernel)
        strides = list(attrs.get("strides", [1] * rank))
        dil = list(attrs.get("dilations", [1] * rank))
        pads = _pads(attrs, rank, b.shapes.get(node.input[0]), kernel, strides, dil)
        return b.call(ops.pool, (inputs[0],), {"kind": "max" if op == "MaxPool" else "avg", "kernel": kernel,
                                               "strides": strides, "pads": pads, "dilations": dil,
                                               "ceil_mode": attrs.get("ceil_mode", 0),
                                               "count_include_pad": attrs.get("count_include_pad", 0)})
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        return b.call(ops.global_pool, (inputs[0],), {"kind": "avg" if op == "GlobalAveragePool" else "max"})
    if op == "Flatten":
        return b.call(ops.flatten, (inputs[0],), {"axis": attrs.get("axis", 1)})
    if op == "Reshape":
        if "shape" in attrs:  # opset 1-4
            inputs = [inputs[0], torch.tensor(attrs["shape"])]
        return b.call(ops.reshape, (inputs[0], inputs[1]), {"allowzero": attrs.get("allowzero", 0)})
    if op == "Transpose":
        return b.call(ops.transpose, (inputs[0],), {"perm": list(attrs["perm"]) if "perm" in attrs else None})
    if op == "Concat":
        return b.call(ops.concat, tuple(inputs), {"axis": attrs["axis"]})
    if op == "Shape":
        return b.call(ops.shape, (inputs[0],), {"start": attrs.get("start", 0), "end": attrs.get("end")})
    if op == "Gather":
        return b.call(ops.gather, (inputs[0], inputs[1]), {"axis": attrs.get("axis", 0)})
    if op in ("Unsqueeze", "Squeeze"):
        axes = inputs[1] if len(inputs) > 1 else attrs.get("axes")
        if isinstance(axes, fx.Node):
            raise UnsupportedModelError(f"{op} {name!r} with computed axes is not supported.")
        fn = ops.unsqueeze if op == "Unsqueeze" else ops.squeeze
        return b.call(fn, (inputs[0],), {"axes": None if axes is None else [int(a) for a in torch.as_tensor(axes).tolist()]})
    if op == "Slice":
        if len(inputs) == 1:  # opset < 10: attributes
            t = lambda k: None if k not in attrs else torch.tensor(attrs[k])  # noqa: E731
            inputs = [inputs[0], t("starts"), t("ends"), t("axes")]
        args = inputs + [None] * (5 - len(inputs))
        return b.call(ops.slice_, (args[0], args[1], args[2]), {"axes": args[3], "steps": args[4]}) \
            if all(not isinstance(a, fx.Node) for a in args[1:]) else b.call(ops.slice_, tuple(args))
    if op == "Cast":
        return b.call(ops.cast, (inputs[0],), {"dtype": _DTYPES[attrs["to"]]})
    if op == "ConstantOfShape":
        value = attrs.get("value")
        arr = numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
        return b.call(ops.constant_of_shape, (inputs[0],), {"value": arr.reshape(-1)[0].item(),
                                                             "dtype": torch.from_numpy(arr).dtype})
    if op == "Expand":
        return b.call(ops.expand, (inputs[0], inputs[1]))
    if op == "Where":
        return b.call(torch.where, (inputs[0], inputs[1], inputs[2]))
    if op.startswith("Reduce"):
        axes = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
        if isinstance(axes, fx.Node):
            raise UnsupportedModelError(f"{op} {name!r} with computed axes is not supported.")
        axes = None if axes is None else [int(a) for a in torch.as_tensor(axes).tolist()]
        return b.call(ops.reduce, (inputs[0],), {"axes": axes, "keepdims": attrs.get("keepdims", 1),
                                                 "kind": op[len("Reduce"):].lower()})
    if op == "Range":
        return b.call(torch.arange, (inputs[0], inputs[1], inputs[2]))
    if op == "Pad":
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        pads = inputs[1] if len(inputs) > 1 else attrs["pads"]
        value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("value", 0.0)
        if len(inputs) > 3 and inputs[3] is not None:
            raise UnsupportedModelError(f"Pad {name!r} with axes is not supported.")
        if isinstance(pads, fx.Node) or isinstance(value, fx.Node):
            raise UnsupportedModelError(f"Pad {name!r} with computed pads is not supported.")
        return b.call(ops.pad, (inputs[0],), {"pads": [int(p) for p in torch.as_tensor(pads).tolist()],
                                              "value": float(torch.as_tensor(value)), "mode": mode})
    raise UnsupportedModelError(f"unsupported op {op} at node {name!r}.")


def _gemm(b: _Builder, node, inputs, attrs):
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


def _linear_from_matmul(b: _Builder, index: int, node, inputs):
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


def _conv(b: _Builder, node, inputs, attrs):
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
    pads = _pads(attrs, rank, b.shapes.get(node.input[0]), kernel, strides, dil)
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


def _layer_name(node, weight_name: str) -> str:
    base = weight_name[: -len(".weight")] if weight_name.endswith(".weight") else (node.name or weight_name)
    return base.replace(".", "_")
