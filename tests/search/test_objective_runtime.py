"""The search's objective drifts what the sign-off drifts, with the same draws: on the same data and seed, the torch
objective equals the runtime's ``validate``, on every path (imported ONNX with lognormal, compensated and device
drift, transposed weights, the analog twin with read noise, and a detector given as a module)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch.func import functional_call

import ftcompile
from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import import_onnx
from ftcompile.frontend.torch_import import detector_to_onnx
from ftcompile.passes.converter_hooks import attach_converters
from ftcompile.passes.converters import ConverterSpec
from ftcompile.passes.fold_norm import fold_batchnorm
from ftcompile.runtime.drift import draw_sample, parse_drift
from ftcompile.runtime.session import DriftSession
from ftcompile.search.drifting import module_drift_keys, onnx_drift_keys
from ftcompile.search.objective import DetectionObjective, DriftObjective
from tests.helpers import teacher_mlp
from tests.search.detectors import boxes_data, tiny


def matmul_mlp(seed: int = 0) -> onnx.ModelProto:
    """x @ W1 + b1 -> Relu -> Gemm(transB=0): both weights stored (in, out), the transpose of torch's Linear."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.standard_normal((16, 24)).astype(np.float32) / 4, rng.standard_normal(24).astype(np.float32) / 4
    w2, b2 = rng.standard_normal((24, 5)).astype(np.float32) / 5, rng.standard_normal(5).astype(np.float32) / 4
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Add", ["h", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], name="fc2")]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(a, n)
                               for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _data(model: onnx.ModelProto, n: int = 300, seed: int = 1):
    x = np.random.default_rng(seed).standard_normal((n, 16)).astype(np.float32)
    logits = DriftSession(model).run({"x": x}, DriftSession(model).weights)
    return x, logits.argmax(1).astype(np.int64)


@pytest.mark.parametrize("build", [teacher_mlp, matmul_mlp])
@pytest.mark.parametrize("spec,targets", [("lognormal:0.5", "params"), ("lognormal:0.5,comp=global", "params"),
                                          ("lognormal:0.5", "crossbar"), ("pcm:1d", "crossbar"),
                                          ("reram-wan2022:1d", "crossbar")])
def test_the_objective_scores_the_runtime_s_own_draws(build, spec, targets):
    model = build()
    x, y = _data(model)
    imported = import_onnx(model)
    keys = onnx_drift_keys(imported, targets=targets, bias=False)
    assert len(keys) == (2 if targets == "crossbar" else 4)
    assert any(k.transposed for k in keys.values()) == (build is matmul_mlp)
    obj = DriftObjective(imported.module, torch.from_numpy(x), torch.from_numpy(y), drift=parse_drift(spec),
                         samples=6, seed=11, keys=keys)(imported.module)
    run = ftcompile.validate(model, (x, y), drift=spec, samples=6, seed=11, targets=targets)
    # the same weights drawn on both sides: at most one of 300 predictions may flip on float rounding
    assert np.abs(np.array(obj.values) - np.array(run.values)).max() <= 1 / 300
    assert np.mean(obj.values) < 0.99  # the drift does something


def test_the_drifted_logits_are_the_runtime_s():
    model = matmul_mlp()
    x, y = _data(model, n=20)
    imported = import_onnx(model)
    keys = onnx_drift_keys(imported, targets="params", bias=False)
    drift = parse_drift("pcm:1h")
    obj = DriftObjective(imported.module, torch.from_numpy(x), torch.from_numpy(y), drift=drift, samples=2, seed=3,
                         keys=keys)
    params = dict(imported.module.named_parameters())
    session = DriftSession(model)
    for k in range(2):
        got = functional_call(imported.module, {**params, **obj._sample_weights(k, params)}, (torch.from_numpy(x),))
        want = session.run({"x": x}, draw_sample(drift, session.weights, 3, k))
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-4, atol=1e-5)


def test_the_objective_reads_the_twin_s_keyed_read_noise(tmp_path):
    model = teacher_mlp((16, 32, 4))
    x, y = _data(model)
    calibration = ftcompile.api.calibrate_on_data(model, (x, y))
    imported = import_onnx(model)
    spec = ConverterSpec(6, 8, 0.05)
    hooks = attach_converters(imported.module, imported.sources, imported.onnx_model, calibration.ranges, spec)
    twin = ftcompile.api._twin_graph(imported, calibration, type("C", (), {"dac_bits": 6, "adc_bits": 8})())
    keys = onnx_drift_keys(imported, targets="params", bias=False, runtime=twin)
    assert len(keys) == 2  # the twin adds biases digitally: only the weights drift
    obj = DriftObjective(imported.module, torch.from_numpy(x), torch.from_numpy(y), drift=parse_drift("lognormal:0.3"),
                         samples=4, seed=9, keys=keys, converters=hooks)
    assert obj.vectorized is False  # keyed noise is read per sample, in example order
    got = obj(imported.module)
    run = ftcompile.validate(model, (x, y), sigma=0.3, samples=4, seed=9, dac_bits=6, adc_bits=8, adc_noise=0.05,
                             calibration=calibration)
    assert np.abs(np.array(got.values) - np.array(run.values)).max() <= 2 / 300
    quiet = ftcompile.validate(model, (x, y), sigma=0.3, samples=4, seed=9, dac_bits=6, adc_bits=8,
                               calibration=calibration)
    assert quiet.values != run.values  # the noise matters, so matching it is not luck


def test_a_detector_s_objective_drifts_the_folded_tensors_the_sign_off_drifts():
    module = tiny()
    with torch.no_grad():  # trained-looking BatchNorm statistics and affines, so folding changes the tensors
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.3, 0.3)
    d = boxes_data(6, 0)
    x = torch.from_numpy(d["x"])
    before = module(x[:2])
    unfolded = detector_to_onnx(module, x[:1])
    with pytest.raises(UnsupportedModelError, match="none of the module's parameters"):
        import copy  # exported as torch folds by default: the folded biases are no parameter of the module

        module_drift_keys(copy.deepcopy(module), _default_export(module, x[:1]), targets="params", bias=False)
    folded = fold_batchnorm(module, unfolded)
    assert len(folded) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in tiny().modules())
    after = module(x[:2])
    for a, b in zip(before, after):
        torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
    source = detector_to_onnx(module, x[:1])
    assert not any(n.op_type == "BatchNormalization" for n in source.graph.node)
    keys = module_drift_keys(module, source, targets="params", bias=False)
    drift = parse_drift("lognormal:0.3")
    obj = DetectionObjective(module, x, None, drift=drift, samples=2, seed=5, metric=lambda p, t: 0.0, keys=keys)
    params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
    session = DriftSession(source, task="detection")
    assert {k.name for k in keys.values()} == {t.name for t in session.targets}  # the same tensors drift
    for k in range(2):
        got = functional_call(module, {**params, **buffers, **obj._sample_weights(k, params)}, (x[:1],))[0]
        boxes, scores, labels = session.run_all({"x": d["x"][:1]}, draw_sample(drift, session.weights, 5, k))
        np.testing.assert_allclose(got["scores"].detach().numpy(), scores, rtol=1e-3, atol=1e-5)


def _default_export(module, example):
    """torch's default export (BatchNorm folded into the convolutions), as the module path used to write."""
    import io

    buf = io.BytesIO()
    torch.onnx.export(module.eval(), (example,), buf, dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["boxes", "scores", "labels"])
    return onnx.load_from_string(buf.getvalue())
