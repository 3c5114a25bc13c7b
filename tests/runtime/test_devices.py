"""Device physics: each equation against its closed form (Monte-Carlo error bounds), the presets as drift
models, compensation, numpy/torch agreement of the shared equations."""
import math

import numpy as np
import pytest
import torch

from ftcompile.errors import ConfigError
from ftcompile.runtime.devices import physics
from ftcompile.runtime.devices.models import PCMDrift, parse_time
from ftcompile.runtime.drift import parse_drift

N = 200_000


def _z(seed, n=N):
    return np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("g_t", [5.0, 12.5, 20.0])
def test_pcm_programming_mean_and_spread(g_t):
    g = physics.pcm_program(np.full(N, g_t), _z(0))
    s_p = 0.26348 + 1.9650 * g_t / 25 - 1.1731 * (g_t / 25) ** 2
    assert abs(g.mean() - g_t) < 4 * s_p / math.sqrt(N)
    assert abs(g.std() / s_p - 1) < 4 / math.sqrt(2 * N)


@pytest.mark.parametrize("g_t,t", [(20.0, 86400.0), (5.0, 3.15e7)])
def test_pcm_drift_decays_by_the_median_exponent(g_t, t):
    g_t_arr = np.full(N, g_t)
    nu = physics.pcm_drift_exponent(g_t_arr, _z(1))
    mu, s = (float(v[0]) for v in physics.pcm_drift_exponent_moments(g_t_arr[:1]))
    assert abs(nu.mean() - mu) < 4 * s / math.sqrt(N) and abs(nu.std() / s - 1) < 0.02  # |.| rarely folds here
    ratio = physics.pcm_drifted(np.ones(N), nu, t) / 1.0
    assert np.median(ratio) == pytest.approx(((t + 20) / 20) ** -mu, rel=0.01)


def test_pcm_read_noise_spread():
    g_p = np.full(N, 10.0)
    t = 3600.0
    g = physics.pcm_read(g_p, g_p, _z(2), t)
    q = min(0.0088 / (10 / 25) ** 0.65, 0.2)
    want = q * math.sqrt(math.log((t + 20 + 250e-9) / (2 * 250e-9)))
    assert abs((g / 10 - 1).std() / want - 1) < 4 / math.sqrt(2 * N)


def test_pcm_at_g_max_50_follows_the_published_model():
    """Nandakumar et al. 2019 / Joshi et al. 2020 at g_max = 50 uS, computed by hand: the programming-noise
    polynomial is in uS for a 25 uS range, so at 50 uS it doubles (aihwkit: ``sig_prog *= g_max / 25``); the drift
    exponent and the relative read noise depend on g / g_max only."""
    g_max, g_t = 50.0, 2.5                      # g_r = 0.05
    s_p = (50 / 25) * (0.26348 + 1.9650 * 0.05 - 1.1731 * 0.05 ** 2)   # = 2 * 0.3587972 = 0.7175945 uS
    mu_nu = -0.0155 * math.log(0.05) + 0.0244                          # = 0.070834, inside [0.049, 0.1]
    s_nu = -0.0125 * math.log(0.05) - 0.0059                           # = 0.031547, inside [0.008, 0.045]
    t = 86400.0                                 # read noise of a device programmed at 5 uS (g_r = 0.1), 1 day
    q_rel = 0.0088 / 0.1 ** 0.65 * math.sqrt(math.log((t + 20 + 250e-9) / (2 * 250e-9)))  # = 0.039308 * 5.0868
    assert s_p == pytest.approx(0.7175945, rel=1e-6) and q_rel == pytest.approx(0.19995, rel=1e-4)

    g = physics.pcm_program(np.full(N, g_t), _z(7), g_max)
    assert abs(g.mean() - g_t) < 4 * s_p / math.sqrt(N) and abs(g.std() / s_p - 1) < 4 / math.sqrt(2 * N)
    nu = physics.pcm_drift_exponent(np.full(N, g_t), _z(8), g_max)
    # nu = |mu + s z| (aihwkit takes the absolute value): the folded normal's mean and std
    fold = (mu_nu * math.erf(mu_nu / (s_nu * math.sqrt(2)))
            + s_nu * math.sqrt(2 / math.pi) * math.exp(-mu_nu ** 2 / (2 * s_nu ** 2)))
    fold_sd = math.sqrt(mu_nu ** 2 + s_nu ** 2 - fold ** 2)
    assert abs(nu.mean() - fold) < 4 * fold_sd / math.sqrt(N) and abs(nu.std() / fold_sd - 1) < 4 / math.sqrt(N)
    r = physics.pcm_read(np.full(N, 5.0), np.full(N, 5.0), _z(9), t, g_max)
    assert abs((r / 5 - 1).std() / q_rel - 1) < 4 / math.sqrt(2 * N)


def test_a_pcm_weight_spreads_the_same_at_any_g_max():
    """The weight read back from the pair does not depend on the unit the chip stores it in: at g_max 50 the
    weights spread as at 25 (before the g_max / 25 factor, half as much)."""
    w = np.tile(np.array([1.0, 0.5, -0.2, 0.0], np.float32), 50_000)
    spread = {g: (PCMDrift(3600.0, g_max=g).apply(w, np.random.default_rng(10)) - w).reshape(-1, 4).std(0)
              for g in (25.0, 50.0)}
    np.testing.assert_allclose(spread[50.0], spread[25.0], rtol=0.02)


@pytest.mark.parametrize("spec", ["reram-wan2022:1d,g_max=0", "reram-wan2022:1s,g_max=-40", "pcm:1d,g_max=0",
                                  "pcm:1d,g_max=nan"])
def test_a_device_refuses_g_max_at_or_below_zero(spec):
    with pytest.raises(ConfigError, match=r"g_max=\S+ must be a conductance > 0 \(uS\)"):
        parse_drift(spec)


def test_reram_spread_scales_with_g_max():
    coeffs = physics.RERAM_WAN2022[86400.0]
    s40 = sum(c * 0.5 ** k for k, c in enumerate(coeffs))     # at g_r = 0.5 (uS at the fitted 40 uS range)
    assert physics.reram_sigma(np.float64(20.0), coeffs) == pytest.approx(s40)
    assert physics.reram_sigma(np.float64(40.0), coeffs, g_max=80.0) == pytest.approx(2 * s40)


@pytest.mark.parametrize("t", [1.0, 86400.0, 172800.0])
def test_reram_spread_follows_the_wan2022_fit(t):
    g_t = 16.0
    coeffs = physics.RERAM_WAN2022[t]
    g = physics.reram_read(np.full(N, g_t), _z(3), coeffs)
    s = sum(c * (g_t / 40) ** k for k, c in enumerate(coeffs))
    assert abs(g.mean() - g_t) < 4 * s / math.sqrt(N) and abs(g.std() / s - 1) < 4 / math.sqrt(2 * N)


def test_global_compensation_restores_the_mean_readout_at_one_year():
    w = np.random.default_rng(4).standard_normal((256, 128)).astype(np.float32)
    readout = lambda m: np.abs(m).sum()  # noqa: E731  (what the compensation reads: the one-hot inputs)
    raw = [readout(PCMDrift(parse_time("1y")).apply(w, np.random.default_rng(k))) for k in range(20)]
    comp = [readout(PCMDrift(parse_time("1y"), comp="global").apply(w, np.random.default_rng(k))) for k in range(20)]
    assert np.mean(raw) < 0.75 * readout(w)                      # a year of drift loses a quarter or more
    assert abs(np.mean(comp) / readout(w) - 1) < 0.02            # compensation brings it back within 2%
    rows = lambda m: np.abs(m).sum(1)  # noqa: E731  per-output read-outs
    col = PCMDrift(parse_time("1y"), comp="column").apply(w, np.random.default_rng(0))
    raw0 = PCMDrift(parse_time("1y")).apply(w, np.random.default_rng(0))
    assert np.median(np.abs(rows(col) - rows(w))) < 0.5 * np.median(np.abs(rows(raw0) - rows(w)))


def test_differential_pair_reads_back_the_weights_without_noise():
    w = np.random.default_rng(5).standard_normal((8, 9))
    scale = np.abs(w).max()
    gp, gm = physics.differential_targets(w, scale, 25.0)
    assert gp.max() == pytest.approx(25.0) and (gp * gm == 0).all()
    np.testing.assert_allclose(physics.differential_weights(gp, gm, scale, 25.0), w, rtol=1e-12)
    d = PCMDrift(parse_time("1s"), prog_scale=0, drift_scale=0, read_scale=0)
    np.testing.assert_allclose(d.apply(w.astype(np.float32), np.random.default_rng(0)), w, rtol=1e-5, atol=1e-6)


def test_the_equations_agree_on_numpy_and_torch():
    g = np.linspace(0, 25, 101)
    z = np.random.default_rng(6).standard_normal(101)
    gt, zt = torch.from_numpy(g), torch.from_numpy(z)
    for fn in (lambda a, b: physics.pcm_program(a, b), lambda a, b: physics.pcm_drift_exponent(a, b),
               lambda a, b: physics.pcm_read(a, a, b, 86400.0),
               lambda a, b: physics.reram_read(a, b, physics.RERAM_WAN2022[1.0])):
        np.testing.assert_allclose(fn(gt, zt).numpy(), fn(g, z), rtol=1e-12)


def test_specs_times_and_errors():
    assert parse_time("30s") == 30 and parse_time("1h") == 3600 and parse_time("1d") == 86400
    assert parse_time("1mo") == 30 * 86400 and parse_time("10m") == parse_time("10min") == 600
    assert parse_drift("pcm:1h,g_max=25,prog_scale=1,drift_scale=1").spec() == "pcm:1h"
    assert parse_drift("pcm:1y,comp=global").spec() == "pcm:1y,comp=global"
    assert parse_drift("quantize:16,reram-wan2022:1d").spec() == "quantize:16,reram-wan2022:1d"
    for spec, needle in (("reram-wan2022:3d", "1s, 1d, 2d"), ("pcm:soon", "malformed"), ("pcm:1d,comp=magic", "comp"),
                         ("pcm:1d,wobble=2", "bad arguments"), ("comp=global", "follow a term")):
        with pytest.raises(ConfigError, match=needle):
            parse_drift(spec)


def test_validate_runs_a_device_preset(tmp_path):
    import ftcompile
    from tests.helpers import teacher_files

    model, data = teacher_files(tmp_path)
    early = ftcompile.validate(model, data, drift="pcm:1s", samples=5, targets="crossbar")
    late = ftcompile.validate(model, data, drift="pcm:1y", samples=5, targets="crossbar")
    fixed = ftcompile.validate(model, data, drift="pcm:1y,comp=global", samples=5, targets="crossbar")
    assert late.drift == "pcm:1y" and late.drifting_tensors == 2
    assert early.stats.mean > late.stats.mean and fixed.stats.mean > late.stats.mean


def test_sweep_over_time_since_programming(tmp_path):
    import json

    from typer.testing import CliRunner

    import ftcompile
    from ftcompile.cli import app
    from tests.helpers import teacher_files

    model, data = teacher_files(tmp_path)
    res = ftcompile.sweep([model], data, times="1s,1d,1y", drift="pcm:1s,comp=global", samples=4, targets="crossbar")
    pts = res.curves["model"]
    assert res.axis == "t" and [p.x for p in pts] == [1.0, 86400.0, 365 * 86400.0]
    assert [p.drift for p in pts] == ["pcm:1s,comp=global", "pcm:1d,comp=global", "pcm:1y,comp=global"]
    r = CliRunner().invoke(app, ["sweep", str(model), "--data", str(data), "--times", "1s,1h,1y", "--samples", "3",
                                 "--plot", str(tmp_path / "t.png"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["axis"] == "t" and out["drift"] == "pcm:1s" and (tmp_path / "t.png").exists()
    bad = CliRunner().invoke(app, ["sweep", str(model), "--data", str(data), "--times", "1s,1d",
                                   "--drift", "lognormal:0.5"])
    assert bad.exit_code == 2 and "no time" in bad.output


def test_compensation_flag_sets_the_device_terms_and_is_refused_without_one(tmp_path):
    import json

    from typer.testing import CliRunner

    from ftcompile.cli import app
    from tests.helpers import teacher_files

    model, data = teacher_files(tmp_path)
    r = CliRunner().invoke(app, ["validate", str(model), "--data", str(data), "--drift", "pcm:1d", "--compensation",
                                 "global", "--samples", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["drift"] == "pcm:1d,comp=global"
    bad = CliRunner().invoke(app, ["validate", str(model), "--data", str(data), "--drift", "gaussian:0.1",
                                   "--compensation", "global"])
    assert bad.exit_code == 2 and "no term that drift compensation acts on" in bad.output
    wrong = CliRunner().invoke(app, ["validate", str(model), "--data", str(data), "--drift", "pcm:1d",
                                     "--compensation", "sometimes"])
    assert wrong.exit_code == 2 and "comp='sometimes'" in wrong.output


def test_converters_have_exactly_two_to_the_b_levels_and_the_twin_runs_in_plain_onnxruntime(tmp_path):
    import onnx
    import onnxruntime as ort
    from typer.testing import CliRunner

    import ftcompile
    from ftcompile.cli import app
    from ftcompile.passes.converters import ConverterSpec, calibrate, insert_converters
    from tests.helpers import teacher_files, teacher_mlp

    model, data = teacher_files(tmp_path)
    x, y = np.load(data)["x"], np.load(data)["y"]
    ramp = np.linspace(-10, 10, 4000, dtype=np.float32).reshape(250, 16)  # beyond the calibrated range too
    ranges = calibrate(teacher_mlp(), [{"x": x}])
    for bits in (2, 3, 8):
        twin = insert_converters(teacher_mlp(), ranges, ConverterSpec(bits, None))
        dac = [o for o in twin.graph.node if o.name == "ftcompile_dac_0_add"][0].output[0]
        twin.graph.output.append(onnx.helper.make_tensor_value_info(dac, onnx.TensorProto.FLOAT, None))
        levels = ort.InferenceSession(twin.SerializeToString()).run([dac], {"x": ramp})[0]
        assert len(np.unique(levels)) == 2 ** bits
        assert levels.min() == pytest.approx(ranges["fc0:in"][0]) and levels.max() == pytest.approx(ranges["fc0:in"][1])
    out = tmp_path / "twin.onnx"
    r = CliRunner().invoke(app, ["export-twin", str(model), "--calibrate-on", str(data), "-o", str(out),
                                 "--dac-bits", "4", "--adc-bits", "4"])
    assert r.exit_code == 0, r.output
    twin = onnx.load(out)
    got = ort.InferenceSession(twin.SerializeToString()).run(None, {"x": x})[0]
    assert 0.5 < (got.argmax(1) == y).mean() < 1.0  # 4-bit converters cost accuracy, the model still works
    fine = ftcompile.validate(model, data, drift="lognormal:0.01", samples=2, dac_bits=16, adc_bits=16)
    coarse = ftcompile.validate(model, data, drift="lognormal:0.01", samples=2, dac_bits=2, adc_bits=2)
    assert fine.stats.mean > 0.97 and coarse.stats.mean < fine.stats.mean and coarse.converters.startswith("dac 2")


@pytest.mark.parametrize("spec", ["pcm:1y", "pcm:1d,comp=global", "reram-wan2022:1d"])
def test_device_reads_have_finite_gradients_where_devices_sit_at_zero(spec):
    """Hardware-aware training differentiates through the physics; the device of each pair targeted at 0 (every
    weight's other half) must not give an infinite local derivative (it made training NaN)."""
    torch = pytest.importorskip("torch")

    w = torch.tensor([[0.5, -0.25, 0.0, 1e-9], [-1.0, 0.0, 0.3, 0.0]], requires_grad=True)
    for seed in range(5):
        with torch.autograd.detect_anomaly():  # raises on a NaN anywhere in the backward, not only at the end
            out = parse_drift(spec).apply_torch(w, torch.Generator().manual_seed(seed))
            (grad,) = torch.autograd.grad(out.sum(), w)
        assert torch.isfinite(grad).all(), (spec, seed, grad)
