"""The public verbs: ``validate``, ``sweep``, ``analyze``, ``inspect``, ``harden`` (torch loads only there).

Example:
    >>> import ftcompile
    >>> result = ftcompile.validate("model.onnx", "val.npz", drift="lognormal:0.6", samples=100)  # doctest: +SKIP
    >>> result.stats.mean, result.passed                                                          # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ftcompile.data import Dataset, as_dataset
from ftcompile.errors import ConfigError, Interrupted
from ftcompile.fileio import sha256_file
from ftcompile.runtime.drift import DriftModel, LogNormalDrift, parse_drift, with_sigma
from ftcompile.runtime.metrics import Metric, accuracy
from ftcompile.runtime.session import DriftSession
from ftcompile.runtime.stats import summarize
from ftcompile.runtime.validate import Gate, ValidationResult, clean_metric, evaluate, sample_metrics


def resolve_drift(drift: "str | DriftModel | None", sigma: float | None) -> DriftModel:
    """``drift`` (spec or model) wins; else lognormal at ``sigma`` (the paper's model)."""
    if drift is not None:
        return parse_drift(drift) if isinstance(drift, str) else drift
    return LogNormalDrift(0.6 if sigma is None else float(sigma))


def open_session(model, *, targets: str = "params", bias: bool = False, output: str | None = None,
                 provider: str = "cpu") -> DriftSession:
    return DriftSession(model, targets=targets, bias=bias, output=output, provider=provider)


def bind_data(session: DriftSession, data) -> Dataset:
    return as_dataset(data, session.inputs, num_classes=session.num_classes)


def _sha(model) -> str:
    return sha256_file(model) if isinstance(model, (str, Path)) and Path(model).is_file() else ""


def validate(model, data, *, drift: "str | DriftModel | None" = None, sigma: float | None = None,
             samples: int = 100, seed: int = 0, batch_size: int = 1024, metric: Metric = accuracy,
             gate: Gate = Gate(), targets: str = "params", bias: bool = False, output: str | None = None,
             provider: str = "cpu", on_sample: Callable[[int, float], None] | None = None) -> ValidationResult:
    """Measure ``metric`` of an ONNX model under drift over ``samples`` Monte-Carlo draws and apply ``gate``.

    Args:
        model: path to an ONNX file (or a ``ModelProto``).
        data: ``.npz`` path with ``x``/``y``, a ``Dataset``, or an ``(x, y)`` tuple.
        drift: a spec such as ``"quantize:16,lognormal:0.6"`` or a drift model; default lognormal at ``sigma``.
    Returns:
        ``ValidationResult`` with clean and per-sample metrics, statistics and the gate's checks.
    """
    drift_model = resolve_drift(drift, sigma)
    session = open_session(model, targets=targets, bias=bias, output=output, provider=provider)
    dataset = bind_data(session, data)
    try:
        return evaluate(session, dataset, drift_model, samples=samples, seed=seed, batch_size=batch_size,
                        metric=metric, gate=gate, model_sha256=_sha(model), targets=targets, on_sample=on_sample)
    except KeyboardInterrupt:
        raise Interrupted("validation interrupted; no report was written.") from None


@dataclass(frozen=True)
class SweepPoint:
    sigma: float
    mean: float
    std: float
    p5: float
    p95: float
    ci_low: float
    ci_high: float


@dataclass
class SweepResult:
    """One curve per model: the metric's statistics at each sigma."""

    drift: str
    samples: int
    seed: int
    curves: dict = field(default_factory=dict)  # model label -> list[SweepPoint]


def parse_sigmas(spec: "str | Sequence[float]") -> list[float]:
    """``"0:1.5:0.1"`` (start:stop:step, stop included) or ``"0,0.3,0.6"``."""
    if not isinstance(spec, str):
        values = [float(s) for s in spec]
    else:
        try:
            if ":" in spec:
                start, stop, step = (float(p) for p in spec.split(":"))
                if step <= 0:
                    raise ValueError
                values = list(np.round(np.arange(start, stop + step / 2, step), 6))
            else:
                values = [float(p) for p in spec.split(",") if p.strip()]
        except ValueError:
            raise ConfigError(f"--sigmas {spec!r} is malformed; use start:stop:step (0:1.5:0.1) or a list (0,0.3,0.6).") from None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"--sigmas {spec!r} must list finite sigmas >= 0.")
    return [float(v) for v in values]


def sweep(models: Sequence, data, *, sigmas: "str | Sequence[float]" = "0:1.5:0.1",
          drift: "str | DriftModel | None" = None, samples: int = 50, seed: int = 0, batch_size: int = 1024,
          metric: Metric = accuracy, targets: str = "params", bias: bool = False, output: str | None = None,
          provider: str = "cpu", on_point: Callable[[str, SweepPoint], None] | None = None) -> SweepResult:
    """Accuracy-vs-sigma curves of several models; one session per model, reused across sigmas."""
    grid = parse_sigmas(sigmas)
    base = resolve_drift(drift, grid[0])
    result = SweepResult(drift=base.spec(), samples=samples, seed=seed)
    try:
        for model in models:
            session = open_session(model, targets=targets, bias=bias, output=output, provider=provider)
            dataset = bind_data(session, data)
            label = Path(str(model)).stem
            points = []
            for sigma in grid:
                d = with_sigma(base, sigma)
                if sigma == 0:
                    values = [clean_metric(session, dataset, batch_size=batch_size, metric=metric)]
                else:
                    values = sample_metrics(session, dataset, d, samples=samples, seed=seed,
                                            batch_size=batch_size, metric=metric)
                s = summarize(values)
                ci = (s.mean, s.mean) if len(values) == 1 else (s.ci_low, s.ci_high)
                points.append(SweepPoint(sigma, s.mean, s.std, s.p5, s.p95, *ci))
                if on_point is not None:
                    on_point(label, points[-1])
            result.curves[label] = points
    except KeyboardInterrupt:
        raise Interrupted("sweep interrupted; no plot or report was written.") from None
    return result
