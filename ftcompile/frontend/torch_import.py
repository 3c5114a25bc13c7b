"""torch models in: ``nn.Module``/``fx.GraphModule`` (Python API) and ``torch.export`` files (``.pt2``).

A torch model is exported once to ONNX (TorchScript exporter, opset 17, dynamic batch) and imported
like any ONNX file, so every model is hardened, written back and validated on the same ONNX graph.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import onnx
import torch

from ftcompile.errors import ModelError
from ftcompile.frontend.onnx_import import ImportedModel, import_onnx

OPSET = 17


def torch_to_onnx(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor]) -> onnx.ModelProto:
    """Export with torch's TorchScript exporter: it keeps a dynamic batch without onnxscript."""
    module = module.eval()
    names = [f"input{i}" if len(example_inputs) > 1 else "x" for i in range(len(example_inputs))]
    buf = io.BytesIO()
    torch.onnx.export(module, tuple(example_inputs), buf, dynamo=False, opset_version=OPSET, input_names=names,
                      output_names=["logits"], dynamic_axes={**{n: {0: "N"} for n in names}, "logits": {0: "N"}})
    return onnx.load_from_string(buf.getvalue())


def import_torch(module: torch.nn.Module, example_inputs: "torch.Tensor | Sequence[torch.Tensor]") -> ImportedModel:
    """Import an ``nn.Module`` or ``fx.GraphModule`` given example inputs (any batch size).

    Example:
        >>> imported = import_torch(torch.nn.Sequential(torch.nn.Linear(4, 2)), torch.zeros(1, 4))
        >>> [n.target for n in imported.module.graph.nodes if n.op == "call_module"]
        ['layer_0']
    """
    if torch.is_tensor(example_inputs):
        example_inputs = (example_inputs,)
    return import_onnx(torch_to_onnx(module, list(example_inputs)))


def load_model(path: "str | Path", *, output: str | None = None) -> ImportedModel:
    """Import a model file: ``.onnx`` or a ``torch.export`` program (``.pt2``; never arbitrary pickles)."""
    path = Path(path)
    if path.suffix == ".pt2":
        if not path.is_file():
            raise ModelError(f"{path}: no such model file; check the path.")
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise ModelError(f"{path}: not a torch.export program ({str(exc).splitlines()[0][:200]}); "
                             "save it with torch.export.save.") from None
        # an ExportedProgram goes through torch's dynamo exporter, which takes it as it is
        proto = torch.onnx.export(program, dynamo=True, verbose=False).model_proto
        imported = import_onnx(proto)
        imported.source_path = str(path)
        return imported
    return import_onnx(path, output=output)
