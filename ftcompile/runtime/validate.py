"""Monte-Carlo validation under drift and the sign-off gate.

One session serves every sample: each sample draws drifted weight copies (in parallel blocks, see
``drift.drift_tensor``) and feeds them. Sample k+1 is drawn in a background thread while onnxruntime runs
sample k (numpy's generators release the GIL): on 2 cores a 1,000-input pass of a wide MLP leaves one
core mostly idle, and the draws that used to add 70% to the floor now hide behind it (benchmarks/
bench_validate.py measures both). Draws depend on (seed, k) alone, so the values do not change.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from ftcompile.data import Dataset
from ftcompile.errors import ConfigError
from ftcompile.runtime.drift import DriftModel, KeyedNoise, draw_sample
from ftcompile.runtime.metrics import Metric, accuracy, example_scores
from ftcompile.runtime.session import DriftSession
from ftcompile.runtime.tasks import detections, segment
from ftcompile.runtime.stats import SampleStats, strict_json, summarize

_PREFETCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftcompile-prefetch")
# examples per onnxruntime run: onnxruntime's arena keeps the largest run's activations, and 1,024-image runs held
# 0.2-0.5 GB more than 256-image ones (GTSRB STN 768 -> 310 MB, ResNet-20 408 -> 206 MB) for no speed
BATCH = 256
_NOISE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftcompile-noise")

# total_ci_low: the lower bound of the interval covering drift sampling and the finite example set; auto: that bound,
# or the drift-only one for a metric that is no mean over examples (mAP), the most conservative one computable
STATS = ("auto", "total_ci_low", "drift_ci_low", "mean", "p5", "min")


@dataclass(frozen=True)
class Gate:
    """Sign-off thresholds; an unset threshold is not checked.

    ``min_accuracy`` applies to the statistic ``stat``: ``auto`` (the default: ``total_ci_low`` where it can be
    computed, else ``drift_ci_low``), ``total_ci_low`` (the 95% lower bound that covers drift sampling and the
    finite example set: the conservative sign-off), ``drift_ci_low`` (drift sampling only), the mean, p5 or min
    over samples. The check's name says which statistic was gated. ``max_drop`` bounds ``clean - mean`` in accuracy
    units (0.05 = five points).
    """

    min_accuracy: float | None = None
    stat: str = "auto"
    max_drop: float | None = None

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ConfigError(f"--stat {self.stat!r} is unknown; use one of {', '.join(STATS)}.")
        for label, v in (("--min-accuracy", self.min_accuracy), ("--max-drop", self.max_drop)):
            if v is not None and not 0 <= v <= 1:
                raise ConfigError(f"{label} {v} must be a fraction in [0, 1] (0.9 = 90%).")

    def resolved(self, stats: SampleStats) -> str:
        """The statistic gated: ``stat``, with ``auto`` resolved on what ``stats`` could compute."""
        if self.stat != "auto":
            return self.stat
        return "total_ci_low" if stats.total_ci_low is not None else "drift_ci_low"

    def check(self, clean: float, stats: SampleStats, metric: str = "accuracy") -> list["GateCheck"]:
        checks = []
        if self.min_accuracy is not None:
            stat = self.resolved(stats)
            value = getattr(stats, stat)
            if value is None:
                raise ConfigError(f"--stat {stat} cannot be computed here ({stats.ci_note}); "
                                  "gate on --stat auto, drift_ci_low, mean or p5.")
            checks.append(GateCheck(f"{stat} {metric} >= {self.min_accuracy:g}", value,
                                    self.min_accuracy, value >= self.min_accuracy))
        if self.max_drop is not None:
            drop = clean - stats.mean
            checks.append(GateCheck(f"drop from clean <= {self.max_drop:g}", drop, self.max_drop,
                                    drop <= self.max_drop))
        return checks


@dataclass(frozen=True)
class GateCheck:
    name: str
    value: float
    threshold: float
    passed: bool


@dataclass
class ValidationResult:
    """Accuracy of one model under one drift: clean, every sample, statistics, and the gate's verdict."""

    model: str
    model_sha256: str
    drift: str
    targets: str
    seed: int
    samples: int
    examples: int
    metric: str
    clean: float
    values: list
    stats: SampleStats
    checks: list = field(default_factory=list)
    seconds: float = 0.0
    provider: str = "CPUExecutionProvider"
    drifting_tensors: int = 0
    drifting_weights: int = 0
    converters: str = ""  # the analog twin's DAC/ADC precision, when validate ran one
    calibration: str = ""  # what the twin's converter ranges were calibrated on
    data: dict = field(default_factory=dict)  # provenance.DataRecord of the data measured on
    drifted: list = field(default_factory=list)  # the names of the drifting tensors

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        if not self.checks:
            return "measured"
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stats"] = asdict(self.stats)
        d["verdict"] = self.verdict
        return strict_json(d)


@dataclass
class Samples:
    """Per-sample metric values and, for a per-example metric, each example's score summed over them."""

    values: list
    example_sum: np.ndarray | None = None

    def merged(self, other: "Samples") -> "Samples":
        both = None if self.example_sum is None or other.example_sum is None else self.example_sum + other.example_sum
        return Samples(self.values + other.values, both)

    def summary(self) -> SampleStats:
        means = None if self.example_sum is None else self.example_sum / len(self.values)
        return summarize(self.values, example_means=means)


def clean_metric(session: DriftSession, data: Dataset, *, batch_size: int = BATCH,
                 metric: Metric = accuracy, seed: int = 0) -> float:
    """The metric without weight drift (a twin's read noise, if any, still reads: its clean stream of ``seed``)."""
    noise = KeyedNoise(seed, 0, clean=True) if session.noise_layers else None
    return float(metric(_outputs(session, data, session.weights, batch_size, noise), data.labels))


def sample_metrics(session: DriftSession, data: Dataset, drift: DriftModel, *, samples: int, seed: int = 0,
                   batch_size: int = BATCH, metric: Metric = accuracy, only: Sequence[str] | None = None,
                   first: int = 0, on_sample: Callable[[int, float], None] | None = None) -> list[float]:
    """Metric of samples ``first .. first+samples-1``; sample k's drift depends on (seed, k) alone."""
    return run_samples(session, data, drift, samples=samples, seed=seed, batch_size=batch_size, metric=metric,
                       only=only, first=first, on_sample=on_sample).values


def run_samples(session: DriftSession, data: Dataset, drift: DriftModel, *, samples: int, seed: int = 0,
                batch_size: int = BATCH, metric: Metric = accuracy, only: Sequence[str] | None = None,
                first: int = 0, on_sample: Callable[[int, float], None] | None = None) -> Samples:
    """``sample_metrics`` that also keeps each example's score summed over the samples (for the total CI)."""
    if samples < 1:
        raise ConfigError(f"--samples {samples} must be >= 1.")
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be >= 1.")
    out = Samples([], None)
    drift = session.tiled(drift)
    ids = range(first, first + samples)
    draw = lambda k: draw_sample(drift, session.weights, seed, k, only)  # noqa: E731
    upcoming = _PREFETCH.submit(draw, ids[0])
    for i, k in enumerate(ids):
        weights = upcoming.result()
        if i + 1 < len(ids):
            upcoming = _PREFETCH.submit(draw, ids[i + 1])
        outputs = _outputs(session, data, weights, batch_size, KeyedNoise(seed, k) if session.noise_layers else None)
        per = example_scores(metric, outputs, data.labels)
        out.values.append(float(per.mean()) if per is not None else float(metric(outputs, data.labels)))
        if per is not None:
            out.example_sum = per if out.example_sum is None else out.example_sum + per
        if on_sample is not None:
            on_sample(k, out.values[-1])
    return out


def _outputs(session: DriftSession, data: Dataset, weights: dict, batch_size: int, noise=None):
    """What the task's metric reads: class scores (N, C), per-image detections, or per-pixel class ids. Batches
    run in example order (``noise`` is read in that order)."""
    if session.task == "detection":  # ragged outputs: one image per run
        return [detections(session.run_all(feeds, weights, noise)) for feeds, _ in data.batches(1, per_image=True)]
    runs = _runs(session, (feeds for feeds, _ in data.batches(batch_size)), weights, noise)
    if session.task == "segmentation":  # class ids per batch: (N, H, W) ints, not (N, C, H, W) floats
        return np.concatenate([segment(out) for out in runs])
    return np.concatenate(list(runs))


def _runs(session: DriftSession, batches, weights: dict, noise=None):
    """``session.run`` of each batch, in order. A twin's read noise for the next batch is drawn in a background
    thread while onnxruntime runs this one (numpy's generators release the GIL; the draws come one after the other
    in that thread, so every stream is read in example order): with a chip's tiles the normals cost about what the
    network does."""
    if noise is None or not session.noise_feeds:
        for feeds in batches:
            yield session.run(feeds, weights)
        return
    batches = iter(batches)
    current = next(batches, None)
    pending = _NOISE.submit(session.draw_noise, current, noise) if current is not None else None
    while current is not None:
        drawn = pending.result()
        upcoming = next(batches, None)
        if upcoming is not None:
            pending = _NOISE.submit(session.draw_noise, upcoming, noise)
        yield session.run({**current, **drawn}, weights)
        current = upcoming


def evaluate(session: DriftSession, data: Dataset, drift: DriftModel, *, samples: int = 100, seed: int = 0,
             batch_size: int = BATCH, metric: Metric = accuracy, gate: Gate = Gate(),
             model_sha256: str = "", targets: str = "params",
             on_sample: Callable[[int, float], None] | None = None,
             sampler: Callable[[], Samples] | None = None) -> ValidationResult:
    """Clean metric, ``samples`` drifted ones, their statistics and the gate's checks.

    ``sampler`` computes the drifted values elsewhere (``parallel.sharded_sample_metrics``); they equal
    the ones computed here, sample for sample.
    """
    if samples < 1:
        raise ConfigError(f"--samples {samples} must be >= 1.")
    t0 = time.perf_counter()
    clean = clean_metric(session, data, batch_size=batch_size, metric=metric, seed=seed)
    if sampler is not None:
        run = sampler()
    else:
        run = run_samples(session, data, drift, samples=samples, seed=seed, batch_size=batch_size, metric=metric,
                          on_sample=on_sample)
    stats = run.summary()
    values = run.values
    return ValidationResult(
        model=session.source, model_sha256=model_sha256, drift=drift.spec(), targets=targets, seed=seed,
        samples=samples, examples=len(data), metric=getattr(metric, "__name__", "metric"), clean=clean,
        values=values, stats=stats, checks=gate.check(clean, stats, getattr(metric, "__name__", "metric")),
        seconds=time.perf_counter() - t0,
        provider=session.provider, drifting_tensors=len(session.targets),
        drifting_weights=sum(t.size for t in session.targets), data=data.record("data").to_dict(),
        drifted=[t.name for t in session.targets],
        converters=session.converters.describe() if session.converters is not None else "",
        calibration=session.calibration.describe() if session.calibration is not None else "")
