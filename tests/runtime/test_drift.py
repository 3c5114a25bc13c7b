"""Statistical checks of every drift model (fixed seeds; each can fail)."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from ftcompile.errors import ConfigError
from ftcompile.runtime.drift import (
    CompositeDrift, GaussianDrift, LogNormalDrift, QuantizeDrift, StuckAtDrift, draw_sample, parse_drift,
    register_drift, sigma_of, tensor_rng, with_sigma,
)


def ks_statistic(x, cdf):
    x = np.sort(x)
    n = len(x)
    f = np.array([cdf(v) for v in x])
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


@pytest.mark.parametrize("sigma", [0.2, 0.6, 1.0])
def test_lognormal_log_moments(sigma):
    w = np.random.default_rng(1).uniform(0.1, 2.0, 200_000).astype(np.float32) * np.where(
        np.arange(200_000) % 2, 1, -1)
    theta = np.log(LogNormalDrift(sigma).apply(w, tensor_rng(0, 0, "w")) / w)
    assert abs(theta.mean()) < 4 * sigma / math.sqrt(len(w))
    assert abs(theta.std() / sigma - 1) < 0.01
    # sign is preserved: a conductance never changes polarity
    assert np.all(np.sign(LogNormalDrift(sigma).apply(w, tensor_rng(0, 1, "w"))) == np.sign(w))


def test_lognormal_ks_against_normal():
    theta = np.log(LogNormalDrift(0.6).apply(np.ones(4000, np.float32), tensor_rng(3, 0, "w")))
    d = ks_statistic(theta, NormalDist(0, 0.6).cdf)
    assert d < 1.36 / math.sqrt(4000)  # 5% critical value
    # and the test has power: the wrong sigma is rejected
    assert ks_statistic(theta, NormalDist(0, 0.5).cdf) > 1.36 / math.sqrt(4000)


def test_gaussian_relative_to_layer_range():
    w = np.random.default_rng(2).standard_normal(100_000).astype(np.float32)
    noise = GaussianDrift(0.1).apply(w, tensor_rng(0, 0, "w")) - w
    assert abs(noise.std() / (0.1 * np.abs(w).max()) - 1) < 0.02
    assert abs(noise.mean()) < 0.002 * np.abs(w).max()


def test_stuck_at_rates():
    w = np.random.default_rng(3).standard_normal(100_000).astype(np.float32)
    out = StuckAtDrift(0.05, 0.02).apply(w, tensor_rng(0, 0, "w"))
    n = len(w)
    off = np.mean(out == 0)
    on = np.mean(np.abs(out) == np.abs(w).max()) - 1 / n
    assert abs(off - 0.05) < 4 * math.sqrt(0.05 * 0.95 / n)
    assert abs(on - 0.02) < 4 * math.sqrt(0.02 * 0.98 / n)
    untouched = (out != 0) & (np.abs(out) != np.abs(w).max())
    assert np.array_equal(out[untouched], w[untouched])


def test_quantize_levels_and_error():
    w = np.random.default_rng(4).standard_normal(10_000).astype(np.float32)
    q = QuantizeDrift(16).apply(w, None)
    assert len(np.unique(q)) <= 16
    step = (w.max() - w.min()) / 15
    assert np.max(np.abs(q - w)) <= step / 2 + 1e-6
    assert np.array_equal(q, QuantizeDrift(16).apply(w, None))  # deterministic


def test_samples_are_order_and_subset_independent():
    weights = {f"t{i}": np.ones((50, 20), np.float32) for i in range(3)}
    d = LogNormalDrift(0.5)
    a = [draw_sample(d, weights, 7, k) for k in (0, 1, 2)]
    b = [draw_sample(d, weights, 7, k) for k in (2, 1, 0)][::-1]
    for x, y in zip(a, b):
        assert all(np.array_equal(x[n], y[n]) for n in weights)
    only = draw_sample(d, weights, 7, 1, only=["t1"])
    assert np.array_equal(only["t1"], a[1]["t1"]) and np.array_equal(only["t0"], weights["t0"])
    assert not np.array_equal(a[0]["t0"], a[1]["t0"])
    assert not np.array_equal(a[0]["t0"], a[0]["t1"])
    assert not np.array_equal(draw_sample(d, weights, 8, 0)["t0"], a[0]["t0"])


def test_spec_parsing_and_composition():
    d = parse_drift("quantize:16,lognormal:0.6")
    assert isinstance(d, CompositeDrift) and d.spec() == "quantize:16,lognormal:0.6"
    assert sigma_of(d) == 0.6 and with_sigma(d, 0.3).spec() == "quantize:16,lognormal:0.3"
    assert parse_drift("stuck-at:0.01:0.02") == StuckAtDrift(0.01, 0.02)
    assert parse_drift("gaussian:0.1") == GaussianDrift(0.1)
    register_drift("tenth", lambda s: LogNormalDrift(float(s) / 10))
    assert parse_drift("tenth:6") == LogNormalDrift(0.6)
    assert parse_drift("ftcompile.runtime.drift:LogNormalDrift:0.4") == LogNormalDrift(0.4)


@pytest.mark.parametrize("spec", ["", "wobble:1", "lognormal:-1", "lognormal:x", "stuck-at:0.7:0.6",
                                  "quantize:1", "no.such.module:attr"])
def test_bad_specs(spec):
    with pytest.raises(ConfigError):
        parse_drift(spec)


@pytest.mark.parametrize("sigma", [0.3, 0.6])
def test_lognormal_mean_compensation_removes_the_shared_gain_exactly(sigma):
    """Plain lognormal inflates every weight by exp(sigma^2/2) on average; comp=mean divides it out."""
    w = np.ones(400_000, np.float32)
    plain = LogNormalDrift(sigma).apply(w, tensor_rng(0, 0, "w"))
    mean = LogNormalDrift(sigma, "mean").apply(w, tensor_rng(0, 0, "w"))
    se = math.sqrt((math.exp(sigma ** 2) - 1) * math.exp(sigma ** 2) / len(w))  # std of the sample mean
    assert abs(plain.mean() - math.exp(sigma ** 2 / 2)) < 5 * se
    assert abs(mean.mean() - 1) < 5 * se
    assert np.allclose(mean, plain * math.exp(-sigma ** 2 / 2), rtol=1e-5)  # the same devices, one gain


def test_lognormal_global_compensation_is_the_calibration_read_ratio_over_the_whole_layer():
    from ftcompile.runtime.devices.physics import global_compensation
    from ftcompile.runtime.drift import BLOCK, drift_tensor

    w = np.random.default_rng(0).uniform(0.1, 1.0, (300, 400)).astype(np.float32)  # > BLOCK elements
    assert w.size > BLOCK
    drift = LogNormalDrift(0.6, "global")
    assert not drift.elementwise and LogNormalDrift(0.6, "mean").elementwise
    out = drift_tensor(drift, w, 0, 0, "w")
    raw = LogNormalDrift(0.6).apply(w, tensor_rng(0, 0, "w"))  # the same devices, uncompensated
    assert np.allclose(out, raw * global_compensation(w, raw), rtol=1e-5)  # one factor over the whole layer
    # positive weights: the calibration read sees the gain, and the compensated layer keeps its read-out
    assert abs(out.sum() / w.sum() - 1) < 1e-5 and abs(raw.sum() / w.sum() - math.exp(0.18)) < 0.01
    cols = drift_tensor(LogNormalDrift(0.6, "column"), w, 0, 0, "w")
    assert np.allclose(cols.sum(1), w.sum(1), rtol=1e-4)  # per output
    # a zero-mean layer: the one-hot read still finds the gain exp(-S^2/2); the all-ones read, whose rows
    # nearly cancel, misjudges it
    z = np.random.default_rng(1).standard_normal((64, 128)).astype(np.float32)
    zraw = LogNormalDrift(0.6).apply(z, np.random.default_rng(2))
    assert abs(global_compensation(z, zraw) / math.exp(-0.18) - 1) < 0.02
    assert abs(global_compensation(z, zraw, read="ones") / math.exp(-0.18) - 1) > 0.05
    with pytest.raises(ConfigError, match="read='zeros'"):
        global_compensation(z, zraw, read="zeros")
    # the spec term reaches the same read: lognormal and PCM take read=ones, print it back, refuse others
    ones = drift_tensor(parse_drift("lognormal:0.6,comp=global,read=ones"), z, 0, 0, "z")
    zraw = LogNormalDrift(0.6).apply(z, tensor_rng(0, 0, "z"))
    assert np.allclose(ones, zraw * global_compensation(z, zraw, read="ones"), rtol=1e-5)
    assert not np.allclose(ones, zraw * global_compensation(z, zraw), rtol=1e-3)
    for spec in ("lognormal:0.6,comp=global,read=ones", "pcm:1d,comp=global,read=ones"):
        assert parse_drift(spec).spec() == spec
    assert parse_drift("pcm:1d,comp=global,read=onehot").spec() == "pcm:1d,comp=global"
    for spec in ("lognormal:0.6,comp=global,read=zeros", "pcm:1d,comp=global,read=zeros"):
        with pytest.raises(ConfigError, match="read='zeros' is unknown; use one of onehot, ones"):
            parse_drift(spec)


def test_lognormal_compensation_spec_torch_twin_and_errors():
    torch = pytest.importorskip("torch")

    for spec in ("lognormal:0.3,comp=global", "lognormal:0.3,comp=column", "lognormal:0.3,comp=mean"):
        assert parse_drift(spec).spec() == spec
    assert parse_drift("lognormal:0.3,comp=none").spec() == "lognormal:0.3"
    with pytest.raises(ConfigError, match="comp='sometimes'"):
        parse_drift("lognormal:0.3,comp=sometimes")
    w = torch.full((200, 500), 0.5, requires_grad=True)
    out = LogNormalDrift(0.6, "mean").apply_torch(w, torch.Generator().manual_seed(0))
    assert abs(out.mean().item() / 0.5 - 1) < 0.01  # the torch twin removes the same gain
    glob = LogNormalDrift(0.6, "global").apply_torch(w, torch.Generator().manual_seed(0))
    assert abs(glob.sum().item() / w.sum().item() - 1) < 1e-4
    (grad,) = torch.autograd.grad(glob.pow(2).sum(), w)
    assert torch.isfinite(grad).all()
