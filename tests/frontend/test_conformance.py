"""The importer against the ONNX operator spec: every node test case the onnx package ships, every schema version
of every supported operator, and the promise that each standard-domain operator is supported or listed out of
scope with a reason.

``test_node_case``: the imported graph's outputs against the case's expected outputs (dtype, shape, values).
``test_schema_version``: one case of the operator stamped at each opset where its schema changed (inputs the
older schema takes as attributes moved there, or onnx's version converter), against onnxruntime's outputs.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx.defs
import pytest
from onnx import TensorProto, helper

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import registry
from ftcompile.frontend.onnx_import import SUPPORTED
from tests.frontend.node_cases import assert_matches, node_cases, reference_outputs, retarget, run, standard_opset

CASES = node_cases()
STANDARD = ("", "ai.onnx")
_HALF = ("bfloat16/float16 arithmetic: the reference rounds every intermediate in half precision, torch's kernels "
         "accumulate in float32 and round once (a few bfloat16 ulps apart)")
# cases of supported operators that the importer refuses with UnsupportedModelError, and why
REFUSED = {
    **{f"test_{p}{src}_to_{dst}{x}": f"{dst}: element type without a torch dtype"
       for p, x in (("cast_", ""), ("castlike_", "_expanded")) for src in ("FLOAT", "FLOAT16")
       for dst in ("UINT4", "INT4", "FLOAT4E2M1", "UINT2", "INT2")},
    **{f"test_cast_e8m0_{src}_to_FLOAT8E8M0": "FLOAT8E8M0: element type without a torch dtype"
       for src in ("FLOAT", "FLOAT16")},
    "test_col2im_5d": "Col2Im on 3-D images: torch's fold is 2-D only",
    **{f"test_training_dropout{x}": "Dropout in training mode draws random masks (models are imported for "
                                    "inference; export in eval mode)"
       for x in ("", "_default", "_default_mask", "_mask", "_zero_ratio", "_zero_ratio_mask")},
}
# cases that import but whose expected values ask for another rounding sequence than torch's
IMPRECISE = {name: _HALF for name in (
    "test_attention_4d_causal_bf16", "test_attention_4d_causal_padded_kv_bf16",
    "test_attention_4d_causal_bf16_expanded", "test_attention_4d_causal_fp16_expanded",
    "test_attention_4d_padded_kv_bf16_expanded", "test_attention_4d_causal_padded_kv_bf16_expanded",
    "test_attention_4d_attn_mask_causal_bf16_expanded", "test_attention_3d_causal_bf16_expanded")}
# cases whose expected values the onnx source writes out to four or five digits: the case's rtol, not FLOAT_RTOL
ROUNDED = {name: "expected values written to a few digits in the onnx source" for name in (
    "test_averagepool_2d_ceil_last_window_starts_on_pad", "test_gridsample_bicubic", "test_roialign_aligned_false",
    "test_roialign_aligned_true")}
_NO_TORCH_DTYPE = ("int4", "uint4", "int2", "uint2", "float4_e2m1fn", "float8_e8m0fnu")
_UNSIGNED = ("uint16", "uint32", "uint64")


def _case_ops(model: onnx.ModelProto) -> list[tuple[str, str]]:
    return sorted({(n.domain, n.op_type) for n in model.graph.node})


def _exotic(data) -> bool:
    """Values that are not plain arrays (sequences, optionals) or that numpy holds as objects (strings, 4-bit and
    float8 types the case writes that way)."""
    values = [a for inputs, outputs in data for a in (*inputs, *outputs)]
    return any(not isinstance(a, (np.ndarray, np.generic)) or a.dtype == object or a.dtype.name in _NO_TORCH_DTYPE
               for a in values)


@pytest.mark.parametrize("name", sorted(CASES))
def test_node_case(name):
    model, data, rtol, atol = CASES[name]
    ops = _case_ops(model)
    other = sorted({d for d, _ in ops if d not in STANDARD})
    if other:
        pytest.skip(f"not the standard domain: {', '.join(other)}")
    outside = [op for _, op in ops if op in registry.OUT_OF_SCOPE]
    if outside:
        pytest.skip(f"{outside[0]} is out of scope: {registry.OUT_OF_SCOPE[outside[0]]}")
    if name in IMPRECISE:
        pytest.skip(IMPRECISE[name])
    if name in REFUSED:
        with pytest.raises(UnsupportedModelError):
            run(model, data[0][0])
        return
    if _exotic(data):
        pytest.skip("strings, 4-bit, 2-bit or float8 values: element types without a torch dtype")
    try:
        for inputs, outputs in data:
            assert_matches(run(model, inputs), outputs, rtol, atol, rounded=name in ROUNDED)
    except NotImplementedError as exc:
        if any(t in str(exc) for t in ("UInt16", "UInt32", "UInt64")):
            pytest.xfail(f"torch has no arithmetic kernels for {', '.join(_UNSIGNED)} ({str(exc)[:60]})")
        raise


# --- every schema version ---------------------------------------------------------------------------
def _history() -> dict[str, list[int]]:
    versions = collections.defaultdict(set)
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain in STANDARD:
            versions[schema.name].add(schema.since_version)
    return {op: sorted(v) for op, v in versions.items()}


HISTORY = _history()


def _extra_cases() -> dict[str, list]:
    """Cases for supported operators the onnx package ships no node test for (expected values: onnxruntime)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    rois = np.array([[0, 0.5, 0.5, 3.2, 4.1], [1, 1.0, 0.0, 4.0, 2.0]], np.float32)

    def model(node, ins, out_shape, opset):
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(v.shape))
                                            for n, v in ins], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                                                                                              out_shape)])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)

    return {
        "GlobalLpPool": [(model(helper.make_node("GlobalLpPool", ["x"], ["y"], p=3), [("x", x)], [2, 3, 1, 1], 21),
                          [x])],
        "MaxRoiPool": [(model(helper.make_node("MaxRoiPool", ["x", "rois"], ["y"], pooled_shape=[2, 3],
                                               spatial_scale=1.0), [("x", x), ("rois", rois)], [2, 3, 2, 3], 21),
                        [x, rois])],
    }


EXTRA = _extra_cases()


# the node case a version test starts from, where the first one in name order does not suit
PREFERRED = {"MaxUnpool": "test_maxunpool_export_without_output_shape"}  # onnxruntime reads output_shape's
# indices against the output, the onnx reference against the pooled input's shape (the node case follows it)


def _single_node_cases() -> dict[str, list]:
    by_op = collections.defaultdict(list)
    for name in sorted(CASES, key=lambda n: (n not in PREFERRED.values(), len(n), n)):
        model, data, rtol, atol = CASES[name]
        if len(model.graph.node) == 1 and model.graph.node[0].domain in STANDARD and not _exotic(data) \
                and name not in REFUSED and name not in IMPRECISE:
            by_op[model.graph.node[0].op_type].append((model, data[0][0]))
    for op, cases in EXTRA.items():
        by_op[op] = cases + by_op[op]
    return by_op


SINGLE = _single_node_cases()
# where no node case can be stamped at a schema version (or onnxruntime has no kernel for it), and why
VERSION_GAPS = {
    ("AveragePool", 1): "opset 1-6 AveragePool leaves open whether pads count; onnxruntime counts them, the importer "
                        "follows opset 7's default (they do not)",
    ("GlobalLpPool", 1): "no node case, and opset 1's p is a float (opset 2 and 21 tested)",
    ("BatchNormalization", 1): "opset 1-5 BatchNormalization takes consumed_inputs; no node case converts",
    ("BatchNormalization", 6): "opset 6 BatchNormalization's is_test/spatial form; no node case converts",
    ("Cast", 1): "opset 1 Cast names the type as a string; no node case converts",
    ("Clip", 1): "opset 1-5 Clip takes consumed_inputs; no node case converts",
    ("Dropout", 1): "opset 1-5 Dropout takes is_test/consumed_inputs; no node case converts",
    ("Dropout", 6): "opset 6 Dropout takes is_test; no node case converts",
    ("Gemm", 1): "opset 1-5 Gemm: no kernel in onnxruntime or the onnx reference",
    ("GroupNormalization", 18): "the node cases' scales are per channel (opset 21); opset 18 wants them per group",
    ("LpPool", 1): "opset 1 LpPool's float p: no node case converts",
    ("Pad", 1): "opset 1 Pad names its pads 'paddings'; no node case converts",
    ("Pow", 1): "opset 1-6 Pow: no node case converts",
    ("RNN", 1): "opset 1-6 RNN: no kernel in onnxruntime or the onnx reference",
    ("Resize", 10): "no node case converts to opset 10 (roi/sizes inputs)",
    ("Resize", 11): "the node cases leave roi empty, which opset 11 requires",
    ("Split", 1): "opset 1 Split's second input: no node case converts",
    ("Tile", 1): "opset 1-5 Tile (tiles and axis inputs): no node case converts",
    ("Upsample", 1): "opset 1-6 Upsample's height_scale/width_scale: no node case converts",
    ("GlobalLpPool", 22): "no node case, and onnxruntime has no opset 22 kernel (opset 2 and 21 tested)",
    ("MaxRoiPool", 22): "no node case, and onnxruntime has no opset 22 kernel (opset 1 and 21 tested)",
}
VERSIONS = [(op, v) for op in SUPPORTED for v in HISTORY.get(op, ())]


@pytest.mark.parametrize("op,version", VERSIONS, ids=[f"{op}-{v}" for op, v in VERSIONS])
def test_schema_version(op, version):
    if (op, version) in VERSION_GAPS:
        pytest.skip(VERSION_GAPS[(op, version)])
    for model, inputs in SINGLE.get(op, []):
        stamped = retarget(model, inputs, version)
        if stamped is None:
            continue
        m, feeds = stamped
        try:
            want = reference_outputs(m, feeds)
        except Exception:  # onnxruntime refuses this case's types at this opset: the next case
            continue
        assert_matches(run(m, feeds), want, 1e-3, 1e-5)
        return
    pytest.fail(f"no node case of {op} runs at opset {version}; add one or list the gap with its reason")


def test_every_standard_operator_is_supported_or_out_of_scope():
    standard = {s.name for s in onnx.defs.get_all_schemas() if s.domain in STANDARD}
    unaccounted = standard - set(SUPPORTED) - set(registry.OUT_OF_SCOPE)
    assert not unaccounted, f"neither supported nor listed out of scope: {sorted(unaccounted)}"
    assert not set(SUPPORTED) & set(registry.OUT_OF_SCOPE)
    assert all(reason.strip() for reason in registry.OUT_OF_SCOPE.values())
    assert len(set(SUPPORTED) & standard) >= 150


def test_every_version_gap_and_exclusion_names_something_real():
    assert all(name in CASES for name in (*REFUSED, *IMPRECISE, *ROUNDED))
    assert all(v in HISTORY[op] and op in SUPPORTED for op, v in VERSION_GAPS)


def test_out_of_scope_operator_is_refused_with_its_reason():
    g = helper.make_graph([helper.make_node("RandomNormalLike", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    with pytest.raises(UnsupportedModelError, match="draws random numbers"):
        run(helper.make_model(g, opset_imports=[helper.make_opsetid("", 22)]), [np.zeros(2, np.float32)])


def test_converter_ranges_follow_the_opset():
    """Softmax before opset 13 normalizes the input flattened at ``axis``; from 13 on only ``axis``."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    g = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=0)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    old, new = (run(helper.make_model(g, opset_imports=[helper.make_opsetid("", v)]), [x])[0] for v in (11, 13))
    np.testing.assert_allclose(old.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(new.sum(0), [1.0, 1.0, 1.0], rtol=1e-6)
    assert registry.lookup("Softmax", 12) is not registry.lookup("Softmax", 13)
    assert standard_opset(helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])) == 11


def test_converter_ranges_leave_no_opset_uncovered():
    """From an operator's first schema version to the newest opset some converter takes it: ``test_schema_version``
    stamps only the versions where a schema changed, so a range ending one opset early would pass it."""
    newest = onnx.defs.onnx_opset_version()
    holes = {op: [v for v in range(HISTORY[op][0], newest + 1) if registry.lookup(op, v) is None]
             for op in SUPPORTED if op in HISTORY}
    assert not {op: v for op, v in holes.items() if v}, "opsets without a converter"
