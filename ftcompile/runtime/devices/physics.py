"""The device equations, each written once against the array API (numpy in the runtime, torch in training).

Every function takes arrays of any namespace ``array_api_compat.array_namespace`` knows and returns the
same kind; randomness comes in as standard-normal arrays drawn by the caller, so the numpy runtime (counter-
keyed generators) and torch training (autograd) share the formulas and differ only in where the noise
comes from. Conductances are in microsiemens (uS), times in seconds.

Sources:
- PCM: Nandakumar et al., "Phase-change memory models for deep learning training and inference",
  ICECS 2019; the model used by Joshi et al., "Accurate deep neural network inference using computational
  phase-change memory", Nat. Commun. 11, 2473 (2020), and by IBM's aihwkit (``PCMLikeNoiseModel``).
- ReRAM: polynomial fits of the conductance spread of Wan et al., "A compute-in-memory chip based on
  resistive random-access memory", Nature 608 (2022) (NeuRRAM), at 1 s, 1 day and 2 days.
"""
from __future__ import annotations

import math

from array_api_compat import array_namespace

from ftcompile.errors import ConfigError

COMPENSATIONS = ("none", "global", "column")  # drift compensation: off, one factor per layer, one per output

PCM_T0 = 20.0        # s: the time of the first read after programming
PCM_T_READ = 250e-9  # s: duration of one read


def _clip(xp, x, lo, hi):
    return xp.minimum(xp.maximum(x, lo), hi)


PCM_G_MAX_FIT = 25.0  # uS: the g_max at which the programming-noise polynomial was fitted (Nandakumar et al.)


def pcm_programming_sigma(g_target, g_max: float = PCM_G_MAX_FIT):
    """Std (uS) of PCM programming noise at target conductance ``g_target``:
    ``s_p = (g_max / 25) (0.26348 + 1.9650 g_r - 1.1731 g_r^2)``, ``g_r = g_target / g_max``.

    The polynomial gives uS for devices whose range ends at 25 uS; at another ``g_max`` the spread scales with
    the range, so that a weight's relative error does not depend on the units it is stored in (aihwkit 1.2.0,
    ``inference/noise/pcm.py`` lines 90 and 114: ``sig_prog *= g_max / prog_coeff_g_max_reference``, 25 uS)."""
    g_r = g_target / g_max
    return (g_max / PCM_G_MAX_FIT) * (0.26348 + 1.9650 * g_r - 1.1731 * g_r ** 2)


def pcm_program(g_target, z, g_max: float = PCM_G_MAX_FIT, scale: float = 1.0):
    """Programmed conductance ``g_p = max(g_T + scale * s_p(g_T) * z, 0)`` for standard normals ``z``."""
    xp = array_namespace(g_target, z)
    return xp.maximum(g_target + scale * pcm_programming_sigma(g_target, g_max) * z, 0.0)


def pcm_drift_exponent_moments(g_target, g_max: float = 25.0):
    """Mean and std of the drift exponent at ``g_target`` (``g_r`` floored at 1e-7):
    ``mu = clip(-0.0155 ln g_r + 0.0244, 0.049, 0.1)``, ``s = clip(-0.0125 ln g_r - 0.0059, 0.008, 0.045)``."""
    xp = array_namespace(g_target)
    log_gr = xp.log(xp.maximum(g_target / g_max, 1e-7))
    return _clip(xp, -0.0155 * log_gr + 0.0244, 0.049, 0.1), _clip(xp, -0.0125 * log_gr - 0.0059, 0.008, 0.045)


def pcm_drift_exponent(g_target, z, g_max: float = 25.0, scale: float = 1.0):
    """Per-device drift exponent ``nu = |mu + s z|``, times ``scale`` (aihwkit's ``drift_scale``)."""
    xp = array_namespace(g_target, z)
    mu, s = pcm_drift_exponent_moments(g_target, g_max)
    return scale * xp.abs(mu + s * z)


def pcm_drifted(g_programmed, nu, t: float, t0: float = PCM_T0):
    """Conductance at ``t`` s after programming: ``g_d = g_p ((t + t0) / t0)^(-nu)``."""
    xp = array_namespace(g_programmed, nu)
    return g_programmed * xp.exp(-nu * math.log((t + t0) / t0))


def pcm_read_sigma_rel(g_programmed, t: float, g_max: float = 25.0, t0: float = PCM_T0,
                       t_read: float = PCM_T_READ):
    """Relative std of 1/f read noise: ``Q sqrt(ln((t + t0 + t_r) / (2 t_r)))``,
    ``Q = min(0.0088 / max((g_p / g_max)^0.65, 1e-3), 0.2)``."""
    xp = array_namespace(g_programmed)
    # the base is floored at 1e-6 before the power: the value is unchanged (below 2.4e-5 the 1e-3 floor of
    # the power wins anyway), but d(x^0.65)/dx is infinite at x = 0, where programming leaves half the devices
    # of the pairs, and inf x 0 made every hardware-aware training step's gradient NaN there
    base = xp.maximum(g_programmed / g_max, 1e-6)
    q = xp.minimum(0.0088 / xp.maximum(base ** 0.65, 1e-3), 0.2)
    return q * math.sqrt(math.log((t + t0 + t_read) / (2 * t_read)))


def pcm_read(g_drifted, g_programmed, z, t: float, g_max: float = 25.0, scale: float = 1.0, t0: float = PCM_T0):
    """One read at ``t``: ``g = max(g_d + |g_d| * scale * sigma_rel * z, 0)``."""
    xp = array_namespace(g_drifted, z)
    sigma = pcm_read_sigma_rel(g_programmed, t, g_max, t0)
    return xp.maximum(g_drifted + xp.abs(g_drifted) * scale * sigma * z, 0.0)


# Wan et al. 2022: std (uS) of the read-back conductance as a polynomial in g_r = g_T / g_max, per time
RERAM_WAN2022 = {1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
                 86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
                 172800.0: (0.782, 20.274, -43.507, 37.062, -11.934)}
RERAM_G_MAX = 40.0


def reram_sigma(g_target, coefficients, g_max: float = RERAM_G_MAX):
    """``s = (g_max / 40) (c0 + c1 g_r + c2 g_r^2 + c3 g_r^3 + c4 g_r^4)`` (uS), ``g_r = g_target / g_max``.

    The fit is in uS for a 40 uS range; like PCM's programming noise it scales with ``g_max``. aihwkit's
    ``ReRamWan2022NoiseModel`` means to do the same (its comment: "need to adjust for that in case g_max is not
    equal to 40.0 uS") but in 1.2.0 (``inference/noise/reram.py`` lines 82-83, 94, 107) stores the 40 in
    ``prog_coeff_g_max_reference`` while ``_apply_poly`` divides by ``coeff_g_max_reference`` (set to g_max):
    it does not scale, and differs from this at g_max != 40."""
    g_r = g_target / g_max
    return (g_max / RERAM_G_MAX) * sum(c * g_r ** k for k, c in enumerate(coefficients))


def reram_read(g_target, z, coefficients, g_max: float = RERAM_G_MAX, scale: float = 1.0):
    """Read-back conductance ``g = max(g_T + scale * s(g_r) * z, 0)``."""
    xp = array_namespace(g_target, z)
    return xp.maximum(g_target + scale * reram_sigma(g_target, coefficients, g_max) * z, 0.0)


def differential_targets(w, scale, g_max: float):
    """Targets of the differential pair: ``g+ = max(w, 0) / scale * g_max``, ``g- = max(-w, 0) / scale * g_max``."""
    xp = array_namespace(w)
    return xp.maximum(w, 0.0) / scale * g_max, xp.maximum(-w, 0.0) / scale * g_max


def differential_weights(g_plus, g_minus, scale, g_max: float):
    """Read-back weights ``w' = (g+ - g-) * scale / g_max``."""
    return (g_plus - g_minus) * scale / g_max


CALIBRATION_READS = ("onehot", "ones")
DEFAULT_READ = "onehot"


def check_read(read: str) -> None:
    if read not in CALIBRATION_READS:
        raise ConfigError(f"read={read!r} is unknown; use one of {', '.join(CALIBRATION_READS)}.")


def global_compensation(w_reference, w_now, per_column: bool = False, read: str = DEFAULT_READ):
    """Digital output scale that restores a layer's read-out (Joshi et al. 2020): the ratio of a calibration
    read of ``w_reference`` (once after programming) to the same read of ``w_now``. Weights are ``out x ...``;
    ``per_column`` gives one factor per output (shape ``out x 1 x ...``).

    ``read`` is the calibration input. ``onehot`` (default): the one-hot input vectors, one read per input
    row, summarized by the mean absolute output, as aihwkit's current ``GlobalDriftCompensation`` does
    (identity read-out tensor, mean abs): the ratio of ``sum |W|``, blind to signs. ``ones``: one all-ones
    input and the summed absolute outputs ``sum_j |sum_i W_ji|`` (aihwkit's earlier read): weights of opposite
    sign cancel in it, so it misjudges layers whose rows sum to about zero (a random zero-mean layer: gain 0.87
    at lognormal 0.6), and it measured worse on every model tried (``benchmarks/bench_calibration.py``).
    """
    check_read(read)
    xp = array_namespace(w_reference, w_now)
    ref = xp.reshape(w_reference, (w_reference.shape[0], -1))
    now = xp.reshape(w_now, (w_now.shape[0], -1))
    if read == "ones":
        ref_out, now_out = xp.abs(xp.sum(ref, axis=1)), xp.abs(xp.sum(now, axis=1))
    else:  # the mean over the one-hot reads, up to the shared 1 / inputs that the ratio cancels
        ref_out, now_out = xp.sum(xp.abs(ref), axis=1), xp.sum(xp.abs(now), axis=1)
    if per_column:
        ratio = ref_out / xp.maximum(now_out, 1e-12)
        return xp.reshape(ratio, (w_now.shape[0],) + (1,) * (len(w_now.shape) - 1))
    return xp.sum(ref_out) / xp.maximum(xp.sum(now_out), 1e-12)
