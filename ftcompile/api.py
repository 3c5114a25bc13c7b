"""The public verbs: ``validate``, ``sweep``, ``analyze``, ``inspect``, ``harden`` (torch loads only there).

Example:
    >>> import ftcompile
    >>> result = ftcompile.validate("model.onnx", "val.npz", drift="lognormal:0.6", samples=100)  # doctest: +SKIP
    >>> result.stats.mean, result.passed                                                          # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ftcompile.data import Dataset, as_dataset
from ftcompile.errors import ConfigError, Interrupted
from ftcompile.fileio import sha256_file
from ftcompile.runtime.drift import (CompositeDrift, DriftModel, LogNormalDrift, is_identity, parse_drift,
                                     resolve_targets, sweep_term, term_name, with_compensation, with_value)
from ftcompile.runtime.metrics import Metric, accuracy
from ftcompile.runtime.tasks import task_metric
from ftcompile.runtime.parallel import EXECUTORS, shard_job, sharded_sample_metrics
from ftcompile.runtime.session import DriftSession
from ftcompile.runtime.validate import BATCH, Gate, Samples, ValidationResult, clean_metric, evaluate, run_samples

if TYPE_CHECKING:
    import onnx
    import torch

    from ftcompile.runtime.analyze import Sensitivity


def resolve_drift(drift: "str | DriftModel | None", sigma: float | None,
                  compensation: str | None = None) -> DriftModel:
    """``drift`` (a spec or model), else lognormal at ``sigma`` (the paper's model; 0.6 when neither is given);
    both at once are refused (one source of truth). ``compensation`` (``none``/``global``/``column``) sets the drift
    compensation of its lognormal and device terms."""
    if drift is not None and sigma is not None:
        raise ConfigError(f"--sigma {sigma:g} and --drift {drift if isinstance(drift, str) else drift.spec()!r} both "
                          "give the drift; give it once (e.g. --drift lognormal:0.6 or --sigma 0.6).")
    if drift is not None:
        model = parse_drift(drift) if isinstance(drift, str) else drift
    else:
        model = LogNormalDrift(0.6 if sigma is None else float(sigma))
    return with_compensation(model, compensation)


def resolve_chip(chip, drift: "str | DriftModel | None", sigma: float | None, compensation: str | None = None,
                 converters: bool = False):
    """``(chip, drift model)``: with ``--chip`` (a ``devices.chip.Chip`` or its spec) the chip and the drift it is read
    under (``Chip.drift``: its device at the time ``drift`` or the chip spec gives); without, ``(None,
    resolve_drift(...))``. A chip brings its own converters: ``converters`` (DAC/ADC flags given) is refused."""
    from ftcompile.runtime.devices.chip import parse_chip

    chip = parse_chip(chip)
    if chip is None:
        return None, resolve_drift(drift, sigma, compensation)
    if converters:
        raise ConfigError(f"--chip {chip.name} brings its own converters; drop --dac-bits/--adc-bits/--adc-noise "
                          "(or change them in the chip: --chip NAME,inp_res=...,out_res=...,out_noise=...).")
    if sigma is not None:
        raise ConfigError(f"--sigma {sigma:g} with --chip {chip.name}: the chip's drift is its device's; give a time "
                          f"(--drift {chip.noise_model}:1d) or another drift (--drift lognormal:{sigma:g}).")
    return chip, with_compensation(chip.drift(drift), compensation)


def open_session(model, *, targets: str = "params", bias: bool = False, output: str | None = None,
                 provider: str = "cpu", dac_bits: int | None = None, adc_bits: int | None = None,
                 data=None, task: str = "classification", adc_noise: float = 0.0, calibrate_on=None,
                 calibration=None, chip=None) -> DriftSession:
    """The drift session; with ``dac_bits``/``adc_bits`` the analog twin (``adc_noise``: the ADC's output noise, a
    fraction of its bound), with ``chip`` (a ``devices.chip.Chip``) the chip's twin, at the converter ranges
    ``twin_calibration`` resolves (``calibration``, else ``calibrate_on``, else the ranges the model stores, else
    the first batches of ``data``)."""
    if chip is not None:
        if calibration is None:
            calibration = twin_calibration(model, data, calibrate_on=calibrate_on, output=output, task=task, chip=chip)
        return DriftSession(model, targets=targets, bias=bias, output=output, provider=provider, converters=chip,
                            calibration=calibration, task=task)
    if dac_bits is None and adc_bits is None and not adc_noise:
        return DriftSession(model, targets=targets, bias=bias, output=output, provider=provider, task=task)
    from ftcompile.passes.converters import ConverterSpec

    spec = ConverterSpec(dac_bits, adc_bits, adc_noise)
    if calibration is None:
        calibration = twin_calibration(model, data, calibrate_on=calibrate_on, output=output, task=task)
    return DriftSession(model, targets=targets, bias=bias, output=output, provider=provider, converters=spec,
                        calibration=calibration, task=task)


CALIBRATION_EXAMPLES = 4096  # the first examples whose ranges calibrate a twin (converters.calibrate's 4 batches)


def calibrate_on_data(model, data, *, output: str | None = None, task: str = "classification",
                      role: str = "calibration", chip=None):
    """Converter ranges of ``model`` observed on the first ``CALIBRATION_EXAMPLES`` examples of ``data`` (with
    ``chip``: each tile's input range, ``chip_twin.calibrate_chip``)."""
    from ftcompile.passes.converters import Calibration, calibrate
    from ftcompile.runtime.model import load_onnx

    dataset = bind_data(DriftSession(model, output=output, task=task), data)
    per_run = 1 if task == "detection" else 1024  # a detector runs one image at a time (its export's batch is 1)
    batches = (feeds for feeds, _ in dataset.batches(per_run, per_image=True))
    max_batches = -(-CALIBRATION_EXAMPLES // per_run)
    if chip is not None:
        from ftcompile.passes.chip_twin import calibrate_chip
        from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights

        ranges = calibrate_chip(unshare_weights(constants_to_initializers(load_onnx(model))), batches, chip,
                                max_batches=max_batches)
    else:
        ranges = calibrate(load_onnx(model), batches, max_batches=max_batches)
    used = min(len(dataset), CALIBRATION_EXAMPLES)
    return Calibration(ranges, f"{role} data {dataset.record(role).describe()}, its first {used:,}")


def twin_calibration(model, data=None, *, calibrate_on=None, output: str | None = None,
                     task: str = "classification", chip=None):
    """The converter ranges a twin of ``model`` runs at: calibrated on ``calibrate_on`` when given; else the
    ranges the model stores (a hardened model's, chosen once at hardening); else calibrated on ``data`` (the data
    being measured: the report says so). ``Calibration.source`` names which."""
    from ftcompile.passes.converters import stored_calibration
    from ftcompile.runtime.model import load_onnx

    if calibrate_on is not None:
        return calibrate_on_data(model, calibrate_on, output=output, task=task, chip=chip)
    stored = stored_calibration(load_onnx(model), chip=chip)
    if stored is not None:
        return stored
    if data is None:
        raise ConfigError(f"{model}: stores no {'input ranges for this chip' if chip else 'converter ranges'}; give "
                          "data to calibrate them on (--calibrate-on).")
    return calibrate_on_data(model, data, output=output, task=task, role="measured", chip=chip)


def export_twin(model, out, *, calibrate_on=None, dac_bits: int | None = 8, adc_bits: int | None = 8,
                output: str | None = None, adc_noise: float = 0.0, chip=None):
    """Write the analog twin of ``model`` to ``out`` (atomically, never over the input): DAC/ADC quantizers around
    every crossbar layer (or, with ``chip``, every layer on the chip's tiles, ``passes.chip_twin``) at the ranges the
    model stores (a hardened model's), or calibrated on ``calibrate_on``; the ranges and what they came from are
    recorded in its metadata.

    Returns the ``passes.converters.Calibration`` it used.
    """
    from ftcompile.errors import OutputError
    from ftcompile.fileio import check_writable, write_bytes_atomic
    from ftcompile.metadata import set_metadata
    from ftcompile.passes.converters import TWIN_METADATA, ConverterSpec, insert_converters
    from ftcompile.passes.onnx_graph import constants_to_initializers, unshare_weights
    from ftcompile.runtime.model import load_onnx

    out = Path(out)
    check_writable(out)
    if out.exists() and out.resolve() == Path(str(model)).resolve():
        raise OutputError(f"{out}: is the input model; choose another -o (inputs are never overwritten).")
    from ftcompile.runtime.devices.chip import parse_chip

    chip = parse_chip(chip)
    calibration = twin_calibration(model, calibrate_on=calibrate_on, output=output, chip=chip)
    digital = unshare_weights(constants_to_initializers(load_onnx(model)))
    if chip is not None:
        from ftcompile.passes.chip_twin import insert_chip

        twin = insert_chip(digital, calibration.ranges, chip)
        set_metadata(twin, {TWIN_METADATA: twin_record(calibration, chip=chip)})
    else:
        spec = ConverterSpec(dac_bits, adc_bits, adc_noise)
        twin = insert_converters(digital, calibration.ranges, spec)
        set_metadata(twin, {TWIN_METADATA: twin_record(calibration, spec)})
    write_bytes_atomic(out, twin.SerializeToString())
    return calibration


def export_program(model, out_dir, *, chip, calibrate_on=None, output: str | None = None) -> dict:
    """Write the programming file of ``model`` for ``chip`` into ``out_dir`` (``programming.py``: per tile the target
    conductances of every pair, the column scales, the converter ranges and the compensation reference, and a
    manifest with the model's sha256), at the input ranges the model stores or calibrated on ``calibrate_on``.

    Returns the manifest (a dict).
    """
    from ftcompile.programming import write_program
    from ftcompile.runtime.devices.chip import parse_chip

    chip = parse_chip(chip)
    if chip is None:
        raise ConfigError("export-program needs the chip to program: --chip aihwkit-inference (docs/chip.md).")
    calibration = twin_calibration(model, calibrate_on=calibrate_on, output=output, chip=chip)
    return write_program(model, out_dir, chip, calibration, model_sha256=_sha(model))


def twin_record(calibration, spec=None, chip=None) -> dict:
    """What a model's metadata ``TWIN_METADATA`` records of its twin: the converters (or the chip) and the ranges."""
    if chip is not None:
        return {"chip": chip.spec(), "ranges": calibration.ranges, "calibrated_on": calibration.source}
    return {"dac_bits": spec.dac_bits, "adc_bits": spec.adc_bits, "adc_noise": spec.adc_noise,
            "ranges": calibration.ranges, "calibrated_on": calibration.source}


def bind_data(session: DriftSession, data) -> Dataset:
    return as_dataset(data, session.inputs, num_classes=session.num_classes, task=session.task)


def resolve_task(task: str | None, data) -> str:
    """``task`` checked, or read from the data's layout (``boxes`` -> detection, ``masks`` -> segmentation)."""
    from ftcompile.labels import BoxLabels
    from ftcompile.runtime.tasks import check_task, infer_task

    if task is not None:
        return check_task(task)
    if isinstance(data, Dataset):
        if isinstance(data.labels, BoxLabels):
            return "detection"
        return "segmentation" if data.labels is not None and data.labels.ndim == 3 else "classification"
    if isinstance(data, (str, Path)) and Path(data).is_file():
        try:
            with np.load(data, allow_pickle=False) as f:
                return infer_task(dict.fromkeys(f.files))
        except Exception:  # as_dataset reports an unreadable file with its own message
            return "classification"
    return infer_task(data) if isinstance(data, dict) else "classification"


def _converters(dac_bits, adc_bits, adc_noise) -> bool:
    return dac_bits is not None or adc_bits is not None or bool(adc_noise)


def _sha(model) -> str:
    return sha256_file(model) if isinstance(model, (str, Path)) and Path(model).is_file() else ""


def validate(model, data, *, drift: "str | DriftModel | None" = None, sigma: float | None = None,
             samples: int = 100, seed: int = 0, batch_size: int = BATCH, metric: "str | Metric" = accuracy,
             gate: Gate = Gate(), targets: str = "auto", bias: bool = False, output: str | None = None,
             provider: str = "cpu", on_sample: Callable[[int, float], None] | None = None, workers: int = 1,
             executor: str = "process", ray_address: str | None = None,
             compensation: str | None = None, dac_bits: int | None = None,
             adc_bits: int | None = None, task: str | None = None, adc_noise: float = 0.0,
             calibrate_on=None, calibration=None, chip=None) -> ValidationResult:
    """Measure ``metric`` of an ONNX model under drift over ``samples`` Monte-Carlo draws and apply ``gate``.

    Args:
        model: path to an ONNX file (or a ``ModelProto``).
        data: ``.npz`` path with ``x``/``y``, a ``Dataset``, or an ``(x, y)`` tuple.
        drift: a spec such as ``"quantize:16,lognormal:0.6"`` or a drift model; default lognormal at ``sigma``.
        task: classification, detection or segmentation (``runtime.tasks``); default read from the data's
            layout. The metric defaults to the task's (accuracy, mAP@0.5, Dice).
        targets: which tensors drift: ``auto`` (``crossbar`` for a device drift such as ``pcm:1d``: layer weights,
            biases and normalization digital; ``params`` otherwise: every learned parameter), ``params``,
            ``crossbar`` (``bias``: with their biases).
        dac_bits, adc_bits, adc_noise: run the analog twin; its converter ranges are the ones the model stores
            (a hardened model's), else calibrated on ``calibrate_on`` or, when neither, on ``data``
            (``twin_calibration``); the result's ``calibration`` says which.
        chip: a chip (``devices.chip.Chip`` or a spec, ``"aihwkit-inference"``): its twin (tiles, converters, read
            noise), read under its device at the time ``drift`` (``pcm:1y``) or the chip spec (``t=1y``) gives.
        workers, executor: shard the samples over ``workers`` local processes (``"process"``; one worker
            runs in this process) or Ray tasks (``"ray"``, at ``ray_address`` or a new local instance); the
            values equal the one-process run.
    Returns:
        ``ValidationResult`` with clean and per-sample metrics, statistics and the gate's checks.
    """
    chip, drift_model = resolve_chip(chip, drift, sigma, compensation, _converters(dac_bits, adc_bits, adc_noise))
    targets = resolve_targets(targets, drift_model)
    task = resolve_task(task, data)
    metric = task_metric(task, metric)
    if workers < 1:
        raise ConfigError(f"--workers {workers} must be >= 1.")
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r} is unknown; use one of {', '.join(EXECUTORS)}.")
    if (dac_bits is not None or adc_bits is not None or chip is not None) and workers > 1:
        raise ConfigError("--dac-bits/--adc-bits/--chip run in one process for now; drop --workers.")
    session = open_session(model, targets=targets, bias=bias, output=output, provider=provider, dac_bits=dac_bits,
                           adc_bits=adc_bits, data=data, task=task, adc_noise=adc_noise, calibrate_on=calibrate_on,
                           calibration=calibration, chip=chip)
    dataset = bind_data(session, data)
    sampler = None
    if executor == "ray" or (executor == "process" and workers > 1):
        from ftcompile.runtime.model import load_onnx

        job = shard_job(load_onnx(model).SerializeToString(), dataset, drift_model, seed=seed,
                        batch_size=batch_size, metric=metric, workers=workers,
                        session_kwargs=dict(targets=targets, bias=bias, output=output, provider=provider, task=task))
        sampler = lambda: sharded_sample_metrics(job, samples, workers=workers, executor=executor,  # noqa: E731
                                                 ray_address=ray_address, on_sample=on_sample)
    try:
        result = evaluate(session, dataset, drift_model, samples=samples, seed=seed, batch_size=batch_size,
                          metric=metric, gate=gate, model_sha256=_sha(model), targets=targets, on_sample=on_sample,
                          sampler=sampler)
    except KeyboardInterrupt:
        raise Interrupted("validation interrupted; no report was written.") from None
    return result


@dataclass(frozen=True)
class SweepPoint:
    """The metric at one point of the axis (a sigma, or a time in seconds); ``drift`` is the whole spec
    measured there. Intervals as in ``SampleStats``."""

    x: float
    drift: str
    mean: float
    std: float
    p5: float
    p95: float
    drift_ci_low: float | None
    drift_ci_high: float | None
    total_ci_low: float | None
    total_ci_high: float | None

    @property
    def sigma(self) -> float:
        return self.x


@dataclass
class SweepResult:
    """One curve per model: the metric's statistics at each value of ``axis`` (``sigma`` or ``t``, seconds)
    of the ``vary`` term of ``drift``."""

    drift: str
    vary: str
    axis: str
    samples: int
    seed: int
    curves: dict = field(default_factory=dict)  # model label -> list[SweepPoint]
    metric: str = "accuracy"
    targets: str = "params"
    clean: dict = field(default_factory=dict)  # model label -> its metric without drift

    def crossings(self) -> dict:
        """Per model, where its mean falls to half its clean metric (``crossing.half_loss_crossing``; None if it
        does not on this grid)."""
        from ftcompile.runtime.crossing import half_loss_crossing

        return {label: half_loss_crossing([p.x for p in pts], [p.mean for p in pts], self.clean[label],
                                          log=self.axis == "t") for label, pts in self.curves.items()}


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
            raise ConfigError(f"--sigmas {spec!r} is malformed; use start:stop:step (0:1.5:0.1) or a list "
                              "(0,0.3,0.6).") from None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"--sigmas {spec!r} must list finite sigmas >= 0.")
    return [float(v) for v in values]


def parse_times(spec: "str | Sequence") -> list[float]:
    """``"1s,1h,1d,1w,1mo,1y"`` (or seconds) -> seconds (``units.parse_time``: ``m`` is a minute, ``mo`` a month)."""
    from ftcompile.runtime.devices.models import parse_time

    items = [p for p in spec.split(",") if p.strip()] if isinstance(spec, str) else list(spec)
    if not items:
        raise ConfigError("--times is empty; give times such as 1s,1h,1d,1y.")
    return [parse_time(p) for p in items]


def sweep(models: Sequence, data, *, sigmas: "str | Sequence[float]" = "0:1.5:0.1",
          drift: "str | DriftModel | None" = None, samples: int = 50, seed: int = 0, batch_size: int = BATCH,
          metric: "str | Metric" = accuracy, targets: str = "auto", bias: bool = False, output: str | None = None,
          provider: str = "cpu", vary: str | None = None, times: "str | Sequence | None" = None,
          compensation: str | None = None, dac_bits: int | None = None, adc_bits: int | None = None,
          on_point: Callable[[str, SweepPoint], None] | None = None, task: str | None = None,
          adc_noise: float = 0.0, calibrate_on=None, calibration=None, chip=None) -> SweepResult:
    """Accuracy-vs-sigma curves of several models; one session per model, reused across sigmas.

    ``sigmas`` set the sigma of one term of ``drift``: the one named ``vary`` (``"lognormal"``,
    ``"gaussian"``), else the spec's only sigma term; every other term applies at every point, so
    ``quantize:2,lognormal:0.6`` at sigma 0 measures the quantization alone. A spec with no sigma term,
    or several and no ``vary``, is refused. ``times`` (``"1s,1h,1d,1y"``) sweeps the time since programming
    of a device term (``pcm:1d``; ``pcm`` when no drift is given, the chip's device with ``chip``) instead of a sigma.
    """
    from ftcompile.runtime.devices.chip import parse_chip

    axis = "sigma" if times is None else "t"
    grid = parse_sigmas(sigmas) if times is None else parse_times(times)
    chip = parse_chip(chip)
    if drift is None and times is not None:
        drift = f"{chip.noise_model}:1s" if chip is not None else "pcm:1s"
    sigma = grid[0] if drift is None and chip is None else None
    chip, base = resolve_chip(chip, drift, sigma, compensation, _converters(dac_bits, adc_bits, adc_noise))
    targets = resolve_targets(targets, base)
    index = sweep_term(base, vary, axis)
    term = term_name(base.parts[index] if isinstance(base, CompositeDrift) else base)
    task = resolve_task(task, data)
    metric = task_metric(task, metric)
    result = SweepResult(drift=base.spec(), vary=term, axis=axis, samples=samples, seed=seed,
                         metric=getattr(metric, "__name__", "metric"), targets=targets)
    try:
        for model in models:
            session = open_session(model, targets=targets, bias=bias, output=output, provider=provider,
                                   dac_bits=dac_bits, adc_bits=adc_bits, data=data, task=task, adc_noise=adc_noise,
                                   calibrate_on=calibrate_on, calibration=calibration, chip=chip)
            dataset = bind_data(session, data)
            label = _label(model, result.curves)
            result.clean[label] = clean_metric(session, dataset, batch_size=batch_size, metric=metric, seed=seed)
            points = []
            for value in grid:
                d = with_value(base, value, term, axis)
                if is_identity(d):  # nothing drifts: one clean pass is exact
                    run = Samples([result.clean[label]])
                else:
                    run = run_samples(session, dataset, d, samples=samples, seed=seed, batch_size=batch_size,
                                      metric=metric)
                s = run.summary()
                points.append(SweepPoint(value, d.spec(), s.mean, s.std, s.p5, s.p95, s.drift_ci_low,
                                         s.drift_ci_high, s.total_ci_low, s.total_ci_high))
                if on_point is not None:
                    on_point(label, points[-1])
            result.curves[label] = points
    except KeyboardInterrupt:
        raise Interrupted("sweep interrupted; no plot or report was written.") from None
    return result


def _label(model, taken: dict) -> str:
    """A curve's name: the model file's stem, with its folder when another model of that stem came first."""
    path = Path(str(model))
    return path.stem if path.stem not in taken else f"{path.parent.name}/{path.stem}"


def analyze(model, data, *, drift: "str | DriftModel | None" = None, sigma: float | None = None, samples: int = 30,
            seed: int = 0, batch_size: int = BATCH, metric: "str | Metric" = accuracy, targets: str = "auto",
            bias: bool = False, output: str | None = None, provider: str = "cpu",
            on_layer: Callable | None = None, compensation: str | None = None,
            task: str | None = None) -> "Sensitivity":
    """Per-layer drift sensitivity: drift one layer at a time (and all of them) and rank layers by the drop.

    Example:
        >>> s = ftcompile.analyze("lenet.onnx", "val.npz", sigma=0.6, samples=30)   # doctest: +SKIP
        >>> s.layers[0].layer, s.layers[0].drop                                      # doctest: +SKIP
        ('/conv1/Conv', 0.12)
    """
    from ftcompile.runtime.analyze import analyze_session

    drift_model = resolve_drift(drift, sigma, compensation)
    task = resolve_task(task, data)
    session = open_session(model, targets=resolve_targets(targets, drift_model), bias=bias, output=output,
                           provider=provider, task=task)
    dataset = bind_data(session, data)
    try:
        return analyze_session(session, dataset, drift_model, samples=samples, seed=seed, batch_size=batch_size,
                               metric=task_metric(task, metric), on_layer=on_layer)
    except KeyboardInterrupt:
        raise Interrupted("analysis interrupted; no report was written.") from None


def require_torch(verb: str) -> None:
    """A one-line error (exit 2) naming what to install, instead of an ImportError deep inside ``verb``."""
    import importlib

    missing = []
    for name in ("torch", "botorch"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"{verb} needs {' and '.join(missing)}; install them with pip install 'ftcompile[harden]' "
                          "(validate, sweep and analyze run without).")


def load_model(path, *, output: str | None = None):
    """Import an ONNX or ``.pt2`` model into a trainable ``torch.fx`` graph, parity-checked (needs torch).

    Example:
        >>> m = ftcompile.load_model("lenet.onnx")            # doctest: +SKIP
        >>> m.module, m.parity.ok, m.sources["conv1.weight"]   # doctest: +SKIP
    """
    require_torch("importing a model for training (load_model, inspect)")
    from ftcompile.frontend import load_model as _load

    return _load(path, output=output)


@dataclass
class HardenResult:
    """What ``harden`` produced: the signed-off model, its rates, the trials and both validations."""

    model: str
    out: Path
    config: dict
    sites: list
    rates: list
    trials: list
    best_trial: int | None
    before: ValidationResult
    after: "ValidationResult | None"  # set by the sign-off
    torch_before: float
    torch_after: float
    seconds: float
    report_json: Path | None = None
    report_markdown: Path | None = None
    plot: Path | None = None
    journal: Path | None = None
    peak_mb: float = 0.0  # this process's own peak memory (worker processes not included)
    warnings: list = field(default_factory=list)  # the hardened model came out worse, the data overlap, ...
    train_sigma: float | None = None  # the lognormal sigma the final fit trained under (+noise methods)
    blend: dict | None = None  # {"share": a, "scores": [[a, mean, stderr], ...]}: the source's weights blended in
    final_epochs: int | None = None  # the final fit's epochs (auto resolved)
    data: dict = field(default_factory=dict)  # role -> provenance.DataRecord dict (train, val, signoff)
    signoff_kind: str = "test"  # test, holdout or validation (signoff.py)
    signoff_statement: str = ""  # what the after/before numbers are, in one sentence
    calibration: str = ""  # the analog twin's converter ranges: what they were calibrated on
    lr_scale: float = 1.0  # the final fine-tune's learning rate relative to --lr (the recipe's)
    sigma_auto: dict | None = None  # --sigma auto: the sigma found, the clean metric and every point measured

    @property
    def passed(self) -> bool:
        return self.after.passed

    @property
    def verdict(self) -> str:
        return {"pass": "signed-off", "fail": "not-signed-off", "measured": "measured"}[self.after.verdict]


def _blend_json(blend) -> dict | None:
    return None if blend is None else {"share": blend.alpha, "scores": [list(s) for s in blend.scores]}


def harden(model, train, val, *, test=None, out: "str | Path | None" = None, config=None, gate: Gate = Gate(),
           resume: bool = False, validate_samples: int = 100, plot: bool = True,
           on_trial: Callable | None = None, on_stage: Callable[[str], None] | None = None) -> HardenResult:
    """Harden an ONNX model against drift at ``config.sigma`` and sign it off with the runtime.

    The line: import (parity-checked) -> validate the source -> insert dropout (or FTNA's code head) ->
    search rates x fine-tune weights -> write back into the source ONNX -> validate that ONNX (the sign-off)
    -> write model, reports, plot.

    Args:
        model: ONNX (or ``.pt2``) path.
        train, val, test: datasets (``.npz`` paths, ``Dataset`` or ``(x, y)``). Every choice (training noise,
            trials, blend) scores on ``val``; the sign-off runs on ``test`` when given, else on the share
            ``config.holdout`` of ``val`` held out before any choice (``signoff.py``); with ``holdout`` 0 and no
            ``test`` the numbers are validation numbers and a gate is refused.
        config: ``HardenConfig`` (method, trials, epochs, samples, workers, ...).
    Returns:
        ``HardenResult``; the hardened model is written to ``out`` even when the gate fails (marked so).
    Example:
        >>> from ftcompile.search.harden import HardenConfig
        >>> r = harden("lenet.onnx", "train.npz", "val.npz", config=HardenConfig(sigma=0.6))  # doctest: +SKIP
    """
    import time

    require_torch("harden")
    from ftcompile.export import to_onnx
    from ftcompile.frontend import load_model
    from ftcompile.frontend.torch_import import is_factory_spec
    from ftcompile.passes.dropout import insert_dropout
    from ftcompile.search.drifting import onnx_drift_keys
    from ftcompile.search.harden import HardenConfig, config_dict, journal_path_for, search
    from ftcompile.search.journal import Journal

    import torch

    if is_factory_spec(model) or isinstance(model, torch.nn.Module):
        return harden_module(model, train, val, test=test, out=out, config=config, gate=gate, resume=resume,
                             validate_samples=validate_samples, plot=plot, on_trial=on_trial, on_stage=on_stage)
    stage = on_stage or (lambda s: None)
    cfg = config or HardenConfig()
    task = resolve_task(None, train)
    if task == "detection":
        raise ConfigError(f"{train}: holds detection labels; an ONNX detector (NMS, data-dependent shapes) cannot be "
                          "fine-tuned from its graph: give its nn.Module factory instead (package.module:factory).")
    if task == "segmentation" and (cfg.strategy.ecoc or cfg.objective == "loss"):
        raise ConfigError(f"--method {cfg.method} / --objective {cfg.objective} are for classifiers; a segmenter "
                          "is searched on its Dice (choose another method or --objective).")
    _check_signoff_args(cfg, gate, test, validate_samples, task)
    t0 = time.perf_counter()
    paths = _harden_paths(model, out)  # checked writable before any work
    if cfg.sigma != "auto":  # a --resume mismatch fails now, before any work
        Journal(journal_path_for(paths["onnx"]), config_dict(cfg), resume=resume)
    stage("importing model")
    imported = load_model(model)
    roles = _harden_data(imported, model, train, val, test, task, cfg.holdout)
    calibration = _twin_calibration(imported.onnx_model, roles.train, cfg, task)
    cfg, sigma_auto = _resolve_sigma(cfg, imported.onnx_model, roles, task, stage, calibration)
    journal = Journal(journal_path_for(paths["onnx"]), config_dict(cfg), resume=resume)
    drift, metric = cfg.drift_model(), task_metric(task, cfg.metric())
    stage("validating the source model")
    before = _measure(imported.onnx_model, roles.signoff, cfg, drift, metric, task, validate_samples, calibration)
    before.model, before.model_sha256 = str(model), _sha(model)
    hooks = _train_converters(imported, calibration, cfg)
    sites = insert_dropout(imported.module, channel=cfg.channel)
    head = None
    if cfg.strategy.ecoc:
        from ftcompile.passes.ecoc import attach_ecoc_head

        head = attach_ecoc_head(imported, cfg.code_bits, cfg.seed)
    keys = onnx_drift_keys(imported, targets=cfg.targets, bias=cfg.bias,
                           runtime=_twin_graph(imported, calibration, cfg))
    if head is not None:
        keys = _ecoc_keys(keys, head)
    stage(f"searching rates for {len(sites)} dropout sites" if cfg.searches else f"fine-tuning ({cfg.method})")
    outcome = search(head.model if head else imported.module, sites, roles.train, roles.val, cfg, journal=journal,
                     on_trial=on_trial, loss_fn=head.loss if head else None, keys=keys, converters=hooks, task=task)
    stage("exporting and signing off")
    calibration = _trained_calibration(hooks, calibration)
    result = _result(str(model), paths, cfg, sites, outcome, before, journal, roles, calibration, sigma_auto)
    imported.module.cpu()
    if hooks is not None:  # the exported model is the digital one; the sign-off builds its twin
        hooks.remove()
    if head is not None:
        head.model.cpu()
    extra = {"ecoc_codes": head.codes.tolist()} if head else {}
    _sign_off(result, lambda meta: to_onnx(imported, sites=sites, metadata=meta, head=head), cfg, roles, gate,
              validate_samples, drift, metric, task, calibration, extra)
    _finish(result, model, paths, roles, cfg, drift, metric, task, plot, stage, calibration, t0)
    return result


def harden_module(model: "torch.nn.Module | str", train, val, *, test=None, out: "str | Path", config=None,
                  gate: Gate = Gate(), resume: bool = False, validate_samples: int = 100, plot: bool = True,
                  on_trial: Callable | None = None, on_stage: Callable[[str], None] | None = None) -> HardenResult:
    """Harden a detector given as an ``nn.Module`` (or a ``package.module:factory`` that returns one).

    For models the ONNX importer cannot fine-tune (NMS, RoIAlign, data-dependent shapes). The module follows
    torchvision's contract: in training mode ``model(images, targets)`` returns a dict of losses (their sum
    is the training loss), in eval mode a list of per-image ``boxes``/``scores``/``labels``. The line:
    fold each Conv -> BatchNorm pair (``passes.fold_norm``: what the chip stores) -> export the module to ONNX
    (``OUT.source.onnx``, the "before" of the sign-off) -> match the export's drifting tensors to the module's
    parameters (``drifting.module_drift_keys``) ->
    dropout sites on the module (``insert_module_dropout``) -> the method's search and fine-tune, scored by the
    runtime's mAP under drift with the runtime's own draws -> export -> the same runtime sign-off on the exported
    ONNX. The objective, the training noise and the sign-off drift the same tensors (a test checks the objective
    against ``validate`` of the export).
    """
    import copy
    import time

    require_torch("harden")
    import torch

    from ftcompile.export import save_onnx, set_metadata
    from ftcompile.frontend.torch_import import detector_to_onnx, is_factory_spec, load_factory
    from ftcompile.passes.fold_norm import fold_batchnorm
    from ftcompile.passes.module_dropout import insert_module_dropout
    from ftcompile.search.drifting import module_drift_keys
    from ftcompile.search.harden import HardenConfig, config_dict, journal_path_for, search
    from ftcompile.search.journal import Journal
    from ftcompile.signoff import assign_roles

    stage = on_stage or (lambda s: None)
    cfg = config or HardenConfig()
    label = str(model) if is_factory_spec(model) else type(model).__name__
    task = resolve_task(None, train)
    if task != "detection":
        raise ConfigError(f"{label}: a model given as a module is hardened as a detector, and {train} holds {task} "
                          "labels; export a classifier or segmenter to ONNX and harden that file.")
    if cfg.strategy.ecoc or cfg.objective == "loss":
        raise ConfigError(f"--method {cfg.method} / --objective {cfg.objective} are for classifiers; a detector is "
                          "searched on its mAP (choose another method or --objective).")
    if out is None:
        raise ConfigError(f"{label}: a module has no file to name the output after; give --out.")
    if cfg.dac_bits is not None or cfg.adc_bits is not None or cfg.chip:  # adc_noise needs adc_bits (HardenConfig)
        raise ConfigError("--dac-bits/--adc-bits/--chip: converters in training need an ONNX model (a module's layers "
                          "are not mapped to ONNX nodes); validate the exported detector with them instead.")
    _check_signoff_args(cfg, gate, test, validate_samples, task)
    t0 = time.perf_counter()
    paths = _harden_paths(None, out)
    paths["source"] = paths["onnx"].with_name(paths["onnx"].stem + ".source.onnx")
    if cfg.sigma != "auto":
        Journal(journal_path_for(paths["onnx"]), config_dict(cfg), resume=resume)
    stage("building and exporting the source model")
    module = load_factory(model) if isinstance(model, str) else copy.deepcopy(model)  # the caller's is never touched
    module.cpu().eval()
    roles = assign_roles(*(_module_data(d, task) for d in (train, val)),
                         None if test is None else _module_data(test, task), cfg.holdout)
    (x0,) = roles.train.inputs.values()
    example = torch.from_numpy(x0[:1])
    fold_batchnorm(module, detector_to_onnx(module, example))  # what the chip stores, and the exporter writes
    source = detector_to_onnx(module, example)
    save_onnx(source, paths["source"])
    cfg, sigma_auto = _resolve_sigma(cfg, source, roles, task, stage)
    journal = Journal(journal_path_for(paths["onnx"]), config_dict(cfg), resume=resume)
    keys = module_drift_keys(module, source, targets=cfg.targets, bias=cfg.bias)
    drift, metric = cfg.drift_model(), task_metric(task, cfg.metric())
    stage("validating the source model")
    before = _measure(paths["source"], roles.signoff, cfg, drift, metric, task, validate_samples)
    sites = insert_module_dropout(module, channel=cfg.channel)
    stage(f"searching rates for {len(sites)} dropout sites" if cfg.searches else f"fine-tuning ({cfg.method})")
    outcome = search(module, sites, roles.train, roles.val, cfg, journal=journal, on_trial=on_trial, keys=keys,
                     task=task)
    stage("exporting and signing off")
    result = _result(label, paths, cfg, sites, outcome, before, journal, roles, None, sigma_auto)
    module.cpu()

    def export(meta: dict):
        proto = detector_to_onnx(module, example)
        set_metadata(proto, meta)
        return proto

    _sign_off(result, export, cfg, roles, gate, validate_samples, drift, metric, task)
    _finish(result, paths["source"], paths, roles, cfg, drift, metric, task, plot, stage, None, t0)
    return result


def _ecoc_keys(keys: dict, head) -> dict:
    """Drift keys of FTNA's model: the imported module sits under ``body.``, and the code layer takes the output
    layer's tensors (same names, the code layer's shapes)."""
    from dataclasses import replace

    params = dict(head.model.named_parameters())
    out = {}
    for name, key in keys.items():
        p = params[f"body.{name}"]
        shape = tuple(p.shape[::-1] if key.transposed else p.shape) if name in head.keys else key.shape
        out[f"body.{name}"] = replace(key, shape=shape)
    return out


AUTO_SIGMA_SAMPLES = 10  # drift samples per sigma tried by --sigma auto


def _resolve_sigma(cfg, source, roles, task: str, stage, calibration=None) -> tuple:
    """``--sigma auto``: the config at the sigma where the source model keeps half its clean metric on the
    validation data (``crossing.find_half_loss``, with the selection draws), and the record of the search; else the
    config as it is and None. Each sigma is measured as the sign-off will measure it: the config's drift at that
    sigma (its compensation too) on the config's targets, through the analog twin at ``calibration`` when the config
    has converters."""
    if cfg.sigma != "auto":
        return cfg, None
    from ftcompile.runtime.crossing import find_half_loss
    from ftcompile.search.objective import selection_seed

    stage("finding the sigma where the source loses half its clean metric (--sigma auto)")
    metric = task_metric(task, cfg.metric())
    session = open_session(source, targets=cfg.targets, bias=cfg.bias, task=task, dac_bits=cfg.dac_bits,
                           adc_bits=cfg.adc_bits, adc_noise=cfg.adc_noise, calibration=calibration)
    data = bind_data(session, roles.val)
    seed = selection_seed(cfg.seed)
    clean = clean_metric(session, data, metric=metric, seed=seed)
    if clean <= 0:
        raise ConfigError(f"--sigma auto: the source's clean {getattr(metric, '__name__', 'metric')} on the validation "
                          "data is 0, nothing to halve; give --sigma.")
    measure = lambda s: run_samples(session, data, cfg.with_sigma(s).drift_model(),  # noqa: E731
                                    samples=AUTO_SIGMA_SAMPLES, seed=seed, metric=metric).summary().mean
    sigma, points = find_half_loss(measure, clean)
    if sigma is None:
        raise ConfigError(f"--sigma auto: the source keeps more than half its clean {getattr(metric, '__name__', '')} "
                          f"up to lognormal sigma {points[-1][0]:g} on the validation data; give --sigma.")
    sigma = round(sigma, 3)
    return cfg.with_sigma(sigma), {"sigma": sigma, "clean": clean, "points": [list(p) for p in points],
                                   "samples": AUTO_SIGMA_SAMPLES, "data": "val"}


def _gated(gate: Gate) -> bool:
    return gate.min_accuracy is not None or gate.max_drop is not None


def _check_signoff_args(cfg, gate: Gate, test, validate_samples: int, task: str = "classification") -> None:
    """Refuse, before any work, a gate over validation numbers, a statistic the task's metric cannot give and a
    sign-off without samples."""
    if validate_samples < 1:
        raise ConfigError(f"--validate-samples {validate_samples} must be >= 1.")
    metric = task_metric(task, cfg.metric())  # a mean over examples has per_example (runtime/metrics.example_scores)
    if gate.stat == "total_ci_low" and gate.min_accuracy is not None and not hasattr(metric, "per_example"):
        raise ConfigError(f"--stat total_ci_low needs a metric that is a mean over examples, and "
                          f"{getattr(metric, '__name__', 'this metric')} is not; gate on --stat auto, drift_ci_low, "
                          "mean or p5.")
    from ftcompile.signoff import check_gate, kind_of

    check_gate(kind_of(test, cfg.holdout), _gated(gate))


def _measure(model, data: Dataset, cfg, drift: DriftModel, metric: Metric, task: str, samples: int,
             calibration=None, gate: Gate = Gate()) -> ValidationResult:
    """The runtime's measurement of ``model`` on ``data`` as harden configures it (drift, targets, twin), with
    the sign-off's seed (never the objective's, ``objective.selection_seed``)."""
    return validate(model, data, drift=drift, samples=samples, seed=cfg.seed, gate=gate, metric=metric,
                    targets=cfg.targets, bias=cfg.bias, task=task, dac_bits=cfg.dac_bits, adc_bits=cfg.adc_bits,
                    adc_noise=cfg.adc_noise, calibration=calibration, chip=getattr(cfg, "chip", None))


def _result(label: str, paths: dict, cfg, sites, outcome, before: ValidationResult, journal, roles,
            calibration, sigma_auto: dict | None = None) -> HardenResult:
    from ftcompile.search.harden import config_dict

    return HardenResult(label, paths["onnx"], config_dict(cfg), list(sites.layers), outcome.rates, outcome.trials,
                        outcome.best_trial, before, None, outcome.base_score.mean, outcome.final_score.mean, 0.0,
                        paths["json"], paths["md"], None, journal.path if journal.path.exists() else None,
                        train_sigma=outcome.train_sigma, blend=_blend_json(outcome.blend),
                        final_epochs=outcome.final_epochs, data=roles.records(), signoff_kind=roles.kind,
                        signoff_statement=roles.statement(), warnings=list(roles.warnings),
                        calibration=calibration.describe() if calibration is not None else "",
                        lr_scale=outcome.lr_scale, sigma_auto=sigma_auto)


def _finish(result: HardenResult, source, paths: dict, roles, cfg, drift: DriftModel, metric: Metric, task: str,
            plot: bool, stage, calibration, t0: float) -> None:
    """The before/after plot, time, memory and the reports."""
    import time

    from ftcompile.resources import peak_rss_mb
    from ftcompile.search.report import write_harden_reports

    if plot and _sweepable(drift):
        stage("sweeping sigma for the before/after plot")
        result.plot = _before_after_plot(source, paths, roles.signoff, cfg, drift, metric, task, calibration)
    elif plot:
        stage(f"no before/after plot: drift {drift.spec()} has no single sigma term to sweep")
    result.seconds = time.perf_counter() - t0
    result.peak_mb = peak_rss_mb()
    write_harden_reports(result, paths["json"], paths["md"])


def _module_data(data, task: str) -> Dataset:
    """A module has no ONNX input to bind to: a batch of float images ``x`` (N, C, H, W), checked for the task."""
    from ftcompile.data import InputSpec

    return as_dataset(data, [InputSpec("x", ("N", None, None, None), np.dtype(np.float32))], task=task)


def _twin_calibration(model: "onnx.ModelProto", train: Dataset, cfg, task: str):
    """With converters: the twin's ranges, calibrated once on the training data (what a chip's calibration sees),
    then used in training, in both validations and stored in the hardened model; None without converters."""
    if getattr(cfg, "chip", None):
        from ftcompile.runtime.devices.chip import parse_chip

        return calibrate_on_data(model, train, task=task, role="training", chip=parse_chip(cfg.chip))
    if cfg.dac_bits is None and cfg.adc_bits is None:
        return None
    return calibrate_on_data(model, train, task=task, role="training")


def _twin_graph(imported, calibration, cfg):
    """The graph the sign-off drifts when it runs the analog twin (its biases are added digitally), else None."""
    if calibration is None:
        return None
    if getattr(cfg, "chip", None):
        from ftcompile.passes.chip_twin import insert_chip
        from ftcompile.runtime.devices.chip import parse_chip

        return insert_chip(imported.onnx_model, calibration.ranges, parse_chip(cfg.chip), expose_weights=False)
    from ftcompile.passes.converters import ConverterSpec, insert_converters

    return insert_converters(imported.onnx_model, calibration.ranges, ConverterSpec(cfg.dac_bits, cfg.adc_bits),
                             expose_weights=False)


def _train_converters(imported, calibration, cfg):
    """The twin's converters as hooks on the module's crossbar layers at ``calibration``'s ranges (the sign-off's
    twin runs at the same ranges); None without converters."""
    if calibration is None:
        return None
    if getattr(cfg, "chip", None):
        return _train_chip(imported, calibration, cfg)
    from ftcompile.passes.converter_hooks import attach_converters
    from ftcompile.passes.converters import ConverterSpec

    return attach_converters(imported.module, imported.sources, imported.onnx_model, calibration.ranges,
                             ConverterSpec(cfg.dac_bits, cfg.adc_bits, cfg.adc_noise), seed=cfg.seed)


def _train_chip(imported, calibration, cfg):
    """The chip's twin on the module's crossbar layers (``passes.chip_hooks``), reading the compensation factors of
    the drift the objective draws per tile (``tiles.ChipDrift``, ``hooks.drift``: the search scores and trains with
    it); input ranges trained with the weights when the chip learns them and the method trains."""
    from ftcompile.passes.chip_hooks import attach_chip
    from ftcompile.passes.chip_twin import chip_layers
    from ftcompile.runtime.devices.chip import parse_chip
    from ftcompile.runtime.devices.tiles import ChipDrift

    chip = parse_chip(cfg.chip)
    drift = ChipDrift(cfg.drift_model(), tuple(chip_layers(imported.onnx_model, chip)))
    learn = chip.learn_input_range and cfg.strategy.trains
    return attach_chip(imported.module, imported.sources, imported.onnx_model, calibration.ranges, chip,
                       drift=drift, seed=cfg.seed, learn=learn)


def _trained_calibration(hooks, calibration):
    """After training: a chip's input ranges as trained (stored in the hardened model, read by every later twin);
    else ``calibration`` as it was."""
    if hooks is None or not hasattr(hooks, "ranges") or not any(isinstance(r, str) for f in hooks.forwards
                                                                 for r in f.ranges.values()):
        return calibration
    from ftcompile.passes.converters import Calibration

    return Calibration(hooks.ranges(), f"{calibration.source}, then learned in hardware-aware training")


def _sweepable(drift: DriftModel) -> bool:
    try:
        sweep_term(drift)
        return True
    except ConfigError:
        return False


def _harden_paths(model, out) -> dict[str, Path]:
    from ftcompile.fileio import check_free_space, check_writable

    out = Path(out) if out else Path(str(model)).with_name(Path(str(model)).stem + ".hardened.onnx")
    paths = {"onnx": out, **{k: out.with_name(out.stem + suffix) for k, suffix in
                             (("json", ".report.json"), ("md", ".report.md"), ("png", ".sweep.png"))}}
    for p in paths.values():
        check_writable(p)
    # the hardened model is about the source's size; reports, plot and journal add a few MiB
    size = Path(str(model)).stat().st_size if Path(str(model)).is_file() else 0
    check_free_space(out, 2 * size + 16 * 2**20)
    return paths


def _harden_data(imported, model, train, val, test, task: str, holdout: float):
    """The data roles (``signoff.py``), each bound to the model's inputs (a classifier may have several: token ids
    and an attention mask) and its number of classes (scores on axis -1, or axis 1 for a segmenter's (N, C, H, W))."""
    from ftcompile.data import InputSpec
    from ftcompile.runtime.model import elem_dtype, graph_inputs, input_shape
    from ftcompile.signoff import assign_roles

    inputs = graph_inputs(imported.onnx_model)
    if len(inputs) != 1 and task != "classification":
        raise ConfigError(f"{model}: harden takes a segmenter with one input (this one has {len(inputs)}).")
    specs = [InputSpec(v.name, tuple(input_shape(v)), elem_dtype(v)) for v in inputs]
    out_dims = input_shape(next(o for o in imported.onnx_model.graph.output if o.name == imported.output))
    axis = 1 if task == "segmentation" else -1
    classes = out_dims[axis] if len(out_dims) > 1 and isinstance(out_dims[axis], int) else None
    bind = lambda d: as_dataset(d, specs, num_classes=classes, task=task)  # noqa: E731
    return assign_roles(bind(train), bind(val), None if test is None else bind(test), holdout)


def _sign_off(result: HardenResult, export: Callable[[dict], "onnx.ModelProto"], cfg, roles, gate: Gate,
              samples: int, drift: DriftModel, metric: Metric, task: str = "classification", calibration=None,
              extra: dict | None = None) -> None:
    """Export the fine-tuned model (``export(metadata)`` -> ONNX), validate that ONNX with the runtime on the
    sign-off data, write it with its record: the drift, the data of every role, the twin's ranges."""
    from ftcompile.export import save_onnx, set_metadata
    from ftcompile.search.report import outcome_warnings

    # the drift actually used: the spec, its lognormal sigma (None if it has none) and the drifting tensors
    meta = {"method": cfg.method, "sigma": cfg.sigma, "drift": drift.spec(), "targets": cfg.targets,
            "bias": cfg.bias, "source_sha256": _sha(result.model),
            "dropout_rates": dict(zip(result.sites, result.rates)), "train_sigma": result.train_sigma,
            "blend": result.blend, "final_epochs": result.final_epochs, "lr_scale": result.lr_scale,
            "sigma_auto": result.sigma_auto, "data": result.data,
            "signoff_kind": result.signoff_kind, "verdict": "pending", **(extra or {})}
    if calibration is not None:
        from ftcompile.passes.converters import TWIN_METADATA, ConverterSpec
        from ftcompile.runtime.devices.chip import parse_chip

        chip = parse_chip(getattr(cfg, "chip", None))
        meta[TWIN_METADATA] = twin_record(calibration, None if chip else ConverterSpec(cfg.dac_bits, cfg.adc_bits,
                                                                                      cfg.adc_noise), chip)
    proto = export(meta)
    result.after = after = _measure(proto, roles.signoff, cfg, drift, metric, task, samples, calibration, gate)
    result.warnings += outcome_warnings(result.before, after, cfg.method)
    for r in (result.before, after):
        r.data = roles.signoff.record("signoff").to_dict()
    set_metadata(proto, {"verdict": result.verdict, "signoff": {
        "mean": after.stats.mean, "total_ci_low": after.stats.total_ci_low, "p5": after.stats.p5,
        "clean": after.clean, "samples": after.samples, "seed": after.seed,
        "examples": after.examples, "checks": [c.__dict__ for c in after.checks], "warnings": result.warnings}})
    save_onnx(proto, result.out, source=result.model)
    after.model, after.model_sha256 = str(result.out), sha256_file(result.out)


def _before_after_plot(model, paths: dict, data: Dataset, cfg, drift: DriftModel, metric: Metric,
                       task: str = "classification", calibration=None) -> Path:
    from ftcompile.runtime.plot import plot_curves

    curves = sweep([model, paths["onnx"]], data, sigmas="0:1.2:0.2", drift=drift, samples=20, seed=cfg.seed,
                   metric=metric, targets=cfg.targets, bias=cfg.bias, task=task, dac_bits=cfg.dac_bits,
                   adc_bits=cfg.adc_bits, adc_noise=cfg.adc_noise, calibration=calibration)
    labels = ["source (before)", f"hardened ({cfg.method})"]
    return plot_curves(list(zip(labels, curves.curves.values())), paths["png"],
                       title=f"{getattr(metric, '__name__', 'metric')} under {drift.spec()}, hardened there",
                       metric=getattr(metric, "__name__", "metric"),
                       xlabel=f"{curves.vary} sigma")
