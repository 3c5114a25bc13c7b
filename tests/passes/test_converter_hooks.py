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
    handles = attach_converters(imported.module, imported.sources, imported.onnx_model, ranges, spec)
    return imported, ranges, spec, handles, x


@pytest.mark.parametrize("bits", [3, 8])
def test_hooks_compute_the_twin(bits):
    imported, ranges, spec, handles, x = _hooked(bits)
    assert len(handles) == 2 * 3  # a DAC and an ADC on each of the three layers
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
    for h in handles:
        h.remove()
    with torch.no_grad():
        np.testing.assert_allclose(imported.module(torch.from_numpy(x)).numpy(), digital, atol=1e-4)


def test_adc_output_takes_2_pow_b_levels_and_gradients_pass_straight_through():
    imported, ranges, spec, handles, x = _hooked(3)
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
    assert json.loads(meta["ftcompile.converters"]) == {"dac_bits": 4, "adc_bits": 4}
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
