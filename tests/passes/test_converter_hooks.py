"""Converters inside training: hooks that compute what the analog twin computes, with straight-through gradients."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

import onnxruntime as ort  # noqa: E402

import ftcompile  # noqa: E402
from ftcompile.errors import ConfigError  # noqa: E402
from ftcompile.frontend import import_onnx  # noqa: E402
from ftcompile.passes.converter_hooks import attach_converters  # noqa: E402
from ftcompile.passes.converters import ConverterSpec, calibrate, insert_converters  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402
from tests.helpers import teacher_files, teacher_mlp  # noqa: E402


def _hooked(bits: int):
    model = teacher_mlp((16, 32, 32, 4))
    x = np.random.default_rng(0).standard_normal((256, 16)).astype(np.float32)
    imported = import_onnx(model)
    ranges = calibrate(imported.onnx_model, [{"x": x}])
    spec = ConverterSpec(bits, bits)
    hooks = attach_converters(imported.module, imported.sources, imported.onnx_model, ranges, spec)
    return imported, ranges, spec, hooks, x


@pytest.mark.parametrize("bits", [3, 8])
def test_hooks_compute_the_twin(bits):
    imported, ranges, spec, hooks, x = _hooked(bits)
    assert len(hooks.handles) == 2 * 3 and not hooks.noisy  # a DAC and an ADC on each of the three layers
    twin = insert_converters(imported.onnx_model, ranges, spec, expose_weights=False)
    want = ort.InferenceSession(twin.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        got = imported.module(torch.from_numpy(x)).numpy()
    # the same formula on both sides; a float difference may move a value across a rounding boundary rarely
    close = np.isclose(got, want, atol=1e-4).mean()
    assert close > 0.99
    digital = ort.InferenceSession(imported.onnx_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert not np.allclose(got, digital, atol=1e-3)  # the hooks did quantize
    hooks.remove()
    with torch.no_grad():
        np.testing.assert_allclose(imported.module(torch.from_numpy(x)).numpy(), digital, atol=1e-4)


def test_adc_output_takes_2_pow_b_levels_and_gradients_pass_straight_through():
    imported, ranges, spec, hooks, x = _hooked(3)
    first = imported.module.get_submodule(next(n for n, m in imported.module.named_modules()
                                                if isinstance(m, torch.nn.Linear)))
    seen = {}
    first.register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    xt = torch.from_numpy(x).requires_grad_(True)
    imported.module(xt).sum().backward()
    levels = torch.unique(seen["out"].detach() - first.bias.detach()).numel()
    assert levels <= 2 ** 3
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0


def test_harden_trains_with_converters_and_signs_off_on_the_twin(tmp_path):
    model, data = teacher_files(tmp_path, n=300)
    cfg = HardenConfig(sigma=0.3, method="noise-injection", final_epochs=2, samples=2, dac_bits=4, adc_bits=4)
    r = ftcompile.harden(model, data, data, out=tmp_path / "q.onnx", config=cfg, validate_samples=2, plot=False)
    assert r.after.converters == r.before.converters == "dac 4 bits, adc 4 bits"
    meta = {p.key: p.value for p in onnx.load(tmp_path / "q.onnx").metadata_props}
    twin = json.loads(meta["ftcompile.analog_twin"])
    assert (twin["dac_bits"], twin["adc_bits"], twin["adc_noise"]) == (4, 4, 0.0)
    # calibrated once, on the training data, and both validations ran at those ranges
    want = ftcompile.api.calibrate_on_data(model, data, role="training")
    assert twin["ranges"] == {k: list(v) for k, v in want.ranges.items()} and "training data" in twin["calibrated_on"]
    assert r.before.calibration == r.after.calibration == r.calibration == want.describe()
    assert not any("ftcompile_dac" in n.name for n in onnx.load(tmp_path / "q.onnx").graph.node)  # digital model
    plain = ftcompile.harden(model, data, data, out=tmp_path / "p.onnx", plot=False, validate_samples=2,
                             config=HardenConfig(sigma=0.3, method="noise-injection", final_epochs=2, samples=2))
    assert r.torch_before != plain.torch_before  # the torch objective ran through the 4-bit converters
    with pytest.raises(ConfigError, match="--dac-bits 0 must be between 1 and 24"):
        HardenConfig(dac_bits=0)


def test_calibration_in_row_slices_finds_the_same_ranges():
    model = teacher_mlp((16, 32, 4))
    x = np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32)
    whole = calibrate(model, [{"x": x}], rows=10**6)
    assert calibrate(model, [{"x": x}], rows=7) == whole  # 8 slices, min/max over all of them
    assert calibrate(model, [{"x": x[:7]}], rows=7) != whole  # what one slice alone would give


def _one_layer():
    """A bias-free Gemm (8 -> 64), inputs, its ranges: the ADC sees the product directly."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 64)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], "one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((512, 8)).astype(np.float32)
    return model, x, calibrate(model, [{"x": x}])


def test_adc_output_noise_has_the_asked_spread_per_read_and_repeats_per_session():
    model, x, ranges = _one_layer()
    bound = ranges["fc:out"][1]
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])  # noqa: E731
    quiet = run(insert_converters(model, ranges, ConverterSpec(None, 16), expose_weights=False)).run(None, {"x": x})[0]
    noisy_model = insert_converters(model, ranges, ConverterSpec(None, 16, adc_noise=0.02), expose_weights=False)
    session = run(noisy_model)
    first, second = (session.run(None, {"x": x})[0] for _ in range(2))
    inside = np.abs(quiet) < 0.8 * bound  # away from the clip
    spread = (first - quiet)[inside].std() / bound
    assert abs(spread - 0.02) < 0.02 * 0.05  # the std is adc_noise of the bound (16-bit steps are 1.5e-5 of it)
    assert abs((first - quiet)[inside].mean()) < 0.02 * bound * 0.05
    assert not np.allclose(first, second)  # every read draws new noise
    np.testing.assert_array_equal(run(noisy_model).run(None, {"x": x})[0], first)  # a fresh session repeats


def test_adc_noise_in_training_hooks_matches_the_twin_spread_and_passes_gradients():
    model, x, ranges = _one_layer()
    imported = import_onnx(model)
    bound = ranges["fc:out"][1]
    attach_converters(imported.module, imported.sources, imported.onnx_model, ranges, ConverterSpec(None, 16, 0.02))
    xt = torch.from_numpy(x).requires_grad_(True)
    out = imported.module(xt)
    clean = torch.from_numpy(x @ onnx.numpy_helper.to_array(model.graph.initializer[0]))
    inside = clean.abs() < 0.8 * bound
    assert abs((out.detach() - clean)[inside].std().item() / bound - 0.02) < 0.02 * 0.05
    (grad,) = torch.autograd.grad(out[inside].sum(), xt)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_adc_noise_errors_and_validate_reports_it(tmp_path):
    from typer.testing import CliRunner

    from ftcompile.cli import app

    with pytest.raises(ConfigError, match="give --adc-bits"):
        ConverterSpec(8, None, adc_noise=0.01)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        ConverterSpec(8, 8, adc_noise=-0.1)
    with pytest.raises(ConfigError, match="give --adc-bits"):
        HardenConfig(adc_noise=0.1)  # refused before any work
    model, data = teacher_files(tmp_path)
    r = CliRunner().invoke(app, ["validate", str(model), "--data", str(data), "--adc-noise", "0.01", "--samples", "2"])
    assert r.exit_code == 2 and "give --adc-bits too" in r.output
    quiet = ftcompile.validate(model, data, drift="lognormal:0.01", samples=3, adc_bits=12)
    loud = ftcompile.validate(model, data, drift="lognormal:0.01", samples=3, adc_bits=12, adc_noise=0.3)
    assert "output noise 0.3" in loud.converters and "noise" not in quiet.converters
    assert loud.stats.mean < quiet.stats.mean - 0.05  # noise at 30% of the bound costs accuracy
