"""ONNX-level passes (onnx-graphsurgeon), used by the torch-free runtime and by export.

Drift targets are found by the node that consumes a tensor and the input slot it feeds, never by
dtype or name: a Conv's slot 1 is a crossbar weight, a BatchNormalization's slot 3 (running mean) is
not a learned parameter and never drifts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import numpy_helper

from ftcompile.errors import ModelError

# op type -> {input slot: role}. "weight"/"bias" are crossbar layers; "norm" are normalization affines.
_LAYER_SLOTS = {
    "Conv": {1: "weight", 2: "bias"},
    "ConvTranspose": {1: "weight", 2: "bias"},
    "Gemm": {1: "weight", 2: "bias"},
    # recurrent layers: input weights W, recurrent weights R, biases B (both are crossbar matrices)
    "LSTM": {1: "weight", 2: "weight", 3: "bias"},
    "GRU": {1: "weight", 2: "weight", 3: "bias"},
    "RNN": {1: "weight", 2: "weight", 3: "bias"},
}
_NORM_SLOTS = {
    "BatchNormalization": {1: "norm", 2: "norm"},
    "LayerNormalization": {1: "norm", 2: "norm"},
    "InstanceNormalization": {1: "norm", 2: "norm"},
    "GroupNormalization": {1: "norm", 2: "norm"},
}
# tensors the importer turns into a layer's state without drifting them: each layer needs its own copy too
_STATE_SLOTS = {"BatchNormalization": {3: "stat", 4: "stat"}}
TARGET_MODES = ("params", "crossbar")
TILE_SLICE = "ftcompile_tile_weight"  # the nodes of a chip twin (passes/chip_twin.py) that cut a weight into its tiles


@dataclass(frozen=True)
class DriftTarget:
    """One drifting tensor: the initializer ``name`` feeding ``node`` (``op``) at input ``slot``."""

    name: str
    role: str  # "weight", "bias" or "norm"
    op: str
    node: str
    slot: int
    shape: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


def constants_to_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn top-level ``Constant`` nodes holding tensors into initializers (one representation)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = []
    for node in out.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value is not None:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            out.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


def _parameter_uses(model: onnx.ModelProto, inits: dict, state: bool = False) -> list[tuple[onnx.NodeProto, int, str]]:
    """Every (node, input slot, role) that reads a learned float parameter, in graph order.

    Roles: "weight"/"bias" of crossbar layers (Conv, ConvTranspose, Gemm, MatMul by a constant and the
    Add right after it), "norm" for normalization scale and shift; with ``state``, also "stat" for
    BatchNorm running statistics (trained, written back, never drifted).
    """
    uses = []
    matmul_outputs: set[str] = set()
    for node in model.graph.node:
        op = node.op_type
        slots = {**_LAYER_SLOTS.get(op, {}), **_NORM_SLOTS.get(op, {}), **(_STATE_SLOTS.get(op, {}) if state else {})}
        if op == "MatMul":
            slot = 1 if node.input[1] in inits else 0 if node.input[0] in inits else None
            if slot is not None:
                slots = {slot: "weight"}
                matmul_outputs.add(node.output[0])
        if op == "Add" and any(i in matmul_outputs for i in node.input):
            slots = {k: "bias" for k, i in enumerate(node.input) if i in inits}
        if op == "Slice" and node.name.startswith(TILE_SLICE):  # a chip twin cuts a layer's weight into its tiles
            slots = {0: "weight"}
        uses += [(node, slot, role) for slot, role in slots.items()
                 if slot < len(node.input) and node.input[slot] in inits]
    return uses


def find_drift_targets(model: onnx.ModelProto, *, targets: str = "params", bias: bool = False) -> list[DriftTarget]:
    """The tensors that drift, in graph order.

    Args:
        targets: ``"params"`` (every learned float parameter: layer weights and biases, the bias of an
            Add after a MatMul, normalization scale and shift) or ``"crossbar"`` (only the weight
            matrices of Conv/ConvTranspose/Gemm/MatMul; ``bias=True`` adds their biases).
    """
    if targets not in TARGET_MODES:
        raise ValueError(f"targets must be one of {TARGET_MODES}")
    inits = {i.name: i for i in model.graph.initializer if _is_float(i)}
    found: dict[str, DriftTarget] = {}
    for node, slot, role in _parameter_uses(model, inits):
        if targets == "crossbar" and (role == "norm" or (role == "bias" and not bias)):
            continue
        name = node.input[slot]
        if name not in found:
            found[name] = DriftTarget(name, role, node.op_type, node.name or node.output[0], slot,
                                      tuple(inits[name].dims))
    return list(found.values())


def unshare_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every layer its own copy of the parameters it reads (a new model; the input is untouched).

    Exporters store identical constants once: the TorchScript exporter lets several layers read one
    initializer, directly or through ``Identity`` nodes (the all-zero conv biases BatchNorm folding
    leaves, for one). On a crossbar each layer has its own devices, so each must drift on its own and
    be fine-tuned on its own. Two steps:

    1. an ``Identity`` of an initializer becomes an initializer of its own under the Identity's output
       name (unless that name is a graph output);
    2. a float initializer read at a parameter slot (or as BatchNorm running statistics) by several nodes
       keeps its name for the first reader; each further reader gets a copy named ``<name>.ftcompile<k>``.
       A freshly initialized network has every BatchNorm at mean 0 and variance 1, and the dynamo
       exporter stores those once.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
            inits[copy.name] = copy
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)
    floats = {n: t for n, t in inits.items() if _is_float(t)}
    readers: dict[str, int] = {}
    for node, slot, _ in _parameter_uses(out, floats, state=True):
        name = node.input[slot]
        readers[name] = readers.get(name, 0) + 1
        if readers[name] > 1:
            copy = onnx.TensorProto()
            copy.CopyFrom(floats[name])
            copy.name = f"{name}.ftcompile{readers[name] - 1}"
            graph.initializer.append(copy)
            node.input[slot] = copy.name
    return out


def initializer_arrays(model: onnx.ModelProto, names: Iterable[str]) -> dict[str, np.ndarray]:
    wanted = set(names)
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in wanted}


def weights_to_inputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Expose initializers ``names`` as graph inputs, so one session can be fed drifted copies."""
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    for name in names:
        const = tensors.get(name)
        if not isinstance(const, gs.Constant):
            raise ModelError(f"tensor {name!r} is not an initializer; it cannot be exposed as a weight input.")
        var = gs.Variable(name, dtype=const.values.dtype, shape=list(const.values.shape))
        _redirect(const, var)
        graph.inputs.append(var)
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    _keep_header(model, out)
    onnx.checker.check_model(out)
    return out


def insert_dropout_onnx(model: onnx.ModelProto, sites: Sequence[str], rates: Sequence[float]) -> onnx.ModelProto:
    """Insert a ``Dropout`` on each tensor in ``sites`` with its own ratio initializer.

    Dropout is inert at inference (training_mode defaults to false), so outputs are unchanged; the
    rates travel with the graph for toolchains that train ONNX elsewhere.
    """
    if len(sites) != len(rates):
        raise ValueError("one rate per site")
    graph = gs.import_onnx(model)
    tensors = graph.tensors()
    outputs = {t.name for t in graph.outputs}
    for i, (site, rate) in enumerate(zip(sites, rates)):
        src = tensors.get(site)
        if src is None or site in outputs:
            raise ModelError(f"dropout site {site!r} is not an inner tensor of the graph.")
        dst = gs.Variable(f"{site}_ftdropout", dtype=src.dtype, shape=src.shape)
        _redirect(src, dst)
        ratio = gs.Constant(f"ftcompile_dropout_ratio_{i}", np.array(rate, dtype=np.float32))
        graph.nodes.append(gs.Node("Dropout", name=f"ftcompile_dropout_{i}", inputs=[src, ratio], outputs=[dst]))
    graph.cleanup().toposort()
    out = gs.export_onnx(graph)
    _keep_header(model, out)
    onnx.checker.check_model(out)
    return out


def dropout_rates_onnx(model: onnx.ModelProto) -> dict[str, float]:
    """Ratio of each Dropout node whose ratio is a constant, by the tensor it follows."""
    inits = {i.name: float(numpy_helper.to_array(i)) for i in model.graph.initializer if not i.dims}
    return {n.input[0]: inits.get(n.input[1], 0.5) if len(n.input) > 1 else 0.5
            for n in model.graph.node if n.op_type == "Dropout"}


def _redirect(old: gs.Tensor, new: gs.Tensor) -> None:
    """Make every consumer of ``old`` read ``new`` (graphsurgeon lists take item assignment only)."""
    for node in list(old.outputs):
        for i, t in enumerate(node.inputs):
            if t is old:
                node.inputs[i] = new


def _keep_header(src: onnx.ModelProto, dst: onnx.ModelProto) -> None:
    # graphsurgeon rewrites the model header; keep the producer's IR version, opsets and metadata.
    dst.ir_version = src.ir_version
    del dst.opset_import[:]
    dst.opset_import.extend(src.opset_import)
    del dst.metadata_props[:]
    dst.metadata_props.extend(src.metadata_props)
    dst.producer_name, dst.producer_version = src.producer_name, src.producer_version


def _is_float(tensor: onnx.TensorProto) -> bool:
    return tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
