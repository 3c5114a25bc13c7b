"""Reading ONNX models safely: every failure becomes one clear line, the file is never modified."""
from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from ftcompile.errors import ModelError, UnsupportedModelError, one_line

STANDARD_DOMAINS = ("", "ai.onnx")


def load_onnx(model: "str | Path | onnx.ModelProto", *, check: bool = True) -> onnx.ModelProto:
    """Load and check an ONNX model; a ``ModelProto`` passes through (copied, never mutated)."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        proto, where = copy, "<in-memory model>"
    else:
        path = Path(model)
        where = str(path)
        if not path.is_file():
            raise ModelError(f"{path}: no such model file; check the path.")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except DecodeError:
            raise ModelError(f"{path}: not an ONNX model (protobuf parse failed); the file is corrupt or of "
                             "another format.") from None
        except Exception as exc:
            raise ModelError(f"{path}: cannot load ONNX model ({one_line(exc)}); re-export it.") from None
        _load_external_data(proto, path)
    if len(proto.graph.node) == 0:
        raise ModelError(f"{where}: the ONNX graph has no nodes (empty or truncated file); re-export the model.")
    if check:
        try:
            onnx.checker.check_model(proto)
        except Exception as exc:
            raise ModelError(f"{where}: invalid ONNX model ({one_line(exc)}); re-export it with a current "
                             "exporter.") from None
    return proto


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read external tensor data only from files inside the model's folder (a model must not read /etc/...)."""
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    folder = path.resolve().parent
    external = [t for t in _get_all_tensors(proto) if uses_external_data(t)]
    for tensor in external:
        location = ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or folder not in target.parents:
            raise ModelError(f"{path}: tensor {tensor.name!r} points its external data at {location!r}, outside the "
                             "model's folder; refused. Keep the data file beside the model (re-save with onnx.save).")
        if not target.is_file():
            raise ModelError(f"{path}: external data file {location!r} of tensor {tensor.name!r} is missing; "
                             "copy it beside the model.")
    if external:
        try:
            onnx.load_external_data_for_model(proto, str(folder))
        except Exception as exc:
            raise ModelError(f"{path}: cannot read external tensor data ({one_line(exc)}); "
                             "re-save the model.") from None


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The real inputs: graph inputs that are not initializers (old IR versions list both)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shape(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """Dims of a value: ints where static, the symbol (or None) where dynamic."""
    dims = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return dims


def elem_dtype(value: onnx.ValueInfoProto):
    import numpy as np
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))


def choose_output(model: onnx.ModelProto, output: str | None) -> str:
    """The output that holds class scores: the only one, or the one the user named."""
    names = [o.name for o in model.graph.output]
    if output is not None:
        if output not in names:
            raise UnsupportedModelError(f"model has no output {output!r}; its outputs are {names}.")
        return output
    if len(names) != 1:
        raise UnsupportedModelError(f"model has {len(names)} outputs {names}; choose the class scores with "
                                    "--output NAME.")
    return names[0]
