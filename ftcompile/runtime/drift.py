"""Drift models: how a crossbar's stored weights differ from the trained ones.

Every model maps one weight tensor and a random generator to its drifted copy. Sample ``k`` of
seed ``s`` draws block ``j`` of tensor ``name`` from its own counter-keyed stream
(``SeedSequence(s, (k, crc32(name), j))``), so a sample is the same whichever chunk, order,
worker or target set draws it. Element-wise models split large tensors into fixed blocks of
``BLOCK`` elements that threads draw in parallel (numpy's generators release the GIL); models
that need a layer statistic (max|W|, min/max) draw a whole tensor as block 0.
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from ftcompile.errors import ConfigError
from ftcompile.runtime.devices.physics import COMPENSATIONS, DEFAULT_READ, check_read, global_compensation

LOGNORMAL_COMPENSATIONS = COMPENSATIONS + ("mean",)  # mean: the known gain, no calibration read


@runtime_checkable
class DriftModel(Protocol):
    """A weight perturbation; ``apply`` must not modify ``w``."""

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...

    def spec(self) -> str: ...


def _as_float32(w: np.ndarray) -> np.ndarray:
    return w if w.dtype == np.float32 else w.astype(np.float32)


@dataclass(frozen=True)
class LogNormalDrift:
    """Multiplicative conductance drift (BayesFT eq. 1): w' = w * exp(theta), theta ~ N(0, sigma^2).

    The drift inflates every weight on average by ``E[exp(theta)] = exp(sigma^2 / 2)`` (x1.05 at sigma 0.3,
    x1.20 at 0.6), and that shared gain compounds through depth: it alone took a PennFudan detector's mAP from
    0.80 to 0.00. ``comp`` (``global``/``column``) applies the drift compensation of a chip that read each
    layer with a calibration input right after programming (``physics.global_compensation``, Joshi et al.
    2020): the read-back is scaled by the ratio of that read to the drifted one, which removes the shared gain
    and leaves the per-device spread. ``read`` is that calibration input (``physics.CALIBRATION_READS``).
    """

    sigma: float
    comp: str = "none"
    read: str = DEFAULT_READ

    def __post_init__(self) -> None:
        _check_nonneg("lognormal sigma", self.sigma)
        if self.comp not in LOGNORMAL_COMPENSATIONS:
            raise ConfigError(f"comp={self.comp!r} is unknown; use one of {', '.join(LOGNORMAL_COMPENSATIONS)}.")
        check_read(self.read)

    @property
    def elementwise(self) -> bool:
        return self.comp in ("none", "mean")  # a calibration read needs the whole layer

    @property
    def log_shift(self) -> float:
        """Added to ``sigma * z`` before the exponential: ``-sigma^2/2`` for ``comp=mean`` (the fixed digital
        gain ``exp(-sigma^2/2)`` that makes ``E[w'] = w`` exactly), else 0."""
        return -self.sigma ** 2 / 2 if self.comp == "mean" else 0.0

    def _calibrated(self, w, out):
        """``out`` rescaled by the calibration read of ``comp=global|column`` (any array namespace)."""
        if self.comp not in ("global", "column"):
            return out
        return out * global_compensation(w, out, per_column=self.comp == "column", read=self.read)

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.sigma == 0:
            return w
        z = rng.standard_normal(w.shape, dtype=np.float32)  # in place: this is the Monte-Carlo hot path
        z *= self.sigma
        z += np.float32(self.log_shift)
        np.exp(z, out=z)
        z *= _as_float32(w)
        if w.size:
            z = self._calibrated(_as_float32(w), z).astype(np.float32, copy=False)
        return z.astype(w.dtype, copy=False)

    def apply_split(self, w: np.ndarray, rng: np.random.Generator):
        """``apply`` before a calibrated compensation (``global``/``column``) and its factor (None without)."""
        if self.comp not in ("global", "column") or not w.size:
            return self.apply(w, rng), None
        out = replace(self, comp="none").apply(w, rng)
        return out, global_compensation(_as_float32(w), out, per_column=self.comp == "column", read=self.read)

    def apply_torch(self, w, gen):
        """The same drift on a torch tensor, differentiable in ``w`` (training against compensated drift)."""
        import torch

        z = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)
        return self._calibrated(w, w * torch.exp(self.sigma * z + self.log_shift))

    def spec(self) -> str:
        return (f"lognormal:{self.sigma:g}" + (f",comp={self.comp}" if self.comp != "none" else "")
                + (f",read={self.read}" if self.read != DEFAULT_READ else ""))


@dataclass(frozen=True)
class GaussianDrift:
    """Programming noise relative to the layer's range: w' = w + N(0, (sigma * max|W|)^2)."""

    sigma: float

    def __post_init__(self) -> None:
        _check_nonneg("gaussian sigma", self.sigma)

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = float(np.max(np.abs(w))) * self.sigma if w.size else 0.0
        if scale == 0:
            return w
        z = rng.standard_normal(w.shape, dtype=np.float32)
        z *= scale
        z += _as_float32(w)
        return z.astype(w.dtype, copy=False)

    def spec(self) -> str:
        return f"gaussian:{self.sigma:g}"


@dataclass(frozen=True)
class StuckAtDrift:
    """Cells stuck at zero conductance (rate ``off``) or at the layer's extreme +-max|W| (rate ``on``)."""

    off: float
    on: float = 0.0

    def __post_init__(self) -> None:
        for label, p in (("stuck-at off rate", self.off), ("stuck-at on rate", self.on)):
            if not 0 <= p <= 1:
                raise ConfigError(f"{label} {p} is outside [0, 1]; give a fraction of cells.")
        if self.off + self.on > 1:
            raise ConfigError("stuck-at rates add up to more than 1; lower them.")

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = rng.random(w.shape, dtype=np.float32)
        out = np.array(w, copy=True)
        out[u < self.off] = 0
        on = (u >= self.off) & (u < self.off + self.on)
        extreme = np.max(np.abs(w)) if w.size else 0
        out[on] = np.where(w[on] < 0, -extreme, extreme)
        return out

    def spec(self) -> str:
        return f"stuck-at:{self.off:g}:{self.on:g}"


@dataclass(frozen=True)
class QuantizeDrift:
    """Conductance limited to ``levels`` evenly spaced values over the layer's [min, max] (deterministic)."""

    levels: int

    def __post_init__(self) -> None:
        if int(self.levels) != self.levels or self.levels < 2:
            raise ConfigError(f"quantize levels {self.levels} must be an integer >= 2.")

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = (float(w.min()), float(w.max())) if w.size else (0.0, 0.0)
        if hi == lo:
            return w
        step = (hi - lo) / (self.levels - 1)
        return (np.round((w - lo) / step) * step + lo).astype(w.dtype)

    def spec(self) -> str:
        return f"quantize:{self.levels}"


@dataclass(frozen=True, eq=False)
class TableDrift:
    """Measured device statistics: pairs of programmed conductance ``g`` and read-back ``g_read``.

    A weight is mapped to a programmed level by ``|w| / max|W|`` of its tensor (the largest weight gets
    the largest programmed conductance, the sign lives in a differential pair), and drifts by a ratio
    ``g_read / g`` drawn from the measured pairs of its level's bin (``bins`` equal bins; an empty bin
    uses the nearest non-empty one). Spec: ``table:PATH[:BINS]`` with a ``.csv`` (two columns, optional
    header) or ``.npz`` (arrays ``g``, ``g_read``).
    """

    g: np.ndarray
    g_read: np.ndarray
    bins: int = 8
    source: str = ""

    def __post_init__(self) -> None:
        g, r = np.asarray(self.g, np.float64).reshape(-1), np.asarray(self.g_read, np.float64).reshape(-1)
        if len(g) != len(r) or len(g) < 2 or not (np.isfinite(g).all() and np.isfinite(r).all()) or (g <= 0).any():
            raise ConfigError(f"drift table {self.source or ''}: needs >= 2 pairs (g > 0, g_read) of finite numbers "
                              f"in two equal-length columns (got {len(g)} and {len(r)}).")
        if self.bins < 1:
            raise ConfigError(f"drift table bins {self.bins} must be >= 1.")
        edges = np.linspace(0, g.max(), self.bins + 1)
        which = np.clip(np.searchsorted(edges, g, side="right") - 1, 0, self.bins - 1)
        filled = [j for j in range(self.bins) if (which == j).any()]
        ratios = []
        for j in range(self.bins):
            nearest = min(filled, key=lambda f: abs(f - j))
            ratios.append((r / g)[which == nearest].astype(np.float32))
        object.__setattr__(self, "_ratios", ratios)

    @classmethod
    def load(cls, path: str, bins: int = 8) -> "TableDrift":
        try:
            if str(path).endswith(".npz"):
                with np.load(path, allow_pickle=False) as f:
                    g, g_read = f["g"], f["g_read"]
            else:
                table = np.genfromtxt(path, delimiter=",", dtype=np.float64)
                table = table[~np.isnan(table).all(axis=1)] if table.ndim == 2 else table  # header row
                g, g_read = table[:, 0], table[:, 1]
        except (OSError, KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"cannot read drift table {path} ({exc}); give a .csv with columns g,g_read "
                              "or an .npz with arrays g and g_read.") from None
        return cls(g, g_read, int(bins), str(path))

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = float(np.abs(w).max()) if w.size else 0.0
        if scale == 0:
            return w
        level = np.minimum((np.abs(w) / scale * self.bins).astype(np.int64), self.bins - 1).reshape(-1)
        factor = np.empty(w.size, np.float32)
        for j, ratios in enumerate(self._ratios):
            mask = level == j
            if mask.any():
                factor[mask] = ratios[rng.integers(len(ratios), size=int(mask.sum()))]
        return (_as_float32(w) * factor.reshape(w.shape)).astype(w.dtype, copy=False)

    def spec(self) -> str:
        return f"table:{self.source}:{self.bins}" if self.source else f"table({len(self.g)} pairs):{self.bins}"


@dataclass(frozen=True)
class CompositeDrift:
    """Drift models applied in order, e.g. quantize then lognormal."""

    parts: tuple

    @property
    def elementwise(self) -> bool:
        return all(getattr(p, "elementwise", False) for p in self.parts)

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for part in self.parts:
            w = part.apply(w, rng)
        return w

    def spec(self) -> str:
        return ",".join(p.spec() for p in self.parts)


NoDrift = CompositeDrift(())

_REGISTRY: dict[str, Callable[..., DriftModel]] = {
    "lognormal": lambda sigma, comp="none", read=DEFAULT_READ: LogNormalDrift(float(sigma), str(comp), str(read)),
    "gaussian": lambda sigma: GaussianDrift(float(sigma)),
    "stuck-at": lambda off, on="0": StuckAtDrift(float(off), float(on)),
    "quantize": lambda levels: QuantizeDrift(int(levels)),
    "table": lambda path, bins=8: TableDrift.load(str(path), int(bins)),
    "pcm": lambda t, **kw: _devices().pcm(t, **kw),
    "reram-wan2022": lambda t, **kw: _devices().reram_wan2022(t, **kw),
}


def _devices():
    from ftcompile.runtime.devices import models

    return models


def register_drift(name: str, factory: Callable[..., DriftModel]) -> None:
    """Make ``name:arg:arg`` usable in drift specs (CLI and API); numeric args arrive as numbers.

    Example:
        >>> register_drift("scaled", lambda f: LogNormalDrift(float(f) * 0.1))
        >>> parse_drift("scaled:6").spec()
        'lognormal:0.6'
    """
    _REGISTRY[name] = factory


def parse_drift(spec: str) -> DriftModel:
    """Parse ``"quantize:16,lognormal:0.6"`` (applied in order) into a drift model.

    An item ``package.module:attr[:arg...]`` loads a user's drift model or factory from Python. Items
    ``key=value`` are keyword arguments of the term before them: ``pcm:1h,g_max=25,comp=global``.
    """
    if isinstance(spec, DriftModel) and not isinstance(spec, str):
        return spec
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items:
        raise ConfigError(f"drift spec {spec!r} is empty; use e.g. 'lognormal:0.6'.")
    terms: list[tuple[str, dict]] = []
    for item in items:
        key, eq, value = item.partition("=")
        if eq and ":" not in key:
            if not terms:
                raise ConfigError(f"drift spec {spec!r} starts with {item!r}; keyword arguments follow a term "
                                  "(pcm:1d,comp=global).")
            terms[-1][1][key.strip()] = value.strip()
        else:
            terms.append((item, {}))
    parts = [_parse_item(item, kwargs) for item, kwargs in terms]
    return parts[0] if len(parts) == 1 else CompositeDrift(tuple(parts))


def _parse_item(item: str, kwargs: dict | None = None) -> DriftModel:
    name, *args = item.split(":")
    factory = _REGISTRY.get(name)
    if factory is None and "." in name and args:
        factory = _load_user_drift(name, args.pop(0))
    if factory is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(f"unknown drift model {name!r} in {item!r}; use one of {known}, or module.path:attr.")
    try:
        is_instance = isinstance(factory, DriftModel) and not isinstance(factory, type)
        model = factory if is_instance else factory(*[_number(a) for a in args], **(kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad arguments in drift spec {item!r} ({exc}); e.g. lognormal:0.6, "
                          "stuck-at:0.01:0.01.") from None
    if not isinstance(model, DriftModel) or isinstance(model, type):
        raise ConfigError(f"{item!r} did not give a drift model (needs apply(w, rng) and spec()).")
    return model


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _load_user_drift(module: str, attr: str):
    from ftcompile.plugins import load_object

    return load_object(f"{module}:{attr}", "drift model")


def _parts(drift: DriftModel) -> tuple:
    return drift.parts if isinstance(drift, CompositeDrift) else (drift,)


def term_name(part: DriftModel) -> str:
    """The name a spec term starts with: ``lognormal`` for ``lognormal:0.6``."""
    return part.spec().split(":")[0]


def sweep_term(drift: DriftModel, term: str | None = None, field: str = "sigma") -> int:
    """Index of the part whose ``field`` a sweep varies (``sigma``, or ``t`` for device presets): the part
    named ``term``, else the only part that has the field.

    Raises ``ConfigError`` (one line, naming the fix) when the spec has no such part or several.
    """
    parts = _parts(drift)
    swept = [i for i, p in enumerate(parts) if dataclasses.is_dataclass(p) and hasattr(p, field)]
    spec = drift.spec()
    what = "sigma" if field == "sigma" else "time (a device preset such as pcm:1d)"
    if term is not None:
        named = [i for i, p in enumerate(parts) if term_name(p) == term]
        if len(named) != 1 or named[0] not in swept:
            why = "has no such term" if not named else "has it twice" if len(named) > 1 else f"has no {field} there"
            names = ", ".join(term_name(parts[i]) for i in swept) or "none"
            raise ConfigError(f"--vary {term}: drift {spec!r} {why}; sweepable terms: {names}.")
        return named[0]
    if not swept:
        example = "'{spec},lognormal:0.6'" if field == "sigma" else "'pcm:1d'"
        raise ConfigError(f"drift {spec!r} has no {what} to sweep; add a term such as {example.format(spec=spec)} "
                          "or measure it once with validate.")
    if len(swept) > 1:
        names = ", ".join(term_name(parts[i]) for i in swept)
        raise ConfigError(f"drift {spec!r} has several {field} terms ({names}); choose the one to sweep with "
                          "--vary NAME.")
    return swept[0]


def with_value(drift: DriftModel, value: float, term: str | None = None, field: str = "sigma") -> DriftModel:
    """The same drift with one term's ``field`` (``sweep_term``) set to ``value``; the others stay as given."""
    parts = list(_parts(drift))
    i = sweep_term(drift, term, field)
    parts[i] = dataclasses.replace(parts[i], **{field: float(value)})
    return parts[0] if len(parts) == 1 else CompositeDrift(tuple(parts))


def with_sigma(drift: DriftModel, sigma: float, term: str | None = None) -> DriftModel:
    """``with_value`` for the sigma of a term."""
    return with_value(drift, sigma, term, "sigma")


def with_compensation(drift: DriftModel, compensation: str | None) -> DriftModel:
    """The drift with the drift compensation of every lognormal and device term set (``none``, ``global``, ``column``);
    ``None`` leaves the spec as written. Refused for a spec with no term that has compensation."""
    if compensation is None:
        return drift
    parts = list(_parts(drift))
    hit = [i for i, p in enumerate(parts) if dataclasses.is_dataclass(p) and hasattr(p, "comp")]
    if not hit:
        raise ConfigError(f"--compensation {compensation}: drift {drift.spec()!r} has no term that drift compensation "
                          "acts on; use lognormal or a device preset such as --drift pcm:1d.")
    for i in hit:
        parts[i] = dataclasses.replace(parts[i], comp=compensation)
    return parts[0] if len(parts) == 1 else CompositeDrift(tuple(parts))


def is_identity(drift: DriftModel) -> bool:
    """True when the drift changes no weight: every part is a sigma term at sigma 0 (or there is none)."""
    return all(dataclasses.is_dataclass(p) and getattr(p, "sigma", None) == 0 for p in _parts(drift))


def names_device(drift: DriftModel) -> bool:
    """True when a term of ``drift`` is a device preset (``pcm``, ``reram-wan2022``): a model of a chip's crossbars."""
    from ftcompile.runtime.devices.models import DEVICE_MODELS

    return any(isinstance(p, DEVICE_MODELS) for p in _parts(drift))


def resolve_targets(targets: str | None, drift: DriftModel) -> str:
    """Which tensors drift. ``auto`` (or None): ``crossbar`` (the layers' weight matrices; biases and normalization
    stay digital, as chips keep them) when the drift names a device, else ``params`` (every learned parameter, the
    paper's model); ``params``/``crossbar`` as given."""
    if targets in (None, "auto"):
        return "crossbar" if names_device(drift) else "params"
    from ftcompile.passes.onnx_graph import TARGET_MODES

    if targets not in TARGET_MODES:
        raise ConfigError(f"--targets {targets!r} is unknown; use auto, {' or '.join(TARGET_MODES)}.")
    return targets


def sigma_of(drift: DriftModel) -> float | None:
    """The sigma of the lognormal term (the paper's drift), if the spec has one."""
    found = [p.sigma for p in _parts(drift) if isinstance(p, LogNormalDrift)]
    return float(found[0]) if found else None


BLOCK = 1 << 16
_POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="ftcompile-drift")


def tensor_rng(seed: int, sample: int, name: str, block: int = 0) -> np.random.Generator:
    """The generator of block ``block`` of tensor ``name`` in Monte-Carlo sample ``sample``."""
    key = np.random.SeedSequence(int(seed), spawn_key=(int(sample), zlib.crc32(name.encode()), int(block)))
    return np.random.Generator(np.random.PCG64(key))


def keyed_normals(seed: int, sample: int, name: str, shape: tuple) -> np.ndarray:
    """The standard normals (float32, ``shape``) an element-wise drift of tensor ``name`` draws in sample ``sample``:
    block ``j`` of ``BLOCK`` elements from ``tensor_rng(seed, sample, name, j)``, as ``drift_tensor`` draws them.
    The torch objective multiplies its weights by ``exp(sigma * z)`` of these, so it scores the very draws the
    runtime's ``validate --seed`` makes."""
    size = int(np.prod(shape)) if len(shape) else 1
    if size <= BLOCK:
        return tensor_rng(seed, sample, name).standard_normal(tuple(shape), dtype=np.float32)
    out = np.empty(size, np.float32)
    for j in range(-(-size // BLOCK)):
        sl = slice(j * BLOCK, min(size, (j + 1) * BLOCK))
        out[sl] = tensor_rng(seed, sample, name, j).standard_normal(sl.stop - sl.start, dtype=np.float32)
    return out.reshape(shape)


class KeyedNoise:
    """Standard normals of one Monte-Carlo sample's read noise (the analog twin's ADC output noise): one stream per
    layer, ``tensor_rng(seed, sample, "adc-noise:" + layer)``, read in example order. A stream's values do not depend
    on how the examples are batched (numpy's normals are drawn one after the other), so the runtime, whatever its
    batch size, and the torch objective read the same noise for the same example. ``clean``: the noise of the clean
    pass (a read is noisy with or without drift), a stream of its own."""

    def __init__(self, seed: int, sample: int, clean: bool = False):
        self.seed, self.sample, self.tag = int(seed), int(sample), "adc-noise-clean:" if clean else "adc-noise:"
        self._streams: dict[str, np.random.Generator] = {}

    def draw(self, layer: str, count: int) -> np.ndarray:
        """The next ``count`` normals (float32) of ``layer``'s stream."""
        rng = self._streams.get(layer)
        if rng is None:
            rng = self._streams[layer] = tensor_rng(self.seed, self.sample, self.tag + layer)
        return rng.standard_normal(int(count), dtype=np.float32)


def drift_tensor(drift: DriftModel, w: np.ndarray, seed: int, sample: int, name: str) -> np.ndarray:
    """One tensor of one sample; element-wise drift over large tensors is drawn in parallel blocks."""
    if not getattr(drift, "elementwise", False) or w.size <= BLOCK:
        return drift.apply(w, tensor_rng(seed, sample, name))
    flat = w.reshape(-1)
    out = np.empty_like(flat)

    def block(j: int) -> None:
        sl = slice(j * BLOCK, (j + 1) * BLOCK)
        out[sl] = drift.apply(flat[sl], tensor_rng(seed, sample, name, j))

    list(_POOL.map(block, range(-(-flat.size // BLOCK))))
    return out.reshape(w.shape)


def draw_sample(drift: DriftModel, weights: Mapping[str, np.ndarray], seed: int, sample: int,
                only: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Drifted copies of ``weights`` for one Monte-Carlo sample; names outside ``only`` stay clean. A drift that
    draws a whole sample itself (``devices.tiles.ChipDrift``: per tile, with compensation inputs) does so."""
    if hasattr(drift, "draw_sample"):
        return drift.draw_sample(weights, seed, sample, only)
    chosen = set(weights) if only is None else set(only)
    return {name: drift_tensor(drift, w, seed, sample, name) if name in chosen else w
            for name, w in weights.items()}


def _check_nonneg(label: str, value: float) -> None:
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{label} {value} must be a finite number >= 0.")
