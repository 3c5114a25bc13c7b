"""The analog twin is calibrated once: a hardened model stores its converter ranges and every later twin reuses
them; other data calibrates only when asked, and the reports say which. Its read noise is keyed like the drift."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import ConfigError
from ftcompile.metadata import get_metadata, set_metadata
from ftcompile.passes.converters import TWIN_METADATA, stored_calibration
from tests.helpers import teacher_files


def _split(tmp_path, n=300):
    model, data = teacher_files(tmp_path, n=n)
    d = np.load(data)
    halves = {}
    for name, sl in (("a", slice(0, n // 2)), ("b", slice(n // 2, n))):
        halves[name] = tmp_path / f"{name}.npz"
        np.savez(halves[name], x=d["x"][sl], y=d["y"][sl])
    # the b half shifted: its input ranges differ from a's, so calibrating on it gives other ranges
    np.savez(halves["b"], x=3 * d["x"][n // 2:], y=d["y"][n // 2:])
    return model, halves["a"], halves["b"]


def test_stored_ranges_are_reused_and_other_data_calibrates_only_when_asked(tmp_path):
    model, a, b = _split(tmp_path)
    on_a = ftcompile.api.calibrate_on_data(model, a)
    on_b = ftcompile.api.calibrate_on_data(model, b)
    assert on_a.ranges != on_b.ranges
    # a plain model stores none: validate calibrates on the data it measures, and says so
    plain = ftcompile.validate(model, b, sigma=0.2, samples=2, dac_bits=6, adc_bits=6)
    assert plain.calibration.startswith("calibrated on measured data") and "b.npz" in plain.calibration
    # a model that stores ranges (as harden writes them) is measured at those ranges, whatever data it reads
    stored = onnx.load(model)
    set_metadata(stored, {TWIN_METADATA: {"dac_bits": 6, "adc_bits": 6, "adc_noise": 0.0, "ranges": on_a.ranges,
                                          "calibrated_on": on_a.source}})
    onnx.save(stored, tmp_path / "stored.onnx")
    assert stored_calibration(stored).ranges == on_a.ranges
    kept = ftcompile.validate(tmp_path / "stored.onnx", b, sigma=0.2, samples=2, dac_bits=6, adc_bits=6)
    assert kept.calibration == f"stored in the model, calibrated on {on_a.source}"
    same = ftcompile.validate(model, b, sigma=0.2, samples=2, dac_bits=6, adc_bits=6, calibrate_on=a)
    assert same.values == kept.values and same.clean == kept.clean  # a's ranges, not b's
    assert plain.values != kept.values
    asked = ftcompile.validate(tmp_path / "stored.onnx", b, sigma=0.2, samples=2, dac_bits=6, adc_bits=6,
                               calibrate_on=b)
    assert asked.values == plain.values and asked.calibration.startswith("calibrated on calibration data")
    # export-twin: the stored ranges by default, recorded with their origin; a plain model needs data
    cal = ftcompile.api.export_twin(tmp_path / "stored.onnx", tmp_path / "twin.onnx", dac_bits=6, adc_bits=6)
    twin = get_metadata(onnx.load(tmp_path / "twin.onnx"))[TWIN_METADATA]
    assert cal.stored and {k: tuple(v) for k, v in twin["ranges"].items()} == on_a.ranges
    assert twin["calibrated_on"] == on_a.source
    with pytest.raises(ConfigError, match="stores no converter ranges"):
        ftcompile.api.export_twin(model, tmp_path / "t2.onnx")
    r = CliRunner().invoke(app, ["export-twin", str(model), "-o", str(tmp_path / "t3.onnx"), "--calibrate-on", str(b)])
    assert r.exit_code == 0 and "calibrated on calibration data" in r.output, r.output


def test_validate_report_names_the_calibration(tmp_path):
    model, a, b = _split(tmp_path)
    report = tmp_path / "r.json"
    r = CliRunner().invoke(app, ["validate", str(model), "--data", str(b), "--sigma", "0.2", "--samples", "2",
                                 "--dac-bits", "6", "--adc-bits", "6", "--calibrate-on", str(a),
                                 "--report", str(report)])
    assert r.exit_code == 0, r.output
    got = json.loads(report.read_text())
    assert got["calibration"].startswith("calibrated on calibration data") and "a.npz" in got["calibration"]
    assert got["converters"] == "dac 6 bits, adc 6 bits"


def test_read_noise_is_keyed_by_sample_and_layer_whatever_the_batch(tmp_path):
    model, a, b = _split(tmp_path)
    kw = dict(sigma=0.2, samples=3, seed=5, adc_bits=12, adc_noise=0.05, calibrate_on=a)
    one = ftcompile.validate(model, a, batch_size=1024, **kw)
    small = ftcompile.validate(model, a, batch_size=7, **kw)
    assert one.values == small.values and one.clean == small.clean  # the same noise per example, any batching
    again = ftcompile.validate(model, a, batch_size=1024, **kw)
    assert again.values == one.values
    other = ftcompile.validate(model, a, batch_size=1024, **{**kw, "seed": 6})
    assert other.values != one.values
    quiet = ftcompile.validate(model, a, batch_size=1024, **{**kw, "adc_noise": 0.0})
    assert quiet.values != one.values  # the noise is read
