"""Device presets as drift models: a weight tensor -> differential conductance pairs -> physics -> weights.

Each layer's weights map to a pair of devices per weight (``physics.differential_targets``; ``|w| = max|W|``
at ``g_max``, per layer or, with ``per_channel``, per output channel); both devices are programmed and
drift (the one targeted at 0 ends slightly above it), and the read-back is ``(g+ - g-) * max|W| / g_max``.
Specs: ``pcm:1d``, ``pcm:1y,comp=global``, ``reram-wan2022:2d``, with ``key=value`` terms after the time
(``pcm:1h,g_max=25,prog_scale=1,drift_scale=1,read_scale=1,comp=none|global|column,per_channel=1,read=onehot|ones``;
``read`` is the calibration input of the compensation, ``physics.global_compensation``).
Biases: the runtime's ``--targets crossbar`` keeps them digital (undrifted), as on most chips.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftcompile.errors import ConfigError
from ftcompile.runtime.devices import physics
from ftcompile.runtime.devices.physics import COMPENSATIONS
from ftcompile.units import format_time, parse_time  # noqa: F401  (device specs read times here)


def _scales(w: np.ndarray, per_channel: bool) -> np.ndarray:
    if per_channel and w.ndim > 1:
        scale = np.max(np.abs(w.reshape(w.shape[0], -1)), axis=1).reshape((-1,) + (1,) * (w.ndim - 1))
        return np.where(scale > 0, scale, 1.0).astype(np.float64)
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    return np.float64(scale if scale > 0 else 1.0)


def _torch_scales(w, per_channel: bool):
    """``_scales`` for a torch tensor; the mapping scale is a fixed property of the chip, not a gradient path."""
    import torch

    a = w.detach().abs()
    if per_channel and w.dim() > 1:
        scale = a.reshape(w.shape[0], -1).amax(1).reshape((-1,) + (1,) * (w.dim() - 1))
    else:
        scale = a.max()
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _check(device: str, compensation: str, g_max: float, **scales) -> None:
    if compensation not in COMPENSATIONS:
        raise ConfigError(f"comp={compensation!r} is unknown; use one of {', '.join(COMPENSATIONS)}.")
    if not np.isfinite(g_max) or g_max <= 0:  # at 0 every conductance ratio is 0/0 and the weights NaN
        raise ConfigError(f"{device}: g_max={g_max} must be a conductance > 0 (uS), the one the largest weight "
                          "maps to; e.g. g_max=25.")
    for name, value in scales.items():
        if not np.isfinite(value) or value < 0:
            raise ConfigError(f"{device}: {name}={value} must be a number >= 0.")


@dataclass(frozen=True)
class PCMDrift:
    """Phase-change memory at ``t`` seconds after programming (Nandakumar et al. 2019; Joshi et al. 2020).

    Programming noise, a per-device drift exponent, 1/f read noise (``physics.pcm_*``), then optional global
    or per-column drift compensation against a read right after programming.
    """

    t: float
    g_max: float = 25.0
    prog_scale: float = 1.0
    drift_scale: float = 1.0
    read_scale: float = 1.0
    comp: str = "none"
    per_channel: bool = False
    read: str = physics.DEFAULT_READ

    def __post_init__(self) -> None:
        _check("pcm", self.comp, self.g_max, prog_scale=self.prog_scale, drift_scale=self.drift_scale,
               read_scale=self.read_scale)
        physics.check_read(self.read)

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not w.size:
            return w
        w64 = w.astype(np.float64)
        out = self._read(w64, _scales(w64, self.per_channel), lambda shape: rng.standard_normal(shape))
        return out.astype(w.dtype)

    def apply_torch(self, w, gen):
        """The same physics on a torch tensor, differentiable in ``w`` (hardware-aware training)."""
        import torch

        scale = _torch_scales(w, self.per_channel)
        return self._read(w, scale, lambda shape: torch.randn(shape, generator=gen, dtype=w.dtype).to(w.device))

    def apply_split(self, w: np.ndarray, rng: np.random.Generator):
        """``apply`` before compensation, and the compensation factor (None without): a chip applies the factor
        after its ADC (``tiles.ChipDrift``)."""
        if not w.size:
            return w, None
        w64 = w.astype(np.float64)
        out, factor = self._read_split(w64, _scales(w64, self.per_channel), lambda shape: rng.standard_normal(shape))
        return out.astype(w.dtype), factor

    def _read(self, w, scale, normal):
        out, factor = self._read_split(w, scale, normal)
        return out if factor is None else out * factor

    def _read_split(self, w, scale, normal):
        """Program, drift to ``t`` and read both devices of every weight; read back (any namespace). The factor
        of the compensation (None without) compares the calibration read of the pairs right after programming
        with the read now, in conductance (what the chip's calibration read measures: with per-column scales,
        aihwkit's read of a tile's normalized weights)."""
        targets = physics.differential_targets(w, scale, self.g_max)
        reads, baseline = [], []
        for g_t in targets:  # g+ then g-: each device has its own noise
            z = normal((4,) + tuple(w.shape))
            g_p = physics.pcm_program(g_t, z[0], self.g_max, self.prog_scale)
            nu = physics.pcm_drift_exponent(g_t, z[1], self.g_max, self.drift_scale)
            g_d = physics.pcm_drifted(g_p, nu, self.t)
            reads.append(physics.pcm_read(g_d, g_p, z[2], self.t, self.g_max, self.read_scale))
            if self.comp != "none":  # the calibration read right after programming
                baseline.append(physics.pcm_read(g_p, g_p, z[3], 0.0, self.g_max, self.read_scale))
        out = physics.differential_weights(reads[0], reads[1], scale, self.g_max)
        if self.comp == "none":
            return out, None
        return out, physics.global_compensation(baseline[0] - baseline[1], reads[0] - reads[1],
                                                per_column=self.comp == "column", read=self.read)

    def spec(self) -> str:
        extra = [f"{k}={getattr(self, k):g}" for k in ("g_max", "prog_scale", "drift_scale", "read_scale")
                 if getattr(self, k) != PCMDrift.__dataclass_fields__[k].default]
        extra += [f"comp={self.comp}"] if self.comp != "none" else []
        extra += ["per_channel=1"] if self.per_channel else []
        extra += [f"read={self.read}"] if self.read != physics.DEFAULT_READ else []
        return ",".join([f"pcm:{format_time(self.t)}", *extra])


@dataclass(frozen=True)
class ReRAMDrift:
    """ReRAM read-back spread of Wan et al. 2022 (NeuRRAM) at 1 s, 1 day or 2 days after programming."""

    t: float
    g_max: float = physics.RERAM_G_MAX
    scale: float = 1.0
    per_channel: bool = False

    def __post_init__(self) -> None:
        _check("reram-wan2022", "none", self.g_max, scale=self.scale)
        if self.t not in physics.RERAM_WAN2022:
            times = ", ".join(format_time(t) for t in physics.RERAM_WAN2022)
            raise ConfigError(f"reram-wan2022 has fits at {times} only (got {format_time(self.t)}); pick one.")

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not w.size:
            return w
        w64 = w.astype(np.float64)
        return self._read(w64, _scales(w64, self.per_channel), lambda shape: rng.standard_normal(shape)).astype(w.dtype)

    def apply_torch(self, w, gen):
        """The same physics on a torch tensor, differentiable in ``w`` (hardware-aware training)."""
        import torch

        scale = _torch_scales(w, self.per_channel)
        return self._read(w, scale, lambda shape: torch.randn(shape, generator=gen, dtype=w.dtype).to(w.device))

    def _read(self, w, scale, normal):
        coeffs = physics.RERAM_WAN2022[self.t]
        reads = [physics.reram_read(g_t, normal(tuple(w.shape)), coeffs, self.g_max, self.scale)
                 for g_t in physics.differential_targets(w, scale, self.g_max)]
        return physics.differential_weights(reads[0], reads[1], scale, self.g_max)

    def spec(self) -> str:
        extra = [f"g_max={self.g_max:g}"] if self.g_max != physics.RERAM_G_MAX else []
        extra += [f"scale={self.scale:g}"] if self.scale != 1.0 else []
        extra += ["per_channel=1"] if self.per_channel else []
        return ",".join([f"reram-wan2022:{format_time(self.t)}", *extra])


DEVICE_MODELS = (PCMDrift, ReRAMDrift)  # the presets that model a chip's crossbar devices


def pcm(t, **kwargs) -> PCMDrift:
    return PCMDrift(parse_time(t, what="pcm time"), **_kwargs(kwargs))


def reram_wan2022(t, **kwargs) -> ReRAMDrift:
    return ReRAMDrift(parse_time(t, what="reram-wan2022 time"), **_kwargs(kwargs))


def _kwargs(kwargs: dict) -> dict:
    out = {}
    for key, value in kwargs.items():
        if key == "per_channel":
            out[key] = str(value).lower() in ("1", "true", "yes")
        elif key in ("comp", "read"):
            out[key] = str(value)
        else:
            out[key] = float(value)
    return out
