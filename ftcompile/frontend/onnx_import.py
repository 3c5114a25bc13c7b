"""ONNX -> torch.fx: an importer that keeps every weight's provenance.

Why our own importer (docs/importing.md): onnx2torch 1.5.15 fails on torch's dynamo exporter
(Reshape-19 ``allowzero``), onnx2pytorch is unmaintained, both pull in torchvision (a 5.5 GB CUDA
build here), and neither records which initializer each trained parameter came from. We need that
record: export writes fine-tuned weights back into the source graph, so the hardened model is the
user's graph, opset and dynamic shapes unchanged.

Crossbar layers become ``nn.Linear``/``nn.ConvNd``/``nn.ConvTransposeNd`` modules and normalization
becomes modules with ``nn.Parameter`` affines (the tensors that drift); every other constant is a
buffer. Subgraphs whose inputs are all constant are folded at import.
"""
from __future__ import annotations

import functools
import operator
import re
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import onnx
import torch
import torch.fx as fx
from onnx import numpy_helper
from torch import nn

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import (attention, converters, detection, elementwise, indexing, normalization,  # noqa: F401
                                pooling, quantize, resize, reductions, registry,  # noqa: F401
                                signal)  # noqa: F401  (converter modules fill the table)
from ftcompile.frontend.dtypes import to_torch
from ftcompile.frontend.quantize import Grid, put_on_grid
from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights
from ftcompile.runtime.model import STANDARD_DOMAINS, choose_output, graph_inputs, load_onnx

if TYPE_CHECKING:
    from ftcompile.frontend.parity import Parity


@dataclass(frozen=True)
class ParamSource:
    """Where a state-dict entry came from: initializer ``name``, stored transposed or not, its shape."""

    name: str
    transposed: bool
    shape: tuple
    grid: "Grid | None" = None  # a weight stored quantized (QDQ): export writes it back on this grid


@dataclass
class ImportedModel:
    """An fx graph plus what is needed to go back to ONNX."""

    module: fx.GraphModule
    onnx_model: onnx.ModelProto
    sources: dict = field(default_factory=dict)  # state-dict key -> ParamSource
    output: str = ""
    parity: "Parity | None" = None
    source_path: str = ""


class _Builder:
    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.opset = _opset(model)
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.env: dict[str, object] = {}  # tensor name -> fx.Node (dynamic) or torch.Tensor (constant)
        self.sources: dict[str, ParamSource] = {}
        self.buffers: dict[int, fx.Node] = {}
        self.constants: list[str] = []  # buffer names of the graph's constants
        self.names: set[str] = set()
        self.consumers: dict[str, list] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.skip: set[int] = set()
        self.initializers = {i.name for i in model.graph.initializer}
        self.grids: dict[str, tuple] = {}  # constant DequantizeLinear output -> (initializer, Grid)
        for node in model.graph.node:
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
            for o in node.output:
                self.producer[o] = node
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
            # the graph's constants are not state: out of the state dict, nothing that mixes state dicts (the
            # blend's lerp turns a -inf attention-mask fill into NaN) or saves them touches them
            self.root.register_buffer(name, v, persistent=False)
            self.constants.append(name)
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
        # constant tensors in keyword arguments become lists: fx writes kwargs into generated code
        kwargs = {k: v.tolist() if torch.is_tensor(v) else v for k, v in kwargs.items()}
        return self.graph.call_function(fn, tuple(self.as_node(a) for a in args), kwargs)

    def module(self, base: str, mod: nn.Module, x, params: dict, extra: tuple = ()) -> fx.Node:
        """Add a trainable layer called on ``x`` (and ``extra`` inputs); ``params``: attribute -> ParamSource."""
        name = self.unique(base)
        self.root.add_module(name, mod)
        for attr, init in params.items():
            if init is not None:
                self.sources[f"{name}.{attr}"] = init
                if init.grid is not None:
                    if not init.grid.stored_int:  # the float initializer is the parameter; the layer reads it snapped
                        raw = self.env[init.name]
                        with torch.no_grad():
                            mod._parameters[attr].copy_((raw.t() if init.transposed else raw).reshape(
                                mod._parameters[attr].shape))
                    put_on_grid(mod, attr, init.grid)
        return self.graph.call_module(name, tuple(self.as_node(a) for a in (x, *extra)))

    def parts(self, value, n: int) -> list:
        """The ``n`` outputs of a function returning a tuple: the folded values, or ``getitem`` nodes."""
        if not isinstance(value, fx.Node):
            return list(value)
        return [self.graph.call_function(operator.getitem, (value, i)) for i in range(n)]

    def source(self, init_name: str, transposed: bool = False) -> ParamSource:
        """The initializer behind a layer's parameter (through a DequantizeLinear for a quantized weight)."""
        if init_name in self.grids:
            stored, grid = self.grids[init_name]
            return ParamSource(stored, transposed, tuple(self.env[stored].shape),
                               dataclasses.replace(grid, transposed=transposed))
        t = self.const(init_name)
        return ParamSource(init_name, transposed, tuple(t.shape))


def import_onnx(model: "str | Path | onnx.ModelProto", *, output: str | None = None,
                check_parity: bool = True, rtol: float = 1e-4) -> ImportedModel:
    """Convert an ONNX classifier into a trainable ``fx.GraphModule`` and check it against onnxruntime.

    Example:
        >>> imported = import_onnx("lenet.onnx")          # doctest: +SKIP
        >>> imported.module.graph.print_tabular()           # doctest: +SKIP
    """
    proto = prepare(model)
    out_name = choose_output(proto, output)
    gm, sources = convert(proto, [out_name])
    imported = ImportedModel(gm, proto, sources, out_name,
                             source_path="" if isinstance(model, onnx.ModelProto) else str(model))
    if check_parity:
        from ftcompile.frontend.parity import check_import_parity

        imported.parity = check_import_parity(imported, rtol=rtol)
    return imported


def prepare(model: "str | Path | onnx.ModelProto") -> onnx.ModelProto:
    """The checked model with its Constant tensors as initializers and each layer given its own weights."""
    return unshare_weights(constants_to_initializers(load_onnx(model)))


def convert(proto: onnx.ModelProto, outputs: list[str]) -> tuple[fx.GraphModule, dict]:
    """The fx graph computing ``outputs`` of a loaded model (one value, or a tuple of several) and the
    provenance of its parameters (state-dict key -> ``ParamSource``). ``import_onnx`` is the checked way in."""
    _check_supported(proto)
    b = _Builder(proto)
    for init in proto.graph.initializer:
        b.env[init.name] = to_torch(numpy_helper.to_array(init))
    for value in graph_inputs(proto):
        node = b.graph.placeholder(b.unique(value.name))
        node.meta["onnx_tensor"] = value.name
        b.env[value.name] = node
    for index, node in enumerate(proto.graph.node):
        if index in b.skip:
            continue
        inputs = [b.env[i] if i else None for i in node.input]
        attrs = {**_defaults(node.op_type, b.opset),
                 **{a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}}
        try:
            results = registry.lookup(node.op_type, b.opset)(b, node, inputs, attrs)
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
    values = [b.as_node(b.env[name]) for name in outputs]
    b.graph.output(values[0] if len(values) == 1 else tuple(values))
    gm = fx.GraphModule(b.root, b.graph, class_name="ImportedModel")
    for name in b.constants:  # GraphModule copies buffers back as persistent ones
        if name in gm._buffers:
            gm.register_buffer(name, gm._buffers[name], persistent=False)
    if gm.graph.eliminate_dead_code():  # e.g. a QuantizeLinear whose DequantizeLinear became one fake quantizer
        gm.recompile()
    gm.eval()
    return gm, b.sources


SUPPORTED = registry.supported()  # `ftcompile inspect --ops`


def _check_supported(model: onnx.ModelProto) -> None:
    custom = [(n.name or n.output[0], f"{n.domain}.{n.op_type}") for n in model.graph.node
              if n.domain not in STANDARD_DOMAINS]
    if custom:
        raise UnsupportedModelError(f"custom-domain ops cannot be imported: {_listing(custom)}; "
                                    "export the model with standard ONNX ops only.")
    opset = _opset(model)
    missing = [(n.name or n.output[0], n.op_type) for n in model.graph.node
               if registry.lookup(n.op_type, opset) is None]
    if missing:
        reasons = sorted({f"{op}: {registry.OUT_OF_SCOPE[op]}" for _, op in missing if op in registry.OUT_OF_SCOPE})
        raise UnsupportedModelError(f"unsupported ops at opset {opset}: {_listing(missing)}"
                                    f"{' (' + '; '.join(reasons) + ')' if reasons else ''}; "
                                    "`ftcompile inspect --ops` lists the supported ones.")


@functools.cache
def _defaults(op: str, opset: int) -> dict:
    """The attribute defaults of ``op``'s schema at ``opset`` (a converter sees every attribute the spec defaults)."""
    try:
        schema = onnx.defs.get_schema(op, opset)
    except onnx.defs.SchemaError:
        return {}
    return {name: onnx.helper.get_attribute_value(a.default_value) for name, a in schema.attributes.items()
            if a.default_value.type != onnx.AttributeProto.UNDEFINED}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), 1)


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
