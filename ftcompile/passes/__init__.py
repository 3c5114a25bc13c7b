"""Graph passes. ONNX passes need no torch; the torch.fx passes load torch on first use."""
from ftcompile.passes.onnx_graph import (  # noqa: F401
    DriftTarget,
    constants_to_initializers,
    unshare_weights,
    find_drift_targets,
    insert_dropout_onnx,
    weights_to_inputs,
)

_FX = {"find_layers": "ftcompile.passes.layers", "Layer": "ftcompile.passes.layers",
       "insert_dropout": "ftcompile.passes.dropout", "DropoutSites": "ftcompile.passes.dropout"}


def __getattr__(name: str):
    if name in _FX:
        import importlib
        return getattr(importlib.import_module(_FX[name]), name)
    raise AttributeError(name)
