"""The node test cases of the onnx package (model, inputs, expected outputs), and running one through the importer.

The onnx wheel ships the cases as the Python that writes them (``onnx.backend.test.case.node``), not as files:
``collect_testcases`` builds all of them in memory once per session (a few seconds).
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import onnx
import torch

from ftcompile.frontend.dtypes import to_torch
from ftcompile.frontend.onnx_import import convert, prepare
from ftcompile.runtime.model import graph_inputs


@functools.lru_cache(maxsize=1)
def node_cases() -> dict:
    """name -> (model, [(inputs, outputs)], rtol, atol) of every node test case the onnx package defines."""
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = node.collect_testcases(None)
    return {c.name: (c.model, [([_array(v) for v in ins], [_array(v) for v in outs]) for ins, outs in c.data_sets],
                     c.rtol, c.atol) for c in cases}


def _array(value):
    """Some cases store TensorProtos (types numpy lacks); everything else is an array already."""
    return onnx.numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value


def as_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2,
                   torch.float8_e5m2fnuz):
        return t.float().numpy()
    return t.detach().numpy()


def run(model: onnx.ModelProto, inputs: list) -> list[np.ndarray]:
    """Import ``model`` with every graph output and run it once on ``inputs`` (in ``graph.input`` order)."""
    proto = prepare(model)
    outputs = [o.name for o in proto.graph.output]
    module, _ = convert(proto, outputs)
    by_name = dict(zip([i.name for i in model.graph.input], inputs))
    args = [to_torch(np.asarray(by_name[v.name])) for v in graph_inputs(proto)]
    with torch.no_grad():
        got = module(*args)
    got = list(got) if len(outputs) > 1 else [got]
    return [as_numpy(g) if torch.is_tensor(g) else np.asarray(g) for g in got]


# float32/float64 results are held to this relative tolerance whatever the case asks: most cases carry onnx's
# default rtol of 1e-3, under which a coefficient 0.05% off (Selu's gamma) passed every test
FLOAT_RTOL = 1e-5


def assert_matches(got: list, want: list, rtol: float, atol: float, rounded: bool = False) -> None:
    """``got`` equals ``want`` in dtype, shape and values; ``rounded``: the expected values were written to a few
    digits, so the case's own ``rtol`` applies to float32/float64 too."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        single = w.dtype in (np.float32, np.float64)  # before bfloat16/float8 are widened to float32
        bf16 = w.dtype.name == "bfloat16"
        if bf16 or w.dtype.name.startswith("float8"):
            w = w.astype(np.float32)
        assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, want {w.dtype}"
        assert g.shape == w.shape, f"output {i}: shape {g.shape}, want {w.shape}"
        if w.dtype.kind in "fc":
            # bfloat16 keeps 8 significant bits: a tolerance below its resolution would ask for the reference's
            # exact rounding sequence
            tol = max(rtol, 2 ** -7) if bf16 else rtol
            if single and not rounded:
                tol = min(tol, FLOAT_RTOL)
            # float32 rounding of sums (FFTs, matrix products) leaves ~1e-6 of the largest value where the
            # reference computes an exact zero
            finite = np.abs(w[np.isfinite(w)]).astype(np.float64)
            floor = 1e-6 * float(finite.max()) if finite.size else 0.0
            np.testing.assert_allclose(g, w, rtol=tol, atol=max(atol, floor), equal_nan=True, err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {i}")


def standard_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


_ATTRIBUTE_NAMES = {"constant_value": "value", "K": "k", "scales": "scales", "split": "split"}


def retarget(model: onnx.ModelProto, inputs: list, version: int):
    """``(model, inputs)`` importing the standard domain at ``version``, or None when nothing valid comes out:
    the same nodes where that opset's schemas accept them; else the inputs that older schemas take as
    attributes (Reduce axes, Pad pads, Clip bounds, ...) moved there; else onnx's version converter."""
    if standard_opset(model) == version:
        return model, inputs
    makers = [lambda: (_stamped(model, version), inputs), lambda: _as_attributes(model, inputs, version),
              lambda: (onnx.version_converter.convert_version(model, version), inputs)]
    for make in makers:
        try:
            out, feeds = make()
            onnx.checker.check_model(out, full_check=True)
            return out, feeds
        except Exception:
            continue
    return None


def _stamped(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for o in out.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = version
    try:  # the IR version of that opset (onnxruntime reads IR versions up to its own)
        out.ir_version = max(onnx.helper.find_min_ir_version_for(list(out.opset_import)), 3)
    except ValueError:
        pass
    for node in out.graph.node:
        schema = onnx.defs.get_schema(node.op_type, version)
        # attributes the older schema lacks go (onnxruntime's outputs at that opset are the reference anyway)
        kept = [a for a in node.attribute if a.name in schema.attributes]
        del node.attribute[:]
        node.attribute.extend(kept)
        if version < 7 and "broadcast" in schema.attributes:  # before opset 7 broadcasting is asked for
            node.attribute.append(onnx.helper.make_attribute("broadcast", 1))
    return out


def _as_attributes(model: onnx.ModelProto, inputs: list, version: int):
    """Inputs of a single-node model that the op's schema at ``version`` takes as attributes, moved there."""
    out = _stamped(model, version)
    (node,) = out.graph.node
    schema = onnx.defs.get_schema(node.op_type, version)
    values = dict(zip([i.name for i in model.graph.input], inputs))
    formal = [f.name for f in onnx.defs.get_schema(node.op_type, standard_opset(model)).inputs]
    keep = []
    moved = set()
    for slot, name in enumerate(node.input):
        attr = _ATTRIBUTE_NAMES.get(formal[min(slot, len(formal) - 1)], formal[min(slot, len(formal) - 1)])
        if slot >= len(schema.inputs) and attr in schema.attributes and name in values:
            value = np.asarray(values[name])
            kind = schema.attributes[attr].type
            if kind == onnx.AttributeProto.INTS:
                node.attribute.append(onnx.helper.make_attribute(attr, [int(v) for v in value.reshape(-1)]))
            elif kind == onnx.AttributeProto.FLOATS:
                node.attribute.append(onnx.helper.make_attribute(attr, [float(v) for v in value.reshape(-1)]))
            elif kind == onnx.AttributeProto.INT:
                node.attribute.append(onnx.helper.make_attribute(attr, int(value.reshape(-1)[0])))
            elif kind == onnx.AttributeProto.FLOAT:
                node.attribute.append(onnx.helper.make_attribute(attr, float(value.reshape(-1)[0])))
            else:
                raise ValueError(attr)
            moved.add(name)
        elif name:
            keep.append(name)
    if not moved:
        raise ValueError("nothing to move")
    del node.input[:]
    node.input.extend(keep)
    graph_in = [i for i in out.graph.input if i.name not in moved]
    del out.graph.input[:]
    out.graph.input.extend(graph_in)
    return out, [values[i.name] for i in graph_in]


def reference_outputs(model: onnx.ModelProto, inputs: list) -> list[np.ndarray]:
    """The outputs onnxruntime computes (the onnx reference evaluator where onnxruntime has no kernel)."""
    feeds = {i.name: np.asarray(v) for i, v in zip(model.graph.input, inputs)}
    feeds = {k: v for k, v in feeds.items() if k in {i.name for i in graph_inputs(model)}}
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(model).run(None, feeds)
    return sess.run(None, feeds)
