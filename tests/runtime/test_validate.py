"""The drift-injecting session and Monte-Carlo validation, checked against onnxruntime and numpy."""
import json
from xml.etree import ElementTree as ET

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import ftcompile
from ftcompile.api import bind_data, open_session, parse_sigmas
from ftcompile.runtime.drift import LogNormalDrift, draw_sample
from ftcompile.runtime.report import SCHEMA, to_json, to_junit, to_markdown
from ftcompile.runtime.validate import Gate, sample_metrics
from tests.helpers import numpy_forward, teacher_files, teacher_mlp


@pytest.fixture()
def files(tmp_path):
    return teacher_files(tmp_path)


def test_clean_session_matches_plain_onnxruntime(files):
    model, data = files
    x = np.load(data)["x"]
    ref = ort.InferenceSession(str(model)).run(None, {"x": x})[0]
    s = open_session(model)
    np.testing.assert_allclose(s.run({"x": x}, s.weights), ref, rtol=1e-5, atol=1e-6)


def test_drifted_weights_reach_the_graph(files):
    model, data = files
    x = np.load(data)["x"][:50]
    s = open_session(model)
    drifted = draw_sample(LogNormalDrift(0.5), s.weights, 0, 3)
    proto = onnx.load(model)
    for init in proto.graph.initializer:
        init.CopyFrom(onnx.numpy_helper.from_array(drifted[init.name], init.name))
    np.testing.assert_allclose(s.run({"x": x}, drifted), numpy_forward(proto, x), rtol=1e-4, atol=1e-5)


def test_accuracy_falls_with_sigma_and_is_exact_at_zero(files):
    model, data = files
    r0 = ftcompile.validate(model, data, sigma=0.0, samples=3)
    assert r0.clean == 1.0 and r0.values == [1.0, 1.0, 1.0]
    low = ftcompile.validate(model, data, sigma=0.2, samples=20).stats.mean
    high = ftcompile.validate(model, data, sigma=1.0, samples=20).stats.mean
    assert 1.0 > low > high


def test_samples_do_not_depend_on_chunking(files):
    model, data = files
    s = open_session(model)
    ds = bind_data(s, data)
    whole = sample_metrics(s, ds, LogNormalDrift(0.6), samples=6, seed=5, batch_size=64)
    parts = (sample_metrics(s, ds, LogNormalDrift(0.6), samples=2, seed=5, batch_size=400) +
             sample_metrics(s, ds, LogNormalDrift(0.6), samples=4, seed=5, first=2, batch_size=7))
    assert whole == parts


def test_crossbar_targets_leave_biases_clean(files):
    model, _ = files
    assert [t.name for t in open_session(model, targets="crossbar").targets] == ["fc0.weight", "fc1.weight"]
    assert len(open_session(model, targets="crossbar", bias=True).targets) == 4


def test_matmul_add_bias_and_batchnorm_targets():
    from onnx import TensorProto, helper, numpy_helper
    f = lambda *s: np.ones(s, np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(f(4, 3), "W"), numpy_helper.from_array(f(3), "b"),
             numpy_helper.from_array(f(3), "scale"), numpy_helper.from_array(f(3), "shift"),
             numpy_helper.from_array(f(3), "mean"), numpy_helper.from_array(f(3), "var")]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("BatchNormalization", ["a", "scale", "shift", "mean", "var"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    roles = {t.name: t.role for t in open_session(model).targets}
    assert roles == {"W": "weight", "b": "bias", "scale": "norm", "shift": "norm"}


def test_gate_and_reports(files):
    model, data = files
    r = ftcompile.validate(model, data, sigma=0.6, samples=10, gate=Gate(min_accuracy=0.99, max_drop=0.9))
    assert r.verdict == "fail" and [c.passed for c in r.checks] == [False, True]
    j = to_json(r)
    assert j["schema"] == SCHEMA and j["mean"] == r.stats.mean and len(j["values"]) == 10
    assert j["model_sha256"] and j["drift"] == "lognormal:0.6" and j["versions"]["onnxruntime"]
    json.dumps(j)
    suite = ET.fromstring(to_junit(r).split("\n", 1)[1])
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    assert "FAIL" in to_markdown(r)
    p5 = ftcompile.validate(model, data, sigma=0.6, samples=10, gate=Gate(min_accuracy=0.0, stat="p5"))
    assert p5.passed and p5.checks[0].value == p5.stats.p5


def test_parse_sigmas():
    assert parse_sigmas("0:0.3:0.1") == [0.0, 0.1, 0.2, 0.3]
    assert parse_sigmas("0.6,0.2") == [0.6, 0.2]


def test_sweep_curves(files):
    model, data = files
    other = model.with_name("other.onnx")
    onnx.save(teacher_mlp(seed=0), other)
    res = ftcompile.sweep([model, other], data, sigmas="0,0.5,1.0", samples=8)
    assert list(res.curves) == ["model", "other"]
    means = [p.mean for p in res.curves["model"]]
    assert means[0] == 1.0 and means[0] > means[1] > means[2]
    # a point's draws depend on its sigma alone (callers sweep one extra sigma and merge it into a curve)
    alone = ftcompile.sweep([model], data, sigmas="0.5", samples=8).curves["model"][0]
    assert alone.sigma == 0.5 and alone.mean == means[1]


def test_sweep_keeps_the_other_terms_and_refuses_what_it_cannot_sweep(files):
    from ftcompile.errors import ConfigError

    model, data = files
    quantized = ftcompile.validate(model, data, drift="quantize:2", samples=2).stats.mean
    assert quantized < 0.9  # two levels per layer really cost accuracy on this model
    res = ftcompile.sweep([model], data, drift="quantize:2,lognormal:0.6", sigmas="0,0.6", samples=4)
    first, second = res.curves["model"]
    assert res.vary == "lognormal" and first.drift == "quantize:2,lognormal:0"
    assert first.mean == quantized  # sigma 0 of the lognormal term is quantization alone, not clean
    assert second.drift == "quantize:2,lognormal:0.6"
    for spec, needle in (("stuck-at:0.1:0", "no sigma"), ("quantize:4", "no sigma"),
                         ("gaussian:0.1,lognormal:0.6", "--vary")):
        with pytest.raises(ConfigError, match=needle):
            ftcompile.sweep([model], data, drift=spec, sigmas="0,0.5", samples=2)
    mixed = ftcompile.sweep([model], data, drift="gaussian:0.1,lognormal:0.6", sigmas="0,0.5", samples=2,
                            vary="lognormal").curves["model"]
    assert [p.drift for p in mixed] == ["gaussian:0.1,lognormal:0", "gaussian:0.1,lognormal:0.5"]
    assert mixed[0].mean < 1.0  # the gaussian term stays on at sigma 0
    with pytest.raises(ConfigError, match="--vary wobble"):
        ftcompile.sweep([model], data, drift="lognormal:0.6", sigmas="0", samples=2, vary="wobble")


def test_one_sample_report_is_strict_json_and_names_both_intervals(files, tmp_path):
    model, data = files
    r = ftcompile.validate(model, data, samples=1)
    text = json.dumps(to_json(r), allow_nan=False)  # raises on NaN or infinity

    def refuse(token):
        raise AssertionError(f"non-JSON constant {token}")

    report = json.loads(text, parse_constant=refuse)
    assert report["drift_ci_low"] is None and report["total_ci_low"] is None and "2 drift samples" in report["ci_note"]
    many = to_json(ftcompile.validate(model, data, samples=8))
    assert many["total_ci_low"] < many["drift_ci_low"] <= many["mean"] <= many["drift_ci_high"] < many["total_ci_high"]
    md = to_markdown(ftcompile.validate(model, data, samples=8))
    assert "drift + examples" in md and "drift only" in md


def test_gate_on_total_lower_bound_and_its_refusal_for_a_user_metric(files):
    from ftcompile.errors import ConfigError

    model, data = files
    r = ftcompile.validate(model, data, sigma=0.6, samples=10, gate=Gate(min_accuracy=0.5, stat="total_ci_low"))
    assert r.checks[0].value == r.stats.total_ci_low and r.checks[0].value < r.stats.mean
    with pytest.raises(ConfigError, match="total_ci_low cannot be computed"):
        ftcompile.validate(model, data, samples=4, metric=lambda out, y: float((out.argmax(1) == y).mean()),
                           gate=Gate(min_accuracy=0.5, stat="total_ci_low"))
