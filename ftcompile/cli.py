"""The ``ftcompile`` command: parses flags, calls ``ftcompile.api``, renders with rich. No logic here.

Exit codes: 0 pass (or nothing to gate), 1 gate failed, 2 bad input or usage, 3 internal error,
130 interrupted.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ftcompile import __version__, api
from ftcompile.errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, FtcompileError
from ftcompile.fileio import check_writable
from ftcompile.runtime.devices.models import format_time
from ftcompile.runtime.stats import format_ci, strict_json
from ftcompile.signoff import HOLDOUT

EXIT_INTERNAL = 3
HELP = ("Harden neural networks against analog weight drift and sign them off.\n\n"
        "Exit codes: 0 pass, 1 gate failed, 2 bad input or usage, 3 internal error, 130 interrupted.")
# add_completion: typer's --install-completion and --show-completion (bash, zsh, fish, PowerShell)
app = typer.Typer(help=HELP, add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ftcompile {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print ftcompile's version and exit.")) -> None:
    pass


def fail(exc: BaseException) -> None:
    if isinstance(exc, FtcompileError):
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        err.print("interrupted", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED)
    err.print(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
              "(please report it with the command line)", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INTERNAL)


@contextmanager
def guarded():
    try:
        yield
    except typer.Exit:
        raise
    except BaseException as exc:  # every error becomes one line and an exit code
        fail(exc)


@contextmanager
def progress(total: int | None, label: str, quiet: bool):
    """A rich progress bar on a terminal; nothing when piped, in CI, or with --quiet."""
    if quiet or not err.is_terminal:
        yield lambda *a: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda *a: bar.advance(task)


def _workers_opt(text: str):
    return typer.Option(1, "--workers", help=text)


def _executor_opt():
    return typer.Option("process", "--executor", help="process (local; one worker runs in this process) or ray.")


def _ray_opt():
    return typer.Option(None, "--ray-address", help="Ray cluster: auto, ray://host:10001 (default: start one).")


def _json(payload, **kwargs) -> str:
    """Strict JSON (NaN and infinities become null): what every report and ``--json`` prints."""
    return json.dumps(strict_json(payload), indent=2, allow_nan=False, **kwargs)


def _outputs(*paths: Optional[Path]) -> None:
    for p in paths:
        if p is not None:
            check_writable(p)


# Options shared by several commands are declared once here, with one default everywhere.
def _metric_opt():
    return typer.Option(None, "--metric", help="accuracy (default), top5; map50 (default) or map for "
                        "detection; dice (default) or iou for segmentation; or package.module:function taking "
                        "(outputs, labels) -> float, higher is better.")


def _targets_opt():
    return typer.Option("auto", "--targets", help="Which tensors drift: auto (crossbar for a device drift such as "
                        "pcm:1d, else params), params (every learned parameter, the paper's model) or crossbar (the "
                        "layers' weight matrices; biases and normalization stay digital).")


def _calibrate_opt():
    return typer.Option(None, "--calibrate-on", help="With --dac-bits/--adc-bits: calibrate the converter ranges on "
                        "this .npz instead of using the ones the model stores (a hardened model's) or, when it "
                        "stores none, the data being measured.")


def _bias_opt():
    return typer.Option(False, "--bias", help="With --targets crossbar, drift layer biases too.")


def _output_opt():
    return typer.Option(None, "--output", help="Output holding class scores, if the model has several.")


def _provider_opt():
    return typer.Option("cpu", "--provider", help="onnxruntime execution provider: cpu or cuda (refused when "
                        "onnxruntime has no such provider).")


def _compensation_opt():
    return typer.Option(None, "--compensation", help="Drift compensation of lognormal and device terms: none, "
                        "global (one digital scale per layer, from a calibration read after programming) or column "
                        "(per output), or mean (lognormal only: the fixed gain exp(-sigma^2/2)); default as the --drift spec says.")


def _dac_opt():
    return typer.Option(None, "--dac-bits", help="Run the analog twin: inputs of every crossbar layer clipped to "
                        "their calibrated range and quantized to 2^B levels.")


def _adc_opt():
    return typer.Option(None, "--adc-bits", help="Run the analog twin: outputs of every crossbar layer clipped to "
                        "their calibrated bound and quantized to 2^B levels (the bias is added digitally after).")


def _adc_noise_opt():
    return typer.Option(0.0, "--adc-noise", help="With --adc-bits: Gaussian read noise at every crossbar output "
                        "before the ADC, its std a fraction of the ADC bound (aihwkit's default is 0.005 of it).")


def _seed_opt():
    return typer.Option(0, "--seed", help="Seed; sample k of a seed is reproducible on its own.")


def _batch_opt():
    return typer.Option(1024, "--batch-size", help="Examples per onnxruntime run.")


def _quiet_opt():
    return typer.Option(False, "--quiet", help="No progress bar or live table.")


def _task_opt():
    return typer.Option(None, "--task", help="classification, detection (boxes/labels/count in the data; metric mAP@0.5, "
                        "or --metric map for 0.5:0.95) or segmentation (masks; metric dice or iou). Default: read "
                        "from the data's arrays.")


def _json_opt():
    return typer.Option(False, "--json", help="Print the JSON report to stdout.")


def _drift_opt():
    return typer.Option(None, "--drift", help="Drift spec, applied in order, e.g. 'quantize:16,lognormal:0.6' "
                        "(models: lognormal:S, gaussian:S, stuck-at:OFF:ON, quantize:N, module.path:attr). "
                        "Default: lognormal at --sigma.")


@app.command()
def validate(
    model: Path = typer.Argument(..., help="ONNX classifier to validate."),
    data: Path = typer.Option(..., "--data", help=".npz with 'x' (or the model's input names) and integer 'y'."),
    sigma: Optional[float] = typer.Option(None, help="Lognormal drift sigma (the paper's eq. 1); 0.6 when no "
                                          "--drift is given."),
    drift: Optional[str] = _drift_opt(),
    compensation: Optional[str] = _compensation_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    calibrate_on: Optional[Path] = _calibrate_opt(),
    samples: int = typer.Option(100, help="Monte-Carlo samples K."),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    top_k: int = typer.Option(1, help="Score top-k accuracy."),
    metric: Optional[str] = _metric_opt(),
    task: Optional[str] = _task_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    output: Optional[str] = _output_opt(),
    min_accuracy: Optional[float] = typer.Option(None, help="Gate: --stat accuracy must be >= this (0-1)."),
    stat: str = typer.Option("mean", help="Statistic gated by --min-accuracy: mean, total_ci_low (95% lower "
                             "bound over drift and the finite example set), drift_ci_low, p5 or min."),
    max_drop: Optional[float] = typer.Option(None, help="Gate: clean - mean accuracy must be <= this."),
    report: Optional[Path] = typer.Option(None, help="Write the JSON report here."),
    markdown: Optional[Path] = typer.Option(None, help="Write the Markdown report here."),
    junit: Optional[Path] = typer.Option(None, help="Write JUnit XML here (one test case per gate)."),
    list_targets: bool = typer.Option(False, "--list-targets", help="Print the drifting tensors and exit."),
    provider: str = _provider_opt(),
    workers: int = _workers_opt("Shard the samples over this many processes or Ray tasks."),
    executor: str = _executor_opt(),
    ray_address: Optional[str] = _ray_opt(),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
) -> None:
    """Measure accuracy under drift; exit 1 when a gate fails."""
    from ftcompile.runtime.metrics import top_k_accuracy
    from ftcompile.runtime.report import to_json, write_reports
    from ftcompile.runtime.validate import Gate

    with guarded():
        if list_targets:
            from ftcompile.runtime.drift import resolve_targets

            drift_model = api.resolve_drift(drift, sigma, compensation)
            session = api.open_session(model, targets=resolve_targets(targets, drift_model), bias=bias, output=output)
            _print_targets(session, as_json)
            return
        gate = Gate(min_accuracy=min_accuracy, stat=stat, max_drop=max_drop)
        _outputs(report, markdown, junit)
        with progress(samples, "drift samples", quiet or as_json) as tick:
            result = api.validate(model, data, drift=drift, sigma=sigma, samples=samples, seed=seed,
                                  batch_size=batch_size, metric=metric or (top_k_accuracy(top_k) if top_k != 1 else None),
                                  task=task, gate=gate,
                                  targets=targets, bias=bias, output=output, provider=provider, on_sample=tick,
                                  workers=workers, executor=executor, ray_address=ray_address,
                                  compensation=compensation, dac_bits=dac_bits, adc_bits=adc_bits,
                                  adc_noise=adc_noise, calibrate_on=calibrate_on)
        write_reports(result, json_path=report, markdown_path=markdown, junit_path=junit)
    if as_json:
        print(_json(to_json(result)))
    else:
        _render_validation(result)
    raise typer.Exit(0 if result.passed else EXIT_GATE_FAILED)


def _print_targets(session, as_json: bool) -> None:
    if as_json:
        print(json.dumps([t.__dict__ for t in session.targets], indent=2, default=list))
        return
    table = Table(title=f"drifting tensors of {session.source}")
    for col in ("tensor", "role", "consumer", "op", "slot", "shape", "size"):
        table.add_column(col)
    for t in session.targets:
        table.add_row(t.name, t.role, t.node, t.op, str(t.slot), str(t.shape), f"{t.size:,}")
    out.print(table)


def _render_validation(result) -> None:
    s = result.stats
    table = Table(title=f"{Path(result.model).name} under {result.drift} ({result.samples} samples)")
    for col in ("clean", "mean", "95% CI (drift+examples)", "95% CI (drift)", "std", "p5", "p50", "p95", "min"):
        table.add_column(col, justify="right")
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    table.add_row(pct(result.clean), pct(s.mean), format_ci(s.total_ci_low, s.total_ci_high),
                  format_ci(s.drift_ci_low, s.drift_ci_high), pct(s.std), pct(s.p5), pct(s.p50), pct(s.p95), pct(s.min))
    out.print(table)
    for c in result.checks:
        mark = "[green]pass[/]" if c.passed else "[bold red]FAIL[/]"
        out.print(f"gate {c.name}: {c.value:.4f} -> {mark}")
    out.print(f"verdict: {result.verdict}  ({result.seconds:.1f} s, {result.provider})")


@app.command()
def sweep(
    models: List[Path] = typer.Argument(..., help="One or more ONNX models to compare."),
    data: Path = typer.Option(..., "--data", help=".npz with 'x' and integer 'y'."),
    sigmas: str = typer.Option("0:1.5:0.1", help="start:stop:step (stop included) or a list 0,0.3,0.6."),
    drift: Optional[str] = _drift_opt(),
    vary: Optional[str] = typer.Option(None, "--vary", help="The drift term whose sigma --sigmas sets (lognormal, "
                                       "gaussian); default the spec's only sigma term. Other terms stay as given."),
    times: Optional[str] = typer.Option(None, "--times", help="Sweep the time since programming of a device term "
                                        "instead (1s,1h,1d,1w,1m,1y; m = 30 days); --drift default pcm. Log-time plot."),
    compensation: Optional[str] = _compensation_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    calibrate_on: Optional[Path] = _calibrate_opt(),
    samples: int = typer.Option(50, help="Monte-Carlo samples per sigma."),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    metric: Optional[str] = _metric_opt(),
    task: Optional[str] = _task_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    output: Optional[str] = _output_opt(),
    plot: Optional[Path] = typer.Option(None, help="Write an accuracy-vs-sigma PNG here."),
    report: Optional[Path] = typer.Option(None, help="Write the curves as JSON here."),
    provider: str = _provider_opt(),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
) -> None:
    """Accuracy-vs-sigma curves of one or more models (the paper's Figure 3): --sigmas sets one term of --drift."""
    from dataclasses import asdict

    from ftcompile.fileio import write_text_atomic
    from ftcompile.runtime.plot import plot_curves

    with guarded():
        _outputs(plot, report)
        grid = api.parse_sigmas(sigmas) if times is None else api.parse_times(times)
        with progress(len(grid) * len(models), "points", quiet or as_json) as tick:
            result = api.sweep(models, data, sigmas=grid, drift=drift, samples=samples, seed=seed,
                               batch_size=batch_size, metric=metric, task=task, targets=targets, bias=bias,
                               output=output, provider=provider, vary=vary, times=times, compensation=compensation,
                               dac_bits=dac_bits, adc_bits=adc_bits, adc_noise=adc_noise, on_point=tick,
                               calibrate_on=calibrate_on)
        payload = {"schema": "ftcompile.sweep/2", "drift": result.drift, "vary": result.vary, "axis": result.axis,
                   "samples": result.samples, "seed": result.seed, "metric": result.metric,
                   "curves": {k: [asdict(p) for p in v] for k, v in result.curves.items()}}
        if plot:
            plot_curves(list(result.curves.items()), plot, title=f"{result.metric} under {result.drift}",
                        xlabel=f"{result.vary} sigma" if times is None else "time since programming (s)",
                        log_x=times is not None, metric=result.metric)
        if report:
            write_text_atomic(report, _json(payload) + "\n")
    if as_json:
        print(_json(payload))
        return
    swept = f"{result.vary} sigma" if times is None else f"{result.vary} time"
    table = Table(title=f"mean accuracy (%) under {result.drift}, {swept} swept, {samples} samples")
    table.add_column("sigma" if times is None else "time", justify="right")
    for name in result.curves:
        table.add_column(name, justify="right")
    for i, value in enumerate(grid):
        table.add_row(f"{value:g}" if times is None else format_time(value), *[f"{100 * pts[i].mean:.2f} ({100 * pts[i].p5:.1f}-{100 * pts[i].p95:.1f})"
                                       for pts in result.curves.values()])
    out.print(table)


@app.command()
def analyze(
    model: Path = typer.Argument(..., help="ONNX classifier to analyze."),
    data: Path = typer.Option(..., "--data", help=".npz with 'x' and integer 'y'."),
    sigma: Optional[float] = typer.Option(None, help="Lognormal drift sigma; 0.6 when no --drift is given."),
    drift: Optional[str] = _drift_opt(),
    compensation: Optional[str] = _compensation_opt(),
    samples: int = typer.Option(30, help="Monte-Carlo samples per layer."),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    metric: Optional[str] = _metric_opt(),
    task: Optional[str] = _task_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    output: Optional[str] = _output_opt(),
    report: Optional[Path] = typer.Option(None, help="Write the JSON report here."),
    markdown: Optional[Path] = typer.Option(None, help="Write the Markdown table here."),
    plot: Optional[Path] = typer.Option(None, help="Write a bar plot PNG of the drops here."),
    provider: str = _provider_opt(),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
) -> None:
    """Per-layer drift sensitivity: drift one layer at a time, rank layers by the accuracy they cost."""
    from ftcompile.fileio import write_text_atomic
    from ftcompile.runtime.analyze import sensitivity_markdown
    from ftcompile.runtime.plot import plot_sensitivity

    with guarded():
        _outputs(report, markdown, plot)
        with progress(None, "layers", quiet or as_json) as tick:  # the count is known once the model is read
            result = api.analyze(model, data, drift=drift, sigma=sigma, samples=samples, seed=seed,
                                 batch_size=batch_size, metric=metric, task=task, targets=targets, bias=bias,
                                 output=output, provider=provider, on_layer=tick, compensation=compensation)
        payload = {"schema": "ftcompile.analysis/1", **result.to_dict()}
        if report:
            write_text_atomic(report, _json(payload) + "\n")
        if markdown:
            write_text_atomic(markdown, sensitivity_markdown(result))
        if plot:
            plot_sensitivity(result, plot)
    if as_json:
        print(_json(payload))
        return
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    table = Table(title=f"{Path(str(model)).name}: one layer drifted at a time, {result.drift}, {samples} samples "
                        f"(clean {pct(result.clean)}%)")
    for col in ("layer", "op", "weights", "mean %", "95% CI", "drop (points)"):
        table.add_column(col, justify="right" if col != "layer" else "left")
    for r in [*result.layers, result.all_layers]:
        table.add_row(r.layer, r.op, f"{r.weights:,}", pct(r.mean), format_ci(r.drift_ci_low, r.drift_ci_high),
                      pct(r.drop), style="dim" if r is result.all_layers else None)
    out.print(table)


def _duration(text: Optional[str]) -> Optional[float]:
    from ftcompile.units import parse_time

    return None if text is None else parse_time(text, what="--time-budget")


@app.command()
def harden(
    model: str = typer.Argument(..., help="ONNX (or torch.export .pt2) classifier or segmenter to harden, or a "
                                "detector's nn.Module factory package.module:factory (needs --out)."),
    train: Path = typer.Option(..., "--train", help=".npz training data ('x' and 'y', 'masks' or 'boxes'/'labels'/'count')."),
    val: Path = typer.Option(..., "--val", help=".npz validation data: the search's objective."),
    test: Optional[Path] = typer.Option(None, "--test", help=".npz held-out data for the sign-off (default: a share "
                                        "of --val held out before any choice, see --holdout)."),
    holdout: float = typer.Option(HOLDOUT, "--holdout", help="Without --test: the share of --val held out (by example "
                                  "hash) for the sign-off; no choice sees it. 0: sign off on --val itself, which "
                                  "only gives validation numbers (a gate is then refused)."),
    sigma: Optional[float] = typer.Option(None, help="Target lognormal drift sigma (0.6 unless --drift gives the drift)."),
    method: str = typer.Option("auto", help="auto (noise-injection when the drift has a lognormal or device term, else "
                               "bayesft: measured, README), bayesft, bayesft+noise, erm, fixed-dropout, noise-injection, "
                               "awp or ftna."),
    trials: int = typer.Option(20, help="Search trials (rates tried)."),
    epochs: int = typer.Option(3, help="Fine-tuning epochs per trial."),
    final_epochs: str = typer.Option("auto", help="Fine-tuning epochs with the best rates: auto (15, more on a small "
                                     "training set: at least 240 steps; measured, README) or a number."),
    samples: int = typer.Option(20, help="Monte-Carlo drift samples of the search objective."),
    validate_samples: int = typer.Option(100, help="Monte-Carlo samples of the runtime sign-off."),
    max_rate: float = typer.Option(0.8, help="Upper bound of every dropout rate."),
    rate: float = typer.Option(0.3, help="The rate of --method fixed-dropout."),
    awp_gamma: float = typer.Option(0.05, help="--method awp: perturbation norm relative to each weight tensor's."),
    code_bits: int = typer.Option(16, help="--method ftna: output code length (Hadamard codes)."),
    train_sigma: str = typer.Option("auto", help="Lognormal sigma sampled in training (+noise methods); auto: the "
                                    "best of 1, 0.75 and 0.5 x --sigma by short trials (measured, README)."),
    blend: str = typer.Option("auto", help="Share of the source's weights blended into the fine-tuned ones: auto "
                              "(the smallest of 0-0.5 within one standard error of the best under drift), off, "
                              "or a share in [0, 1]."),
    search: str = typer.Option("bo", help="bo (BoTorch), random or grid."),
    rates: str = typer.Option("per-layer", "--rates", help="Search space: per-layer (one rate per site, the "
                              "paper's), per-stage (sites after layers of one width share a rate) or shared."),
    trial_fraction: float = typer.Option(1.0, help="Share of the training set each trial fine-tunes on "
                                         "(the final fine-tune uses all of it)."),
    kernel: str = typer.Option("matern52", help="GP kernel: matern52 (ARD), exp (the paper's), or saas (sparse-axis "
                        "fully Bayesian GP for many sites; needs pyro-ppl)."),
    objective: str = typer.Option("accuracy", help="accuracy, loss, or a metric package.module:function."),
    drift: Optional[str] = typer.Option(None, "--drift", help="Drift spec of the objective and the sign-off "
                                        "(e.g. 'quantize:16,lognormal:0.6', table:chip.csv); default lognormal "
                                        "at --sigma. Training noise (+noise methods) is lognormal at its sigma "
                                        "(or --train-sigma)."),
    compensation: Optional[str] = _compensation_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    lr: float = typer.Option(1e-3, help="Learning rate of the fine-tune."),
    optimizer: str = typer.Option("adam", help="adam, or sgd (momentum 0.9, Nesterov)."),
    lr_schedule: str = typer.Option("auto", help="auto (cosine when the final fine-tune has 2,000 steps or more, "
                                    "else constant; trials take the final fit's: measured, README), constant, or "
                                    "cosine (decays to 0 over each fine-tune)."),
    batch_size: int = typer.Option(64, "--train-batch-size", help="Training batch size (fine-tuning)."),
    channel: bool = typer.Option(False, "--channel", help="Channel dropout after convolutions."),
    min_accuracy: Optional[float] = typer.Option(None, help="Gate on the sign-off's --stat accuracy (0-1)."),
    stat: str = typer.Option("mean", help="mean, total_ci_low, drift_ci_low, p5 or min."),
    max_drop: Optional[float] = typer.Option(None, help="Gate: clean - mean accuracy <= this."),
    out: Optional[Path] = typer.Option(None, help="Hardened model path (default MODEL.hardened.onnx)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search from its journal."),
    time_budget: Optional[str] = typer.Option(None, help="Stop starting trials after this long (e.g. 10m)."),
    workers: int = _workers_opt("Trials run in parallel (processes or Ray tasks, one torch thread each)."),
    executor: str = _executor_opt(),
    ray_address: Optional[str] = _ray_opt(),
    seed: int = _seed_opt(),
    device: str = typer.Option("cpu", help="cpu or cuda (fine-tuning and the torch objective)."),
    no_plot: bool = typer.Option(False, "--no-plot", help="Skip the before/after sigma sweep and plot."),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
) -> None:
    """Harden a model against drift (BayesFT), export it to ONNX and sign it off; exit 1 when the gate fails."""
    with guarded():
        from ftcompile.runtime.validate import Gate

        api.require_torch("harden")
        from ftcompile.search.harden import HardenConfig
        from ftcompile.search.report import harden_json

        cfg = HardenConfig(sigma=sigma, method=method, trials=trials, epochs=epochs, final_epochs=final_epochs,
                           samples=samples, max_rate=max_rate, rate=rate, awp_gamma=awp_gamma, code_bits=code_bits,
                           train_sigma=train_sigma, blend=blend, search=search, rates=rates, trial_fraction=trial_fraction,
                           kernel=kernel, objective=objective, drift=drift, compensation=compensation,
                           dac_bits=dac_bits, adc_bits=adc_bits, adc_noise=adc_noise, targets=targets, bias=bias,
                           lr=lr, optimizer=optimizer, lr_schedule=lr_schedule, batch_size=batch_size, channel=channel,
                           seed=seed, device=device, time_budget=_duration(time_budget), workers=workers, holdout=holdout,
                           executor=executor, ray_address=ray_address)
        gate = Gate(min_accuracy=min_accuracy, stat=stat, max_drop=max_drop)
        board = TrialBoard(cfg.trials, cfg.workers, enabled=not (quiet or as_json))

        def on_stage(text):
            board.stop()
            if board.enabled:
                err.print(f"[dim]{text}...[/]", highlight=False)

        try:
            from ftcompile.frontend.torch_import import is_factory_spec

            result = api.harden(model if is_factory_spec(model) else Path(model), train, val, test=test, out=out, config=cfg, gate=gate, resume=resume,
                                validate_samples=validate_samples, plot=not no_plot, on_trial=board,
                                on_stage=on_stage)
        finally:
            board.stop()
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if as_json:
        print(_json(harden_json(result)))
    else:
        _render_harden(result)
    raise typer.Exit(0 if result.passed else EXIT_GATE_FAILED)


class TrialBoard:
    """Trials as they finish: a live rich table on a terminal, one plain line each in CI or a pipe."""

    def __init__(self, total: int, workers: int, *, enabled: bool):
        self.total, self.workers, self.enabled = total, workers, enabled
        self.rows: list = []
        self.live = None
        self.t0 = time.perf_counter()

    def __call__(self, record, best) -> None:
        if not self.enabled:
            return
        if self.rows and self.rows[-1].stage != record.stage:  # the training-noise grid is done: a new table
            self.stop()
            self.rows = []
        self.rows.append(record)
        if not err.is_terminal:
            score = (f"objective {100 * record.objective:6.2f}% +- {100 * record.stderr:.2f}"
                     if record.status == "ok" else f"FAILED ({record.error})")
            err.print(f"trial {record.trial:3d}  {record.origin or '':6s}  {record.tried}  {score}"
                      f"  best {100 * best.objective:6.2f}%  ({record.seconds:.1f} s)", highlight=False,
                      soft_wrap=True)
            return
        if self.live is None:
            from rich.live import Live

            self.t0 = time.perf_counter() - record.seconds  # resumed runs: count from this run's first trial
            self.live = Live(console=err, refresh_per_second=4, transient=False)
            self.live.start()
        self.live.update(self._table(best))

    def _table(self, best) -> Table:
        done = len(self.rows)
        from ftcompile.search.journal import NOISE_GRID
        from ftcompile.search.noise_level import SHARES

        total = len(SHARES) if done and self.rows[-1].stage == NOISE_GRID else self.total
        left = max(0, total - self.rows[-1].trial - 1) if done else total
        eta = (time.perf_counter() - self.t0) / done * left if done else 0.0
        table = Table(title=f"trials (best {100 * best.objective:.2f}% at trial {best.trial}, "
                            f"{self.workers} worker{'s' if self.workers > 1 else ''}, ETA {eta:.0f} s)")
        for col in ("trial", "from", "tried", "objective %", "+- se", "s"):
            table.add_column(col, justify="right")
        for r in self.rows[-12:]:
            style = "bold green" if r is best else ("red" if r.status != "ok" else None)
            score = (f"{100 * r.objective:.2f}", f"{100 * r.stderr:.2f}") if r.status == "ok" else ("failed", "")
            table.add_row(str(r.trial), r.origin, r.tried, *score, f"{r.seconds:.1f}",
                          style=style)
        return table

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _render_harden(result) -> None:
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    table = Table(title=f"{Path(result.model).name} -> {result.out.name} ({result.config['method']}, "
                        f"drift {result.after.drift}, {result.after.samples} samples)")
    for col in ("model", "clean %", "mean %", "95% CI (drift+examples)", "p5 %", "min %"):
        table.add_column(col, justify="right")
    for label, r in (("before", result.before), ("after", result.after)):
        s = r.stats
        table.add_row(label, pct(r.clean), pct(s.mean), format_ci(s.total_ci_low, s.total_ci_high), pct(s.p5),
                      pct(s.min))
    out.print(table)
    if any(result.rates):  # methods without dropout leave every site at 0: nothing to show
        out.print("rates: " + ", ".join(f"{site}={rate:.2f}" for site, rate in zip(result.sites, result.rates)),
                  soft_wrap=True)
    else:
        n = len(result.sites)
        out.print(f"dropout: none ({n} site{'' if n == 1 else 's'} at rate 0)")
    if result.train_sigma is not None:
        from ftcompile.search.journal import NOISE_GRID

        grid = any(t.stage == NOISE_GRID for t in result.trials)
        out.print(f"trained under lognormal sigma {result.train_sigma:g}" + (" (best of the grid)" if grid else ""))
    if result.blend is not None:
        tried = ", ".join(f"{a:g}" for a, _, _ in result.blend["scores"])
        out.print(f"source weights blended in: {result.blend['share']:g} (tried {tried})")
    if result.calibration:
        out.print(f"analog twin: {result.after.converters}; converter ranges {result.calibration}", soft_wrap=True)
    out.print(result.signoff_statement, soft_wrap=True, highlight=False)
    for c in result.after.checks:
        out.print(f"gate {c.name}: {c.value:.4f} -> {'[green]pass[/]' if c.passed else '[bold red]FAIL[/]'}")
    out.print(f"verdict: {result.verdict}; wrote {result.out}, {result.report_json}, {result.report_markdown}"
              + (f", {result.plot}" if result.plot else "") + f" ({result.seconds:.0f} s)", soft_wrap=True)


@app.command("export-twin")
def export_twin(
    model: Path = typer.Argument(..., help="ONNX model."),
    calibrate_on: Optional[Path] = typer.Option(None, "--calibrate-on", help=".npz whose first examples calibrate "
                                                "the converter ranges; default the ranges the model stores (a "
                                                "hardened model's)."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the analog twin (ONNX)."),
    dac_bits: Optional[int] = typer.Option(8, "--dac-bits", help="Input converter bits (0: full precision)."),
    adc_bits: Optional[int] = typer.Option(8, "--adc-bits", help="Output converter bits (0: full precision)."),
    adc_noise: float = _adc_noise_opt(),
    output: Optional[str] = _output_opt(),
) -> None:
    """Write the analog twin: DAC/ADC quantizers with calibrated ranges around every crossbar layer, weights
    as overridable inputs; a plain ONNX file onnxruntime runs."""
    with guarded():
        calibration = api.export_twin(model, out, calibrate_on=calibrate_on, dac_bits=dac_bits or None,
                                      adc_bits=adc_bits or None, output=output, adc_noise=adc_noise)
    noise = f" with output noise {adc_noise:g} of its bound" if adc_noise else ""
    print(f"wrote {out}: {len(calibration.ranges) // 2} crossbar layers, DAC {dac_bits or 'float'} bits, "
          f"ADC {adc_bits or 'float'} bits{noise}, ranges {calibration.describe()}")


@app.command()
def inspect(
    model: Optional[Path] = typer.Argument(None, help="ONNX model (or .pt2)."),
    output: Optional[str] = _output_opt(),
    ops: bool = typer.Option(False, "--ops", help="List the ONNX ops the importer (harden, inspect) supports."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Layers (crossbar-mapped), output layers, op histogram, metadata, and import parity."""
    if ops:
        with guarded():
            api.require_torch("inspect --ops")
            from ftcompile.frontend.onnx_import import SUPPORTED
        print(_json(SUPPORTED) if as_json else "\n".join(SUPPORTED))
        return
    if model is None:
        err.print("error: give a MODEL to inspect (or --ops).", highlight=False)
        raise typer.Exit(2)
    with guarded():
        from collections import Counter
        from dataclasses import asdict

        api.require_torch("inspect")

        from ftcompile.api import load_model
        from ftcompile.export import get_metadata
        from ftcompile.passes.layers import find_layers
        from ftcompile.passes.onnx_graph import dropout_rates_onnx

        imported = load_model(model, output=output)
        layers = find_layers(imported.module, imported.sources)
        rates = get_metadata(imported.onnx_model).get("dropout_rates", {})
        info = {"model": str(model), "opset": imported.onnx_model.opset_import[0].version,
                "layers": [{**asdict(layer), "dropout_rate": rates.get(layer.target)} for layer in layers],
                "output_layers": [layer.target for layer in layers if layer.is_output],
                "ops": dict(Counter(n.op_type for n in imported.onnx_model.graph.node)),
                "metadata": get_metadata(imported.onnx_model),
                "dropout_nodes": dropout_rates_onnx(imported.onnx_model),
                "parity": {"ok": imported.parity.ok, "max_abs": imported.parity.max_abs, "rel": imported.parity.rel,
                           "rtol": imported.parity.rtol}}
    if as_json:
        print(_json(info, default=str))
        return
    table = Table(title=f"{model} (opset {info['opset']})")
    for col in ("layer", "op", "weight shape", "params", "output", "dropout"):
        table.add_column(col)
    for layer in info["layers"]:
        rate = layer["dropout_rate"]
        table.add_row(layer["target"], layer["kind"], str(tuple(layer["shape"])), f"{layer['params']:,}",
                      "yes" if layer["is_output"] else "", "" if rate is None else f"{rate:.2f}")
    out.print(table)
    out.print("ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(info["ops"].items())))
    if info["metadata"]:
        out.print(f"metadata: {json.dumps(info['metadata'])}")
    p = info["parity"]
    out.print(f"import matches onnxruntime: {'yes' if p['ok'] else 'NO'} (max abs diff {p['max_abs']:.2g})")


def main() -> None:
    try:
        app(prog_name="ftcompile")
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
