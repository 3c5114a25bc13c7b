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
}
_NORM_SLOTS = {
    "BatchNormalization": {1: "norm", 2: "norm"},
    "LayerNormalization": {1: "norm", 2: "norm"},
    "InstanceNormalization": {1: "norm", 2: "norm"},
    "GroupNormalization": {1: "norm", 2: "norm"},
}
TARGET_MODES = ("params", "crossbar")


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
    matmul_outputs: set[str] = set()

    def add(name: str, role: str, node: onnx.NodeProto, slot: int) -> None:
        if name in inits and name not in found:
            found[name] = DriftTarget(name, role, node.op_type, node.name or node.output[0], slot,
                                      tuple(inits[name].dims))

    for node in model.graph.node:
        op = node.op_type
        slots = dict(_LAYER_SLOTS.get(op, {}))
        if targets == "params":
            slots.update(_NORM_SLOTS.get(op, {}))
        if op == "MatMul":
            slot = 1 if node.input[1] in inits else 0 if node.input[0] in inits else None
            if slot is not None:
                slots = {slot: "weight"}
                matmul_outputs.add(node.output[0])
        if op == "Add" and any(i in matmul_outputs for i in node.input):
            slots = {k: "bias" for k, i in enumerate(node.input) if i in inits}
        for slot, role in slots.items():
            if slot >= len(node.input) or not node.input[slot]:
                continue
            if role == "bias" and targets == "crossbar" and not bias:
                continue
            add(node.input[slot], role, node, slot)
    return list(found.values())


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
