"""torch -> ONNX by writing fine-tuned weights back into the imported ONNX graph.

Why not re-export the fx graph: the source graph is what the user validated and ships, so we keep
its opset, dynamic shapes and every op untouched and replace only initializers (the importer
recorded where each parameter came from). Dropout sites are added as ONNX ``Dropout`` nodes with
their rates (inert at inference), and the result is checked against the torch module.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper, numpy_helper

from ftcompile import __version__
from ftcompile.errors import OutputError, ParityError
from ftcompile.fileio import write_bytes_atomic
from ftcompile.frontend.onnx_import import ImportedModel
from ftcompile.frontend.parity import compare
from ftcompile.passes.onnx_graph import insert_dropout_onnx
from ftcompile.metadata import get_metadata, set_metadata  # noqa: F401  (re-exported)



def to_onnx(imported: ImportedModel, *, sites=None, metadata: dict | None = None, rtol: float = 1e-4,
            head=None) -> onnx.ModelProto:
    """The source ONNX graph with the module's current weights, dropout sites and metadata.

    ``head`` (an ``ecoc.EcocHead``) replaces the output layer by FTNA's code layer and appends its decoder.
    """
    state = imported.module.state_dict()
    model = onnx.ModelProto()
    model.CopyFrom(imported.onnx_model)
    inits = {i.name: i for i in model.graph.initializer}
    for key, src in imported.sources.items():
        if head is not None and key in head.keys:
            continue
        arr = state[key].detach().cpu().numpy()
        arr = (arr.T if src.transposed else arr).reshape(src.shape)
        if src.grid is not None:  # a quantized weight (QDQ): back on its grid, with its scale and zero point
            arr = src.grid.to_stored(arr)
        dtype = helper.tensor_dtype_to_np_dtype(inits[src.name].data_type)
        inits[src.name].CopyFrom(numpy_helper.from_array(arr.astype(dtype), src.name))
    if sites is not None and len(sites):
        known = [(t, r) for t, r in zip(sites.tensors, sites.rates) if t]
        model = insert_dropout_onnx(model, [t for t, _ in known], [r for _, r in known])
    reference = imported.module
    if head is not None:
        from ftcompile.passes.ecoc import ecoc_onnx

        model = ecoc_onnx(model, head, imported.sources, imported.output)
        reference = head.model
    set_metadata(model, {"version": __version__, **(metadata or {})})
    onnx.checker.check_model(model)
    # the same graph and ops as at import, new weights: allow the float error the import itself showed
    # (10x its relative error on the source weights), never less than rtol
    if imported.parity is not None:
        rtol = max(rtol, 10 * imported.parity.rel)
    parity = compare(model, reference, imported.output, rtol=rtol)
    if not parity.ok:
        raise ParityError(f"exported ONNX disagrees with the torch module (max abs diff {parity.max_abs:.3g}, "
                          f"{parity.rel:.3g} of range); please report the model.")
    return model


def save_onnx(model: onnx.ModelProto, path: "str | Path", *, source: "str | Path | None" = None) -> Path:
    """Write atomically; never over the source model."""
    path = Path(path)
    if source and Path(source).exists() and path.exists() and path.resolve() == Path(source).resolve():
        raise OutputError(f"{path}: is the input model; choose another --out (inputs are never overwritten).")
    return write_bytes_atomic(path, model.SerializeToString())
