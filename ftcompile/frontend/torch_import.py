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

from ftcompile.errors import ModelError, UnsupportedModelError
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


def is_factory_spec(model) -> bool:
    """``package.module:factory`` (a module factory), not a model file."""
    text = str(model)
    return isinstance(model, str) and ":" in text and not Path(text).exists() and not text.endswith((".onnx", ".pt2"))


def load_factory(spec: str) -> torch.nn.Module:
    """The ``nn.Module`` that ``package.module:factory`` returns (called with no arguments, in this process).

    The way in for models the ONNX importer cannot fine-tune (detectors with NMS, RoIAlign, data-dependent
    shapes): the factory builds the model and loads its weights itself.
    """
    from ftcompile.plugins import load_object

    factory = load_object(spec, "model factory", ModelError)
    if not callable(factory):
        raise ModelError(f"model factory {spec} is not callable; give a function that returns an nn.Module.")
    try:
        built = factory()
    except Exception as exc:
        raise ModelError(f"model factory {spec} failed "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).") from None
    if not isinstance(built, torch.nn.Module):
        raise ModelError(f"model factory {spec} returned {type(built).__name__}, not a torch nn.Module.")
    return built


def detector_to_onnx(module: torch.nn.Module, example: torch.Tensor) -> onnx.ModelProto:
    """Export a detector that follows torchvision's contract (eval: a list of per-image dicts of tensors,
    ``boxes``/``scores``/``labels``) for one image per run, outputs named after the dict keys.

    BatchNorm stays a ``BatchNormalization`` node (``TrainingMode.PRESERVE`` of a module in eval mode; the default
    folds it into the convolutions): the exported model holds the module's own parameters, so the sign-off drifts
    the tensors the search drifted. ``harden`` folds Conv -> BatchNorm pairs in the module itself first
    (``passes.fold_norm``); a BatchNorm after anything else stays one on both sides."""
    module = module.eval()
    with torch.no_grad():
        out = module(example[:1])
    if not (isinstance(out, (list, tuple)) and out and isinstance(out[0], dict)):
        raise ModelError(f"the detector returned {type(out).__name__} in eval mode; a detector returns one dict of "
                         "boxes, scores and labels per image (torchvision's contract).")
    buf = io.BytesIO()
    try:
        torch.onnx.export(module, (example[:1],), buf, dynamo=False, opset_version=OPSET, input_names=["x"],
                          output_names=list(out[0]), training=torch.onnx.TrainingMode.PRESERVE)
    except Exception as exc:
        raise UnsupportedModelError(f"torch's ONNX exporter cannot export the detector ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:200]}).") from None
    return onnx.load_from_string(buf.getvalue())
