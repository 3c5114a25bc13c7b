"""Which torch parameters drift, named as the runtime names them: what makes the search's objective and training
noise drift the very tensors the sign-off drifts, with the very draws the runtime would make.

The runtime drifts initializers of the ONNX model (``passes.onnx_graph.find_drift_targets``, after
``unshare_weights``) and draws sample ``k`` of tensor ``name`` from a stream keyed by ``(seed, k, name)``. A
``DriftKey`` ties a parameter of the module being fine-tuned to that initializer: its name and whether the
parameter is stored transposed there (a ``Gemm`` without ``transB``, a ``MatMul`` weight). Parameters without a
key are digital: the runtime leaves them alone, so the objective and the training noise do too.

- An imported ONNX model knows each parameter's initializer (``ImportedModel.sources``): ``onnx_drift_keys``.
- A module (a detector) is exported to ONNX first; its drift targets are matched to parameters by the module
  path that torch's exporter writes into node names (``/stem/stem.0/stem.0.1/BatchNormalization`` reads module
  ``stem.0.1``), or by the state-dict name the initializer kept, and checked by value: ``module_drift_keys``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ftcompile.errors import UnsupportedModelError
from ftcompile.passes.onnx_graph import constants_to_initializers, find_drift_targets, unshare_weights

# the parameter of a torch layer each input slot of its ONNX node holds
_SLOT_PARAMS = {"Conv": {1: "weight", 2: "bias"}, "ConvTranspose": {1: "weight", 2: "bias"},
                "Gemm": {1: "weight", 2: "bias"}, "MatMul": {0: "weight", 1: "weight"}, "Add": {0: "bias", 1: "bias"},
                "BatchNormalization": {1: "weight", 2: "bias"}, "LayerNormalization": {1: "weight", 2: "bias"},
                "InstanceNormalization": {1: "weight", 2: "bias"}, "GroupNormalization": {1: "weight", 2: "bias"}}


@dataclass(frozen=True)
class DriftKey:
    """The runtime tensor a parameter is: initializer ``name`` of shape ``shape``; ``transposed``: the parameter is
    its transpose (then reshaped to ``shape``)."""

    name: str
    transposed: bool
    shape: tuple

    def to_runtime(self, param: "np.ndarray | torch.Tensor"):
        """The parameter laid out as the runtime's tensor."""
        return (param.T if self.transposed else param).reshape(self.shape)

    def from_runtime(self, value, like_shape: tuple):
        """A runtime-shaped array back in the parameter's layout (``like_shape``)."""
        if self.transposed:
            return value.reshape(tuple(like_shape)[::-1]).T
        return value.reshape(like_shape)


def onnx_drift_keys(imported, *, targets: str, bias: bool,
                    runtime: onnx.ModelProto | None = None) -> dict[str, DriftKey]:
    """Keys of an imported ONNX model's parameters that the runtime drifts under ``targets``/``bias``; ``runtime``:
    the graph the runtime drifts when it is not the imported one (the analog twin, whose biases are digital)."""
    from ftcompile.passes.qdq import dequantize_weights

    # as the runtime sees the graph: a QDQ model's quantized weights drift as the float values they program
    graph = dequantize_weights(imported.onnx_model if runtime is None else runtime)
    drifting = {t.name for t in find_drift_targets(graph, targets=targets, bias=bias)}
    params = dict(imported.module.named_parameters())
    return {key: DriftKey(src.name, src.transposed, tuple(src.shape)) for key, src in imported.sources.items()
            if key in params and src.name in drifting}


def module_drift_keys(module: torch.nn.Module, exported: onnx.ModelProto, *, targets: str,
                      bias: bool) -> dict[str, DriftKey]:
    """Keys of ``module``'s parameters for the drift targets of ``exported`` (its ONNX export).

    Raises ``UnsupportedModelError`` when a drifting tensor of the export is none of the module's parameters (the
    exporter computed it, e.g. folded a normalization into a convolution): the search could not drift it as the
    sign-off does.
    """
    proto = unshare_weights(constants_to_initializers(exported))
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    params = {k: p.detach().cpu().numpy() for k, p in module.named_parameters()}
    keys: dict[str, DriftKey] = {}
    for t in find_drift_targets(proto, targets=targets, bias=bias):
        value = inits[t.name]
        named = [k for k in (t.name, _scoped(t.node, _SLOT_PARAMS.get(t.op, {}).get(t.slot)))
                 if k in params and k not in keys]
        found = next(filter(None, (_key(t.name, value, k, params[k]) for k in named)), None)
        if found is None:  # unnamed: the one unclaimed parameter holding exactly this value
            matches = [m for m in (_key(t.name, value, k, p) for k, p in params.items() if k not in keys) if m]
            found = matches[0] if len(matches) == 1 else None
        if found is None:
            raise UnsupportedModelError(f"the exported model drifts {t.name!r} ({t.op} {t.node!r}, input {t.slot}), "
                                        "which is none of the module's parameters (the exporter computed it); the "
                                        "search could not drift it as the sign-off does. Please report the model.")
        keys[found[0]] = found[1]
    return keys


def _scoped(node: str, param: str | None) -> str | None:
    """``stem.0.1.weight`` for node ``/stem/stem.0/stem.0.1/BatchNormalization`` and ``weight``."""
    parts = node.split("/")
    return f"{parts[-2]}.{param}" if param and len(parts) >= 3 and parts[-2] else None


def _key(name: str, value: np.ndarray, key: str, param: np.ndarray) -> "tuple[str, DriftKey] | None":
    if param.size != value.size:
        return None
    for transposed in (False, True):
        laid = (param.T if transposed else param).reshape(value.shape)
        if np.array_equal(laid, value):
            return key, DriftKey(name, transposed, tuple(value.shape))
    return None
