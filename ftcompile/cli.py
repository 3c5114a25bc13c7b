"""The ``ftcompile`` command: parses flags, calls ``ftcompile.api``, renders. No logic here.

Every command's options are grouped by what the user wants to do (rich help panels). Only typer is imported to
start: numpy, onnx, onnxruntime and torch load inside the command that needs them, so ``ftcompile --help`` and a
CI gate start fast (``benchmarks/bench_startup.py``).

Exit codes: 0 pass (or nothing to gate), 1 gate failed, 2 bad input or usage, 3 internal error, 130 interrupted.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from ftcompile import __version__
from ftcompile.errors import EXIT_GATE_FAILED, EXIT_INTERRUPTED, FtcompileError

EXIT_INTERNAL = 3
HELP = ("Harden neural networks against analog weight drift and sign them off.\n\n"
        "Exit codes: 0 pass, 1 gate failed, 2 bad input or usage, 3 internal error, 130 interrupted.")
app = typer.Typer(help=HELP, add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode="rich")

# option groups, in the order a user reads them
DATA, DRIFT, METHOD, SEARCH, TRAIN, GATE, OUTPUTS, RUN = ("Data", "Target drift and chip", "Method", "Search",
                                                         "Training", "Gate", "Outputs", "Execution")
RESEARCH = "Research knobs (methods other than the default)"
# defaults shared with the API (a test checks they agree with HardenConfig and signoff.HOLDOUT)
HOLDOUT = 0.3
BATCH = 256  # runtime.validate.BATCH


def _consoles():
    from rich.console import Console

    return Console(), Console(stderr=True)


class _Lazy:
    """The stdout/stderr rich consoles, built on first use (rich's console is not needed for --help)."""

    def __getattr__(self, name):
        global out, err
        out, err = _consoles()
        return getattr(out if self is _OUT else err, name)


_OUT, _ERR = _Lazy(), _Lazy()
out, err = _OUT, _ERR


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"ftcompile {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print ftcompile's version and exit.")) -> None:
    pass


def fail(exc: BaseException) -> None:
    from rich.markup import escape

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
    """A rich progress bar on a terminal; nothing when piped, in CI, or with --quiet (rich is not even imported)."""
    if quiet or not sys.stderr.isatty():
        yield lambda *a: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda *a: bar.advance(task)


def show_table(title: str, columns: list[str], rows: list[list[str]], right: set[str] | None = None) -> None:
    """A table on stdout: rich's on a terminal; plain aligned columns in a pipe or CI log, where a rich table
    squeezed to 80 columns would cut numbers ("92.07-94..."): long lines, nothing truncated."""
    right = set(columns) if right is None else right
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(title=title)
        for c in columns:
            table.add_column(c, justify="right" if c in right else "left", overflow="fold")
        for row in rows:
            table.add_row(*row)
        out.print(table)
        return
    widths = ([max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)] if rows
              else [len(c) for c in columns])
    fmt = lambda cells: "  ".join(v.rjust(w) if c in right else v.ljust(w)  # noqa: E731
                                  for c, v, w in zip(columns, cells, widths)).rstrip()
    print(title)
    print(fmt(columns))
    for row in rows:
        print(fmt(row))


def _json(payload, **kwargs) -> str:
    """Strict JSON (NaN and infinities become null): what every report and ``--json`` prints."""
    from ftcompile.runtime.stats import strict_json

    return json.dumps(strict_json(payload), indent=2, allow_nan=False, **kwargs)


def _outputs(*paths: Optional[Path]) -> None:
    from ftcompile.fileio import check_writable

    for p in paths:
        if p is not None:
            check_writable(p)


def _data(text: Optional[str], image_mean: Optional[str] = None, image_std: Optional[str] = None):
    """A data argument: an .npz path, an image folder (with its normalization), or a package.module:function."""
    if text is None:
        return None
    path = Path(text)
    if path.is_dir():
        from ftcompile.data.image_folder import ImageFolder, ImagePrep

        return ImageFolder(path, ImagePrep.parse(image_mean, image_std))
    if image_mean is not None or image_std is not None:
        from ftcompile.errors import ConfigError

        raise ConfigError(f"--image-mean/--image-std normalize an image folder; {text} is not a folder.")
    return text if ":" in text and not path.exists() else path


def _number_or_word(text: Optional[str]):
    """A flag that takes a number or a word (``--sigma 0.3`` or ``--sigma auto``) as HardenConfig reads it."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


# --- options shared by several commands: declared once, one default everywhere ------------------------------
DATA_HELP = ("an .npz ('x' or the model's input names, and integer 'y'; 'masks' or 'boxes'/'labels'/'count' for "
             "segmentation and detection), a folder of images with one subfolder per class, or a Python factory "
             "package.module:function returning arrays or a torch Dataset")
DRIFT_HELP = ("The drift, terms applied in order: lognormal:S (the paper's w*exp(N(0,S^2)), e.g. lognormal:0.6), "
              "gaussian:S (additive, S of each layer's max|W|: gaussian:0.05), stuck-at:OFF:ON (cell rates: "
              "stuck-at:0.01:0.005), quantize:N (levels: quantize:16), table:CSV[:BINS] (a chip's programmed and "
              "read-back conductance pairs: table:chip.csv), pcm:T (phase-change memory T after programming: "
              "pcm:1d; T as 30s, 10min or 10m, 1h, 1d, 1w, 1mo, 1y), reram-wan2022:T (1s, 1d or 2d: "
              "reram-wan2022:1d), package.module:attr (your "
              "model). Keyword terms follow a term: pcm:1y,comp=global (drift compensation none, global or column; "
              "mean for lognormal), "
              "g_max=25, per_channel=1. Combine: quantize:16,lognormal:0.6.")


def _data_opt(flag: str = "--data", what: str = "The data to measure on") -> typer.Option:
    return typer.Option(..., flag, help=f"{what}: {DATA_HELP}.", rich_help_panel=DATA)


def _image_mean_opt():
    return typer.Option(None, "--image-mean", help="Image folders: per-channel mean subtracted after scaling to "
                        "[0, 1] (e.g. 0.485,0.456,0.406), as the model was trained.", rich_help_panel=DATA)


def _image_std_opt():
    return typer.Option(None, "--image-std", help="Image folders: per-channel std divided by after the mean "
                        "(e.g. 0.229,0.224,0.225).", rich_help_panel=DATA)


def _task_opt():
    return typer.Option(None, "--task", help="classification, detection or segmentation; default read from the "
                        "data's arrays (boxes: detection, masks: segmentation).", rich_help_panel=DATA)


def _output_opt():
    return typer.Option(None, "--output", help="The model output holding class scores, if it has several.",
                        rich_help_panel=DATA)


def _sigma_opt():
    return typer.Option(None, "--sigma", help="Lognormal drift sigma (the paper's model), 0.6 when no --drift is "
                        "given; give either --sigma or --drift.", rich_help_panel=DRIFT)


def _drift_opt():
    return typer.Option(None, "--drift", help=DRIFT_HELP, rich_help_panel=DRIFT)


def _compensation_opt():
    return typer.Option(None, "--compensation", help="Drift compensation of the lognormal and device terms: none, "
                        "global (one digital scale per layer from a calibration read after programming), column (one "
                        "per output), or mean (lognormal only: the known gain exp(-sigma^2/2)); default as --drift "
                        "says.", rich_help_panel=DRIFT)


def _targets_opt():
    return typer.Option("auto", "--targets", help="Which tensors drift: auto (crossbar for a device drift such as "
                        "pcm:1d, else params), params (every learned parameter, the paper's model) or crossbar (the "
                        "layers' weight matrices; biases and normalization stay digital).", rich_help_panel=DRIFT)


def _bias_opt():
    return typer.Option(False, "--bias", help="With crossbar targets, layer biases drift too.", rich_help_panel=DRIFT)


def _dac_opt():
    return typer.Option(None, "--dac-bits", help="Run the analog twin: each crossbar layer's input clipped to its "
                        "calibrated range and quantized to 2^B levels.", rich_help_panel=DRIFT)


def _adc_opt():
    return typer.Option(None, "--adc-bits", help="Run the analog twin: each crossbar layer's output clipped to its "
                        "calibrated bound and quantized to 2^B levels (the bias is added digitally after).",
                        rich_help_panel=DRIFT)


def _adc_noise_opt():
    return typer.Option(0.0, "--adc-noise", help="With --adc-bits: Gaussian read noise at each crossbar output "
                        "before the ADC, its std a fraction of the ADC bound (aihwkit's default: 0.005).",
                        rich_help_panel=DRIFT)


def _chip_opt():
    return typer.Option(None, "--chip", help="Run the chip's analog twin: aihwkit-inference (aihwkit's standard "
                        "inference setting: 512-row tiles, 8-bit DAC and ADC, output and read noise, IR drop, PCM with "
                        "global drift compensation per tile; docs/chip.md), with key=value overrides "
                        "(aihwkit-inference,tile=256,out_noise=0,t=1y). The time since programming comes from --drift "
                        "pcm:1y, --times or t=.", rich_help_panel=DRIFT)


def _signoff_samples_opt():
    return typer.Option(100, "--samples", help="Monte-Carlo drift samples: each draws every drifting weight anew and "
                        "scores the whole data set.", rich_help_panel=GATE)


def _calibrate_opt():
    return typer.Option(None, "--calibrate-on", help="With converters: calibrate their ranges on this data instead "
                        "of using the ones the model stores (a hardened model's) or, when it stores none, the data "
                        "being measured.", rich_help_panel=DRIFT)


def _metric_opt():
    return typer.Option(None, "--metric", help="accuracy (default), top5; map50 (default) or map for detection; "
                        "dice (default) or iou for segmentation; or package.module:function taking "
                        "(outputs, labels) -> float, higher is better.", rich_help_panel=GATE)


def _seed_opt():
    return typer.Option(0, "--seed", help="Seed of every random draw; Monte-Carlo sample k of a seed is the same "
                        "whichever worker or batch draws it.", rich_help_panel=RUN)


def _batch_opt():
    return typer.Option(BATCH, "--batch-size", help="Examples per onnxruntime run.", rich_help_panel=RUN)


def _provider_opt():
    return typer.Option("cpu", "--provider", help="onnxruntime execution provider: cpu or cuda (refused when "
                        "onnxruntime has no such provider).", rich_help_panel=RUN)


def _workers_opt(text: str):
    return typer.Option(1, "--workers", help=text, rich_help_panel=RUN)


def _executor_opt():
    return typer.Option("process", "--executor", help="Where workers run: process (local; one worker runs in this "
                        "process) or ray.", rich_help_panel=RUN)


def _ray_opt():
    return typer.Option(None, "--ray-address", help="Ray cluster: auto, ray://host:10001 (default: start one).",
                        rich_help_panel=RUN)


def _quiet_opt():
    return typer.Option(False, "--quiet", help="No progress bar or live table.", rich_help_panel=OUTPUTS)


def _json_opt():
    return typer.Option(False, "--json", help="Print only the JSON report to stdout (messages go to stderr).",
                        rich_help_panel=OUTPUTS)


def _stat_opt():
    return typer.Option("auto", "--stat", help="The statistic --min-accuracy gates: auto (total_ci_low where the "
                        "metric is a mean over examples, else drift_ci_low), total_ci_low (the 95% lower bound "
                        "covering drift and the finite example set: the conservative sign-off), drift_ci_low (drift "
                        "sampling only), mean, p5 or min over samples. The report names the one gated.",
                        rich_help_panel=GATE)


def _min_acc_opt():
    return typer.Option(None, "--min-accuracy", help="Gate: the --stat metric must be at least this (0-1).",
                        rich_help_panel=GATE)


def _max_drop_opt():
    return typer.Option(None, "--max-drop", help="Gate: clean minus mean under drift must be at most this (0-1).",
                        rich_help_panel=GATE)


# --- validate and gate ----------------------------------------------------------------------------------------
def _validate(model, data, sigma, drift, compensation, dac_bits, adc_bits, adc_noise, calibrate_on, samples, seed,
              batch_size, top_k, metric, task, targets, bias, output, gate, provider, workers, executor, ray_address,
              quiet, image_mean, image_std, chip=None):
    from ftcompile import api

    with progress(samples, "drift samples", quiet) as tick:
        if top_k != 1 and metric is None:
            from ftcompile.runtime.metrics import top_k_accuracy

            metric = top_k_accuracy(top_k)
        return api.validate(model, _data(data, image_mean, image_std), drift=drift, sigma=sigma, samples=samples,
                            seed=seed, batch_size=batch_size, metric=metric, task=task, gate=gate, targets=targets,
                            bias=bias, output=output, provider=provider, on_sample=tick, workers=workers,
                            executor=executor, ray_address=ray_address, compensation=compensation, dac_bits=dac_bits,
                            adc_bits=adc_bits, adc_noise=adc_noise, calibrate_on=_data(calibrate_on), chip=chip)


@app.command()
def validate(
    model: Path = typer.Argument(..., help="ONNX model to validate (a classifier, detector or segmenter)."),
    data: str = _data_opt(),
    image_mean: Optional[str] = _image_mean_opt(),
    image_std: Optional[str] = _image_std_opt(),
    task: Optional[str] = _task_opt(),
    output: Optional[str] = _output_opt(),
    sigma: Optional[float] = _sigma_opt(),
    drift: Optional[str] = _drift_opt(),
    compensation: Optional[str] = _compensation_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    chip: Optional[str] = _chip_opt(),
    calibrate_on: Optional[str] = _calibrate_opt(),
    samples: int = _signoff_samples_opt(),
    metric: Optional[str] = _metric_opt(),
    top_k: int = typer.Option(1, "--top-k", help="Score top-k accuracy (classification).", rich_help_panel=GATE),
    min_accuracy: Optional[float] = _min_acc_opt(),
    stat: str = _stat_opt(),
    max_drop: Optional[float] = _max_drop_opt(),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON report here.",
                                          rich_help_panel=OUTPUTS),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the Markdown report here.",
                                            rich_help_panel=OUTPUTS),
    junit: Optional[Path] = typer.Option(None, "--junit", help="Write JUnit XML here (one test case per gate).",
                                         rich_help_panel=OUTPUTS),
    list_targets: bool = typer.Option(False, "--list-targets", help="Print the drifting tensors and exit.",
                                      rich_help_panel=OUTPUTS),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    provider: str = _provider_opt(),
    workers: int = _workers_opt("Shard the drift samples over this many processes or Ray tasks."),
    executor: str = _executor_opt(),
    ray_address: Optional[str] = _ray_opt(),
) -> None:
    """Measure a model's metric under drift; exit 1 when a gate fails."""
    with guarded():
        from ftcompile.runtime.report import to_json, write_reports
        from ftcompile.runtime.validate import Gate

        if list_targets:
            _print_targets(model, drift, sigma, compensation, targets, bias, output, as_json)
            return
        gate = Gate(min_accuracy=min_accuracy, stat=stat, max_drop=max_drop)
        _outputs(report, markdown, junit)
        result = _validate(model, data, sigma, drift, compensation, dac_bits, adc_bits, adc_noise, calibrate_on,
                           samples, seed, batch_size, top_k, metric, task, targets, bias, output, gate, provider,
                           workers, executor, ray_address, quiet or as_json, image_mean, image_std, chip=chip)
        write_reports(result, json_path=report, markdown_path=markdown, junit_path=junit)
    if as_json:
        print(_json(to_json(result)))
    else:
        _render_validation(result)
    raise typer.Exit(0 if result.passed else EXIT_GATE_FAILED)


@app.command()
def gate(
    model: Path = typer.Argument(..., help="ONNX model to gate."),
    data: str = _data_opt(what="Held-out data the model's release is judged on"),
    image_mean: Optional[str] = _image_mean_opt(),
    image_std: Optional[str] = _image_std_opt(),
    task: Optional[str] = _task_opt(),
    output: Optional[str] = _output_opt(),
    min_accuracy: float = typer.Option(..., "--min-accuracy", help="The bar: the --stat metric under drift must "
                                       "be at least this (0-1).", rich_help_panel=GATE),
    stat: str = _stat_opt(),
    max_drop: Optional[float] = _max_drop_opt(),
    metric: Optional[str] = _metric_opt(),
    samples: int = _signoff_samples_opt(),
    sigma: Optional[float] = _sigma_opt(),
    drift: Optional[str] = _drift_opt(),
    compensation: Optional[str] = _compensation_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    chip: Optional[str] = _chip_opt(),
    calibrate_on: Optional[str] = _calibrate_opt(),
    out_dir: Path = typer.Option(Path("drift-report"), "--out-dir", help="Where report.json, report.md and "
                                 "junit.xml go (written also when the gate fails).", rich_help_panel=OUTPUTS),
    summary: Optional[Path] = typer.Option(None, "--summary", envvar="GITHUB_STEP_SUMMARY", help="Append the "
                                           "Markdown report to this file (default: $GITHUB_STEP_SUMMARY when set).",
                                           rich_help_panel=OUTPUTS),
    as_json: bool = _json_opt(),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    provider: str = _provider_opt(),
) -> None:
    """A release gate for CI: validate under drift, write report.json, report.md and junit.xml, append the job
    summary, exit 1 when the model does not hold its bar. Gates the conservative statistic by default."""
    from ftcompile.runtime.report import to_json, to_markdown, write_reports
    from ftcompile.runtime.validate import Gate

    with guarded():
        bar = Gate(min_accuracy=min_accuracy, stat=stat, max_drop=max_drop)
        paths = {k: out_dir / name for k, name in (("json", "report.json"), ("md", "report.md"), ("xml", "junit.xml"))}
        _outputs(*(paths.values() if out_dir.is_dir() else [out_dir]))  # made once the measurement stands
        result = _validate(model, data, sigma, drift, compensation, dac_bits, adc_bits, adc_noise, calibrate_on,
                           samples, seed, batch_size, 1, metric, task, targets, bias, output, bar, provider, 1,
                           "process", None, True, image_mean, image_std, chip=chip)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_reports(result, json_path=paths["json"], markdown_path=paths["md"], junit_path=paths["xml"])
        if summary is not None:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(to_markdown(result) + "\n")
    if as_json:
        print(_json(to_json(result)))
    else:
        _render_validation(result)
        gated = bar.resolved(result.stats)
        print(f"gate: {'PASS' if result.passed else 'FAIL'} ({gated} of {result.metric} under {result.drift}; "
              f"reports in {out_dir})")
    raise typer.Exit(0 if result.passed else EXIT_GATE_FAILED)


def _print_targets(model, drift, sigma, compensation, targets, bias, output, as_json: bool) -> None:
    from ftcompile import api
    from ftcompile.runtime.drift import resolve_targets

    drift_model = api.resolve_drift(drift, sigma, compensation)
    session = api.open_session(model, targets=resolve_targets(targets, drift_model), bias=bias, output=output)
    if as_json:
        print(json.dumps([t.__dict__ for t in session.targets], indent=2, default=list))
        return
    show_table(f"drifting tensors of {session.source}", ["tensor", "role", "consumer", "op", "slot", "shape", "size"],
               [[t.name, t.role, t.node, t.op, str(t.slot), str(t.shape), f"{t.size:,}"] for t in session.targets],
               right={"slot", "size"})


def _render_validation(result) -> None:
    from ftcompile.runtime.stats import format_ci

    s = result.stats
    show_table(f"{Path(result.model).name} under {result.drift} ({result.samples} samples, {result.examples} "
               f"examples, targets {result.targets})",
               ["clean", "mean", "95% CI (drift+examples)", "95% CI (drift)", "std", "p5", "p50", "p95", "min"],
               [[_pct(result.clean), _pct(s.mean), format_ci(s.total_ci_low, s.total_ci_high),
                 format_ci(s.drift_ci_low, s.drift_ci_high), _pct(s.std), _pct(s.p5), _pct(s.p50), _pct(s.p95),
                 _pct(s.min)]])
    if result.converters:
        print(f"analog twin: {result.converters}; converter ranges {result.calibration}")
    for c in result.checks:
        print(f"gate {c.name}: {c.value:.4f} -> {'pass' if c.passed else 'FAIL'}")
    print(f"verdict: {result.verdict}  ({result.seconds:.1f} s, {result.provider})")


# --- sweep and analyze --------------------------------------------------------------------------------------
@app.command()
def sweep(
    models: List[Path] = typer.Argument(..., help="One or more ONNX models to compare."),
    data: str = _data_opt(),
    image_mean: Optional[str] = _image_mean_opt(),
    image_std: Optional[str] = _image_std_opt(),
    task: Optional[str] = _task_opt(),
    output: Optional[str] = _output_opt(),
    sigmas: str = typer.Option("0:1.5:0.1", "--sigmas", help="The sigmas of the drift's sigma term: start:stop:step "
                               "(stop included) or a list 0,0.3,0.6.", rich_help_panel=DRIFT),
    drift: Optional[str] = _drift_opt(),
    vary: Optional[str] = typer.Option(None, "--vary", help="The drift term --sigmas sets (lognormal, gaussian); "
                                       "default the spec's only sigma term. Other terms stay as given.",
                                       rich_help_panel=DRIFT),
    times: Optional[str] = typer.Option(None, "--times", help="Sweep the time since programming of a device term "
                                        "instead (1s,1h,1d,1w,1mo,1y); --drift default pcm. Log-time plot.",
                                        rich_help_panel=DRIFT),
    compensation: Optional[str] = _compensation_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    chip: Optional[str] = _chip_opt(),
    calibrate_on: Optional[str] = _calibrate_opt(),
    samples: int = typer.Option(50, "--samples", help="Monte-Carlo drift samples per point of the curve.",
                                rich_help_panel=GATE),
    metric: Optional[str] = _metric_opt(),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the curves as a PNG here.",
                                        rich_help_panel=OUTPUTS),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the curves as JSON here.",
                                          rich_help_panel=OUTPUTS),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    provider: str = _provider_opt(),
) -> None:
    """Metric-vs-sigma (or -time) curves of one or more models (the paper's Figure 3), and where each crosses half
    its clean metric."""
    from dataclasses import asdict

    from ftcompile import api
    from ftcompile.fileio import write_text_atomic

    with guarded():
        _outputs(plot, report)
        grid = api.parse_sigmas(sigmas) if times is None else api.parse_times(times)
        with progress(len(grid) * len(models), "points", quiet or as_json) as tick:
            result = api.sweep(models, _data(data, image_mean, image_std), sigmas=grid, drift=drift, samples=samples,
                               seed=seed, batch_size=batch_size, metric=metric, task=task, targets=targets, bias=bias,
                               output=output, provider=provider, vary=vary, times=times, compensation=compensation,
                               dac_bits=dac_bits, adc_bits=adc_bits, adc_noise=adc_noise, on_point=tick,
                               calibrate_on=_data(calibrate_on), chip=chip)
        payload = {"schema": "ftcompile.sweep/3", "drift": result.drift, "vary": result.vary, "axis": result.axis,
                   "samples": result.samples, "seed": result.seed, "metric": result.metric,
                   "targets": result.targets, "clean": result.clean, "crossing": result.crossings(),
                   "curves": {k: [asdict(p) for p in v] for k, v in result.curves.items()}}
        if plot:
            from ftcompile.runtime.plot import plot_curves

            plot_curves(list(result.curves.items()), plot, title=f"{result.metric} under {result.drift}",
                        xlabel=f"{result.vary} sigma" if times is None else "time since programming (s)",
                        log_x=times is not None, metric=result.metric)
        if report:
            write_text_atomic(report, _json(payload) + "\n")
    if as_json:
        print(_json(payload))
        return
    from ftcompile.units import format_time

    label = (lambda v: f"{v:g}") if times is None else format_time  # noqa: E731
    show_table(f"mean {result.metric} (%) under {result.drift}, {result.vary} "
               f"{'sigma' if times is None else 'time'} swept, {samples} samples (p5-p95)",
               ["sigma" if times is None else "time", *result.curves],
               [[label(v), *[f"{_pct(pts[i].mean)} ({100 * pts[i].p5:.1f}-{100 * pts[i].p95:.1f})"
                             for pts in result.curves.values()]] for i, v in enumerate(grid)])
    for name, x in result.crossings().items():
        where = "not reached on this grid" if x is None else f"{label(x) if times is not None else f'{x:.3g}'}"
        print(f"{name}: half its clean {result.metric} at {result.vary} {'sigma' if times is None else 'time'} {where}")


@app.command()
def analyze(
    model: Path = typer.Argument(..., help="ONNX model to analyze."),
    data: str = _data_opt(),
    image_mean: Optional[str] = _image_mean_opt(),
    image_std: Optional[str] = _image_std_opt(),
    task: Optional[str] = _task_opt(),
    output: Optional[str] = _output_opt(),
    sigma: Optional[float] = _sigma_opt(),
    drift: Optional[str] = _drift_opt(),
    compensation: Optional[str] = _compensation_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    samples: int = typer.Option(30, "--samples", help="Monte-Carlo drift samples per layer (and for all layers "
                                "together).", rich_help_panel=GATE),
    metric: Optional[str] = _metric_opt(),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON report here.",
                                          rich_help_panel=OUTPUTS),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the Markdown table here.",
                                            rich_help_panel=OUTPUTS),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a bar plot PNG of the drops here.",
                                        rich_help_panel=OUTPUTS),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
    seed: int = _seed_opt(),
    batch_size: int = _batch_opt(),
    provider: str = _provider_opt(),
) -> None:
    """Per-layer drift sensitivity: drift one layer at a time and rank the layers by what they cost."""
    from ftcompile import api
    from ftcompile.fileio import write_text_atomic

    with guarded():
        from ftcompile.runtime.analyze import sensitivity_markdown
        from ftcompile.runtime.stats import format_ci

        _outputs(report, markdown, plot)
        with progress(None, "layers", quiet or as_json) as tick:  # the count is known once the model is read
            result = api.analyze(model, _data(data, image_mean, image_std), drift=drift, sigma=sigma, samples=samples,
                                 seed=seed, batch_size=batch_size, metric=metric, task=task, targets=targets,
                                 bias=bias, output=output, provider=provider, on_layer=tick, compensation=compensation)
        payload = {"schema": "ftcompile.analysis/1", **result.to_dict()}
        if report:
            write_text_atomic(report, _json(payload) + "\n")
        if markdown:
            write_text_atomic(markdown, sensitivity_markdown(result))
        if plot:
            from ftcompile.runtime.plot import plot_sensitivity

            plot_sensitivity(result, plot)
    if as_json:
        print(_json(payload))
        return
    show_table(f"{Path(str(model)).name}: one layer drifted at a time, {result.drift}, {samples} samples "
               f"(clean {_pct(result.clean)}%)", ["layer", "op", "weights", "mean %", "95% CI", "drop (points)"],
               [[r.layer, r.op, f"{r.weights:,}", _pct(r.mean), format_ci(r.drift_ci_low, r.drift_ci_high),
                 _pct(r.drop)] for r in [*result.layers, result.all_layers]],
               right={"weights", "mean %", "95% CI", "drop (points)"})


# --- harden ---------------------------------------------------------------------------------------------------
def _duration(text: Optional[str]) -> Optional[float]:
    """``--time-budget``: seconds, or a time with a unit (30s, 10m, 1h); the one time parser of ``units.py``."""
    if text is None:
        return None
    from ftcompile.units import parse_time

    return parse_time(text, what="--time-budget")


@app.command()
def harden(
    model: str = typer.Argument(..., help="ONNX (or torch.export .pt2) classifier or segmenter, or a detector's "
                                "nn.Module factory package.module:factory (give --out)."),
    train: str = _data_opt("--train", "Training data (the fine-tune)"),
    val: str = _data_opt("--val", "Validation data: every choice (training noise, trials, blend) is scored on it"),
    test: Optional[str] = typer.Option(None, "--test", help="Held-out data for the sign-off; default a share of "
                                       "--val held out before any choice (see --holdout).", rich_help_panel=DATA),
    holdout: float = typer.Option(HOLDOUT, "--holdout", help="Without --test: the share of --val held out (by "
                                  "example hash) for the sign-off; no choice sees it. 0: numbers on --val itself, "
                                  "validation numbers only (a gate is then refused).", rich_help_panel=DATA),
    image_mean: Optional[str] = _image_mean_opt(),
    image_std: Optional[str] = _image_std_opt(),
    sigma: Optional[str] = typer.Option(None, "--sigma", help="Target lognormal drift sigma (0.6 when no --drift is "
                                        "given), or auto: the sigma where the source model keeps half its clean "
                                        "metric on the validation data (reported).", rich_help_panel=DRIFT),
    drift: Optional[str] = _drift_opt(),
    compensation: Optional[str] = _compensation_opt(),
    targets: str = _targets_opt(),
    bias: bool = _bias_opt(),
    dac_bits: Optional[int] = _dac_opt(),
    adc_bits: Optional[int] = _adc_opt(),
    adc_noise: float = _adc_noise_opt(),
    chip: Optional[str] = _chip_opt(),
    method: str = typer.Option("auto", "--method", help="auto (noise injection when the drift can be sampled in "
                               "training, else bayesft), noise-injection, bayesft (the paper's per-layer dropout "
                               "search), bayesft+noise, fixed-dropout, awp, ftna, or erm (re-export only).",
                               rich_help_panel=METHOD),
    recipe: str = typer.Option("grid", "--recipe", help="How noise injection chooses its recipe: bo (one "
                               "BoTorch search over the training-noise scale, a dropout rate per stage and the "
                               "learning-rate scale, by short trials; the simplest recipe within one standard error of "
                               "the best is kept) or grid (the training sigma among 1, 0.75 and 0.5 x the target).",
                               rich_help_panel=METHOD),
    train_sigma: str = typer.Option("auto", "--train-sigma", help="Lognormal sigma sampled while fine-tuning (noise "
                                    "methods): auto (chosen by the recipe) or a number.", rich_help_panel=METHOD),
    blend: str = typer.Option("auto", "--blend", help="Share of the source's weights blended into the fine-tuned "
                              "ones: auto (a share is kept only when it scores better under drift by more than one "
                              "standard error), off, or a share in [0, 1].", rich_help_panel=METHOD),
    objective: str = typer.Option("accuracy", "--objective", help="What the search maximizes under drift: "
                                  "accuracy, loss, or a metric package.module:function.", rich_help_panel=METHOD),
    trials: str = typer.Option("auto", "--trials", help="Search trials: auto (8 recipes with --recipe bo, 20 rate "
                               "vectors for the bayesft methods) or a number; noise injection's grid recipe does "
                               "not read it.", rich_help_panel=SEARCH),
    epochs: int = typer.Option(3, "--epochs", help="Fine-tuning epochs of each short trial.", rich_help_panel=SEARCH),
    samples: int = typer.Option(20, "--samples", help="Monte-Carlo drift samples of the search's objective (the "
                                "same drifts score every trial).", rich_help_panel=SEARCH),
    time_budget: Optional[str] = typer.Option(None, "--time-budget", help="Stop starting trials after this long "
                                              "(e.g. 90s, 10m, 1h); finished trials are kept.", rich_help_panel=SEARCH),
    resume: bool = typer.Option(False, "--resume", help="Continue the search from its journal.",
                                rich_help_panel=SEARCH),
    final_epochs: str = typer.Option("auto", "--final-epochs", help="Epochs of the final fine-tune: auto (15, and at "
                                     "least 240 optimizer steps on a small training set) or a number.",
                                     rich_help_panel=TRAIN),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate of the fine-tune.", rich_help_panel=TRAIN),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam, or sgd (momentum 0.9, Nesterov).",
                                  rich_help_panel=TRAIN),
    lr_schedule: str = typer.Option("auto", "--lr-schedule", help="auto (cosine for a final fine-tune of 2,000 "
                                    "steps or more, else constant; trials follow the final fit), constant or cosine.",
                                    rich_help_panel=TRAIN),
    batch_size: int = typer.Option(64, "--train-batch-size", help="Training batch size.", rich_help_panel=TRAIN),
    weight_clip: Optional[str] = typer.Option(None, "--weight-clip", help="Clip the crossbar weights after every "
                                              "training step (aihwkit's weight clip): none, gaussian:K (at K standard "
                                              "deviations of each layer) or fixed:V (at V times the --weight-remap "
                                              "reference); default the chip's (fixed:1 for aihwkit-inference) or none.",
                                              rich_help_panel=TRAIN),
    weight_remap: Optional[str] = typer.Option(None, "--weight-remap", help="The reference of a fixed clip (aihwkit's "
                                               "remap): channel (each output channel's max before the step), layer "
                                               "(the layer's max) or none (the source model's channel max); default "
                                               "the chip's (channel) or none.", rich_help_panel=TRAIN),
    min_accuracy: Optional[float] = _min_acc_opt(),
    stat: str = _stat_opt(),
    max_drop: Optional[float] = _max_drop_opt(),
    validate_samples: int = typer.Option(100, "--validate-samples", help="Monte-Carlo drift samples of the "
                                         "onnxruntime sign-off (before and after).", rich_help_panel=GATE),
    out: Optional[Path] = typer.Option(None, "--out", help="The hardened model (default MODEL.hardened.onnx); its "
                                       "reports and plot go beside it.", rich_help_panel=OUTPUTS),
    no_plot: bool = typer.Option(False, "--no-plot", help="Skip the before/after sweep and plot.",
                                 rich_help_panel=OUTPUTS),
    as_json: bool = _json_opt(),
    quiet: bool = _quiet_opt(),
    seed: int = _seed_opt(),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (fine-tuning and the search's objective).",
                               rich_help_panel=RUN),
    workers: int = _workers_opt("Trials in parallel (processes or Ray tasks, one torch thread each)."),
    executor: str = _executor_opt(),
    ray_address: Optional[str] = _ray_opt(),
    search: str = typer.Option("bo", "--search", help="How bayesft proposes rates: bo (BoTorch), random or grid.",
                               rich_help_panel=RESEARCH),
    rate_space: str = typer.Option("per-layer", "--rate-space", help="bayesft's search space: per-layer (one rate "
                                   "per dropout site, the paper's), per-stage (sites after layers of one width share "
                                   "a rate) or shared.", rich_help_panel=RESEARCH),
    kernel: str = typer.Option("matern52", "--kernel", help="bayesft's GP kernel: matern52 (ARD), exp (the "
                               "paper's), or saas (a sparse-axis fully Bayesian GP for many sites; the saas extra, "
                               "NumPyro).", rich_help_panel=RESEARCH),
    max_rate: float = typer.Option(0.8, "--max-rate", help="bayesft: the upper bound of every dropout rate.",
                                   rich_help_panel=RESEARCH),
    trial_fraction: float = typer.Option(1.0, "--trial-fraction", help="The share of the training set each trial "
                                         "fine-tunes on (the final fine-tune uses all of it).",
                                         rich_help_panel=RESEARCH),
    low_fidelity: Optional[float] = typer.Option(None, "--low-fidelity", help="--recipe bo: also run cheap trials "
                                                 "on this share of the trial data, each trial's share chosen by "
                                                 "information per cost; --trials then counts full trials' cost.",
                                                 rich_help_panel=RESEARCH),
    dropout_rate: float = typer.Option(0.3, "--dropout-rate", help="fixed-dropout: the rate at every site.",
                                       rich_help_panel=RESEARCH),
    awp_gamma: float = typer.Option(0.05, "--awp-gamma", help="awp: the perturbation's norm relative to each weight "
                                    "tensor's.", rich_help_panel=RESEARCH),
    code_bits: int = typer.Option(16, "--code-bits", help="ftna: the output code length (Hadamard codes).",
                                  rich_help_panel=RESEARCH),
    channel: bool = typer.Option(False, "--channel", help="Dropout sites drop whole channels after convolutions.",
                                 rich_help_panel=RESEARCH),
) -> None:
    """Harden a model against drift, export it to ONNX and sign it off on data no choice saw; exit 1 when the gate
    fails."""
    with guarded():
        from ftcompile import api

        api.require_torch("harden")
        from ftcompile.frontend.torch_import import is_factory_spec
        from ftcompile.runtime.validate import Gate
        from ftcompile.search.harden import HardenConfig
        from ftcompile.search.report import harden_json

        cfg = HardenConfig(sigma=_number_or_word(sigma), method=method, recipe=recipe, trials=trials, epochs=epochs,
                           final_epochs=final_epochs, samples=samples, max_rate=max_rate, rate=dropout_rate,
                           awp_gamma=awp_gamma, code_bits=code_bits, train_sigma=train_sigma, blend=blend,
                           search=search, rates=rate_space, trial_fraction=trial_fraction, kernel=kernel,
                           objective=objective, drift=drift, compensation=compensation, dac_bits=dac_bits,
                           adc_bits=adc_bits, adc_noise=adc_noise, chip=chip, weight_clip=weight_clip,
                           weight_remap=weight_remap, targets=targets, bias=bias, lr=lr, optimizer=optimizer,
                           lr_schedule=lr_schedule, batch_size=batch_size, channel=channel, seed=seed, device=device,
                           low_fidelity=low_fidelity,
                           time_budget=_duration(time_budget), workers=workers, executor=executor,
                           ray_address=ray_address, holdout=holdout)
        gate_ = Gate(min_accuracy=min_accuracy, stat=stat, max_drop=max_drop)
        board = TrialBoard(cfg.trial_count if cfg.low_fidelity is None else None, cfg.workers,
                           enabled=not (quiet or as_json))

        def on_stage(text):
            board.stop()
            if board.enabled:
                err.print(f"[dim]{text}...[/]", highlight=False)

        data = [_data(d, image_mean, image_std) for d in (train, val, test)]
        try:
            result = api.harden(model if is_factory_spec(model) else Path(model), *data[:2], test=data[2], out=out,
                                config=cfg, gate=gate_, resume=resume, validate_samples=validate_samples,
                                plot=not no_plot, on_trial=board, on_stage=on_stage)
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
    """Trials as they finish: a live rich table on a terminal, one plain line each in CI or a pipe (stderr)."""

    def __init__(self, total: int | None, workers: int, *, enabled: bool):
        """``total``: the trials the search will run; None when its budget counts cost (``--low-fidelity``): no ETA."""
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

    def _table(self, best):
        from rich.table import Table

        from ftcompile.search.journal import NOISE_GRID
        from ftcompile.search.noise_level import SHARES

        done = len(self.rows)
        total = len(SHARES) if done and self.rows[-1].stage == NOISE_GRID else self.total
        eta = ""
        if total is not None:
            left = max(0, total - self.rows[-1].trial - 1) if done else total
            eta = f", ETA {(time.perf_counter() - self.t0) / done * left if done else 0.0:.0f} s"
        table = Table(title=f"trials (best {100 * best.objective:.2f}% at trial {best.trial}, "
                            f"{self.workers} worker{'s' if self.workers > 1 else ''}{eta})")
        for col in ("trial", "from", "tried", "objective %", "+- se", "s"):
            table.add_column(col, justify="right")
        for r in self.rows[-12:]:
            style = "bold green" if r is best else ("red" if r.status != "ok" else None)
            score = (f"{100 * r.objective:.2f}", f"{100 * r.stderr:.2f}") if r.status == "ok" else ("failed", "")
            table.add_row(str(r.trial), r.origin, r.tried, *score, f"{r.seconds:.1f}", style=style)
        return table

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _render_harden(result) -> None:
    from ftcompile.runtime.stats import format_ci

    rows = []
    for label, r in (("before", result.before), ("after", result.after)):
        s = r.stats
        rows.append([label, _pct(r.clean), _pct(s.mean), format_ci(s.total_ci_low, s.total_ci_high), _pct(s.p5),
                     _pct(s.min)])
    show_table(f"{Path(result.model).name} -> {result.out.name} ({result.config['method']}, drift "
               f"{result.after.drift}, {result.after.samples} samples)",
               ["model", "clean %", "mean %", "95% CI (drift+examples)", "p5 %", "min %"], rows)
    if any(result.rates):  # methods without dropout leave every site at 0: nothing to show
        print("rates: " + ", ".join(f"{site}={rate:.2f}" for site, rate in zip(result.sites, result.rates)))
    else:
        n = len(result.sites)
        print(f"dropout: none ({n} site{'' if n == 1 else 's'} at rate 0)")
    if result.sigma_auto is not None:
        print(f"target sigma {result.sigma_auto['sigma']:g}: where the source keeps half its clean metric on the "
              "validation data (--sigma auto)")
    if result.train_sigma is not None:
        from ftcompile.search.journal import NOISE_GRID, RECIPE

        how = (" (chosen by the grid)" if any(t.stage == NOISE_GRID for t in result.trials) else
               " (chosen by the recipe search)" if any(t.stage == RECIPE for t in result.trials) else "")
        print(f"trained under lognormal sigma {result.train_sigma:g}{how}")
    if result.lr_scale != 1.0:
        print(f"learning rate x{result.lr_scale:.2f} of --lr (the recipe's)")
    if result.blend is not None:
        tried = ", ".join(f"{a:g}" for a, _, _ in result.blend["scores"])
        print(f"source weights blended in: {result.blend['share']:g} (tried {tried})")
    if result.calibration:
        print(f"analog twin: {result.after.converters}; converter ranges {result.calibration}")
    print(result.signoff_statement)
    for c in result.after.checks:
        print(f"gate {c.name}: {c.value:.4f} -> {'pass' if c.passed else 'FAIL'}")
    print(f"verdict: {result.verdict}; wrote {result.out}, {result.report_json}, {result.report_markdown}"
          + (f", {result.plot}" if result.plot else "") + f" ({result.seconds:.0f} s)")


# --- the twin and inspection ----------------------------------------------------------------------------------
@app.command("export-twin")
def export_twin(
    model: Path = typer.Argument(..., help="ONNX model."),
    out: Path = typer.Option(..., "-o", "--out", help="Where to write the analog twin (ONNX).",
                             rich_help_panel=OUTPUTS),
    calibrate_on: Optional[str] = typer.Option(None, "--calibrate-on", help="Data whose first examples calibrate the "
                                               f"converter ranges ({DATA_HELP}); default the ranges the model stores "
                                               "(a hardened model's).", rich_help_panel=DATA),
    dac_bits: Optional[int] = typer.Option(8, "--dac-bits", help="Input converter bits (0: full precision).",
                                           rich_help_panel=DRIFT),
    adc_bits: Optional[int] = typer.Option(8, "--adc-bits", help="Output converter bits (0: full precision).",
                                           rich_help_panel=DRIFT),
    adc_noise: float = _adc_noise_opt(),
    chip: Optional[str] = _chip_opt(),
    output: Optional[str] = _output_opt(),
    as_json: bool = _json_opt(),
) -> None:
    """Write the analog twin: DAC/ADC quantizers around every crossbar layer (or, with --chip, every layer on the
    chip's tiles) at the model's (or calibrated) ranges, weights as overridable inputs; a plain ONNX file any
    onnxruntime runs."""
    with guarded():
        from ftcompile import api

        calibration = api.export_twin(model, out, calibrate_on=_data(calibrate_on), dac_bits=dac_bits or None,
                                      adc_bits=adc_bits or None, output=output, adc_noise=adc_noise, chip=chip)
    if chip is not None:
        tiles = len(calibration.ranges)
        if as_json:
            print(_json({"schema": "ftcompile.twin/1", "out": str(out), "chip": chip, "tiles": tiles,
                         "calibration": calibration.describe(), "ranges": calibration.ranges}))
        else:
            print(f"wrote {out}: {tiles} tiles of chip {chip}, input ranges {calibration.describe()}")
        return
    layers = len(calibration.ranges) // 2
    if as_json:
        print(_json({"schema": "ftcompile.twin/1", "out": str(out), "layers": layers, "dac_bits": dac_bits or None,
                     "adc_bits": adc_bits or None, "adc_noise": adc_noise, "calibration": calibration.describe(),
                     "ranges": calibration.ranges}))
        return
    noise = f" with output noise {adc_noise:g} of its bound" if adc_noise else ""
    print(f"wrote {out}: {layers} crossbar layers, DAC {dac_bits or 'float'} bits, ADC {adc_bits or 'float'} "
          f"bits{noise}, ranges {calibration.describe()}")


@app.command("export-program")
def export_program(
    model: Path = typer.Argument(..., help="ONNX model (a hardened one stores its tiles' input ranges)."),
    out: Path = typer.Option(..., "-o", "--out", help="The folder to write (manifest.json and one .npz per tile).",
                             rich_help_panel=OUTPUTS),
    chip: str = typer.Option(..., "--chip", help="The chip to program: aihwkit-inference[,key=value...] "
                             "(docs/chip.md).", rich_help_panel=DRIFT),
    calibrate_on: Optional[str] = typer.Option(None, "--calibrate-on", help="Data whose first examples calibrate the "
                                               f"tiles' input ranges ({DATA_HELP}); default the ranges the model "
                                               "stores.", rich_help_panel=DATA),
    output: Optional[str] = _output_opt(),
    as_json: bool = _json_opt(),
) -> None:
    """Write the programming file for a chip's toolchain: per tile the target conductance of every device of every
    differential pair (uS), the column scales, the DAC/ADC ranges and the drift-compensation reference, as .npz files
    with a JSON manifest (schema ftcompile.program/1, the model's sha256). docs/chip.md describes the format."""
    with guarded():
        from ftcompile import api

        manifest = api.export_program(model, out, chip=chip, calibrate_on=_data(calibrate_on), output=output)
    tiles = sum(len(layer["tiles"]) for layer in manifest["layers"])
    if as_json:
        print(_json(manifest))
        return
    print(f"wrote {out}: {len(manifest['layers'])} layers on {tiles} tiles of chip {manifest['chip']}, input ranges "
          f"{manifest['input_ranges']}")


@app.command()
def inspect(
    model: Optional[Path] = typer.Argument(None, help="ONNX model (or .pt2)."),
    output: Optional[str] = _output_opt(),
    ops: bool = typer.Option(False, "--ops", help="List the ONNX operators the importer (harden, inspect) supports.",
                             rich_help_panel=OUTPUTS),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object.", rich_help_panel=OUTPUTS),
) -> None:
    """The model's crossbar layers, output layers, operator histogram, metadata and import parity."""
    if ops:
        with guarded():
            from ftcompile import api

            api.require_torch("inspect --ops")
            from ftcompile.frontend.onnx_import import SUPPORTED
        print(_json(SUPPORTED) if as_json else "\n".join(SUPPORTED))
        return
    if model is None:
        print("error: give a MODEL to inspect (or --ops).", file=sys.stderr)
        raise typer.Exit(2)
    with guarded():
        from collections import Counter
        from dataclasses import asdict

        from ftcompile import api

        api.require_torch("inspect")

        from ftcompile.export import get_metadata
        from ftcompile.passes.layers import find_layers
        from ftcompile.passes.onnx_graph import dropout_rates_onnx

        imported = api.load_model(model, output=output)
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
    show_table(f"{model} (opset {info['opset']})", ["layer", "op", "weight shape", "params", "output", "dropout"],
               [[layer["target"], layer["kind"], str(tuple(layer["shape"])), f"{layer['params']:,}",
                 "yes" if layer["is_output"] else "", "" if layer["dropout_rate"] is None
                 else f"{layer['dropout_rate']:.2f}"] for layer in info["layers"]], right={"params", "dropout"})
    print("ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(info["ops"].items())))
    if info["metadata"]:
        print(f"metadata: {json.dumps(info['metadata'])}")
    p = info["parity"]
    print(f"import matches onnxruntime: {'yes' if p['ok'] else 'NO'} (max abs diff {p['max_abs']:.2g})")


def main() -> None:
    try:
        app(prog_name="ftcompile")
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
