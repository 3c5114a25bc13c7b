"""Harden one saved ERM model with several methods through the normal `ftcompile harden` CLI, and collect the reports.

Used by the task examples (examples/cifar_resnet20/run.py, examples/gtsrb_stn/run.py):
1. Unless --sigma is given, the ERM model is swept over sigma on the validation set; the harden sigma is the
   smallest where ERM loses at least --min-loss (accuracy units).
2. Each --methods entry (none: only the sweep) runs `ftcompile harden` in a subprocess with --flags (empty: the
   defaults); the report's seconds, the harden process's own peak memory, rates, the training noise (and its
   grid's scores), before/after statistics and the method `auto` resolved to are written under "runs" in the
   results JSON (kept across invocations: one method at a time is fine).
3. With --sweep-samples K, the ERM model and every run's hardened model (plus --sweep-extra key=path models) are
   swept over sigma 0-1.5 on the sign-off set with K drift samples: "figure3" in the results JSON, and a plot
   beside it (`<results>_figure3.png`), the paper's Figure 3 for that task; --sweep-only a,b sweeps those
   models alone and keeps the file's other curves (a method run later joins without re-sweeping the rest).
`half_loss_study` is the PennFudan examples' variant (examples/pennfudan_unet/run.py and pennfudan_det/run.py):
harden at the sigma where ERM keeps half its clean metric, then sweep every model, plot, and draw one test image.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

SIGMAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
FIGURE3_SIGMAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5]  # the paper's range


def arguments(default_methods: str, default_flags: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default=default_methods)
    ap.add_argument("--test-size", type=int, default=0, help="sign off on this many test images (0: all)")
    ap.add_argument("--samples", type=int, default=10, help="drift samples of the ERM sweep")
    ap.add_argument("--min-loss", type=float, default=0.20)
    ap.add_argument("--sigma", type=float, default=None, help="skip the sweep and harden at this sigma")
    ap.add_argument("--flags", default=default_flags, help="harden flags ('' = the defaults)")
    ap.add_argument("--model", type=Path, default=None, help="the ERM model (default: the example's)")
    ap.add_argument("--results", type=Path, default=None, help="the results JSON (default: the example's)")
    ap.add_argument("--sweep-samples", type=int, default=0,
                    help="then sweep ERM and every run's model over sigma 0-1.5 with this many samples (0: no)")
    ap.add_argument("--sweep-extra", default="",
                    help="more models for that sweep, key=path,... (runs whose results entry has no path)")
    ap.add_argument("--sweep-only", default="",
                    help="sweep only these keys (erm, run names, extras: a,b,...) and keep the results file's other "
                         "curves, which must have the same samples and images")
    return ap


def harden_cli(model: "Path | str", work: Path, signoff: "Path | None", sigma: "float | str | None", method: str,
               flags: str, name: str | None = None, env: dict | None = None) -> dict | None:
    """`ftcompile harden` in a subprocess (train/val from ``work``); the summary of its JSON report, or None
    (stderr printed) when it exited with a usage or internal error. ``model``: a file, or a module factory
    ``package.module:factory`` (then ``name`` names the outputs); ``sigma``: a number, ``auto``, or None when
    ``flags`` give a --drift; ``signoff``: the test data, or None to sign off on the share of val.npz that harden
    holds out (validation data no choice saw: for choosing defaults); ``env``: the subprocess's environment."""
    hardened = work / f"{name or Path(model).stem}.{method}.onnx"
    target = [] if sigma is None else ["--sigma", sigma if isinstance(sigma, str) else f"{sigma:g}"]
    test = [] if signoff is None else ["--test", str(signoff)]
    cmd = [sys.executable, "-m", "ftcompile.cli", "harden", str(model), "--train", str(work / "train.npz"),
           "--val", str(work / "val.npz"), *test, *target, "--method", method,
           "--out", str(hardened), "--no-plot", "--json", *flags.split()]
    print("$ " + " ".join(cmd[2:]), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode not in (0, 1):
        print(res.stderr[-2000:])
        return None
    report = json.loads(res.stdout)
    fidelities = [t.get("fidelity", 1.0) for t in report["trials"] if t.get("stage") == "recipe"]
    return {"method": report["config"]["method"], "flags": flags or "defaults", "seconds": round(report["seconds"]),
            "peak_mb": round(report["peak_mb"]), "rates": report["rates"], "out": str(hardened),
            "train_sigma": report.get("train_sigma"), "final_epochs": report.get("final_epochs"),
            "blend": (report.get("blend") or {}).get("share"), "lr_scale": report.get("lr_scale"),
            "sigma": report["config"]["sigma"], "sigma_auto": report.get("sigma_auto"),
            "recipe": report["config"].get("recipe"), "drift": report["after"]["drift"],
            "train_sigma_grid": {f"{t['train_sigma']:g}": t["objective"] for t in report["trials"]
                                 if t.get("stage") == "train-sigma"},
            "signoff": report.get("signoff_kind"), "signoff_examples": report["after"]["examples"],
            "before": {k: report["before"][k] for k in ("clean", "mean", "total_ci_low", "std", "samples")},
            "after": {k: report["after"][k] for k in ("clean", "mean", "total_ci_low", "std", "samples")},
            "recipe_trials": {f"{f:g}": fidelities.count(f) for f in sorted(set(fidelities))},  # per fidelity
            "commit": code_commit(Path(__file__).resolve().parents[1]),
            "val_objective": report["torch_objective"]}


def run(model: Path, work: Path, out: Path, args) -> dict:
    import ftcompile

    test = np.load(work / "test.npz")
    signoff = work / "test.npz"
    if args.test_size and args.test_size < len(test["y"]):
        pick = np.random.default_rng(1).permutation(len(test["y"]))[:args.test_size]
        signoff = work / f"test{args.test_size}.npz"
        np.savez(signoff, x=test["x"][pick], y=test["y"][pick])
    results = json.loads(out.read_text()) if out.exists() else {}
    if args.sigma is None:  # a choice: it reads the validation data, never the sign-off's test images
        curve = ftcompile.sweep([model], work / "val.npz", sigmas=SIGMAS, samples=args.samples).curves[model.stem]
        results["erm_sweep_val"] = {f"{p.sigma:g}": round(100 * p.mean, 2) for p in curve}
        sigma = next((p.sigma for p in curve if curve[0].mean - p.mean >= args.min_loss), SIGMAS[-1])
        print("ERM: " + ", ".join(f"{p.sigma:g}: {100 * p.mean:.2f}" for p in curve), flush=True)
    else:
        sigma = args.sigma
    results["sigma"] = sigma
    for method in filter(None, args.methods.split(",")):  # --methods '': the sweep only
        summary = harden_cli(model, work, signoff, sigma, method, args.flags)
        if summary is None:
            continue
        results.setdefault("runs", {})[method] = {**summary, "test_size": args.test_size or len(test["y"])}
        print(json.dumps({method: results["runs"][method]}), flush=True)
        results = _save(out, results, method)
    results = _save(out, results)
    if args.sweep_samples:
        results = _save(out, {**results, "figure3": figure3(model, signoff, results, args, out)})
    return results


def figure3(model: Path, signoff: Path, results: dict, args, out: Path) -> dict:
    """Sweep ERM and each run's hardened model (those still on disk) over FIGURE3_SIGMAS; plot beside ``out``."""
    from ftcompile.runtime.plot import plot_curves

    models = {"erm": model}
    for key, run in results.get("runs", {}).items():
        if "out" in run and Path(run["out"]).exists():
            models[key] = Path(run["out"])
        else:
            print(f"figure 3: run {key!r} has no model on disk; left out", flush=True)
    for item in filter(None, args.sweep_extra.split(",")):
        key, _, path = item.partition("=")
        models[key] = Path(path)
    with np.load(signoff) as t:
        images = len(t["y"])
    only = set(filter(None, getattr(args, "sweep_only", "").split(",")))
    old = {"models": {}, "curves": {}}
    if only:
        old = results.get("figure3", {})
        if (old.get("samples"), old.get("images")) != (args.sweep_samples, images):
            raise SystemExit(f"error: --sweep-only keeps the results file's other curves, which were swept with "
                             f"K = {old.get('samples')} on {old.get('images')} images, not K = {args.sweep_samples} "
                             f"on {images}; sweep every model instead (leave out --sweep-only).")
        if unknown := only - set(models):
            raise SystemExit(f"error: --sweep-only names {', '.join(sorted(unknown))}, not a run with its model on "
                             f"disk or an extra; use one of {', '.join(models)}.")
        models = {k: v for k, v in models.items() if k in only}
    points = sweep_each(models, signoff, FIGURE3_SIGMAS, args.sweep_samples)
    for key, pts in points.items():
        print(f"{key:15s} " + "  ".join(f"{p.sigma:g}:{100 * p.mean:.2f}" for p in pts), flush=True)
    # kept curves (their models may be gone from disk) first, in their order; a kept curve has its means only
    curves = {**old["curves"], **{key: {f"{p.sigma:g}": round(100 * p.mean, 2) for p in pts}
                                  for key, pts in points.items()}}
    drawn = {key: points.get(key) or [SimpleNamespace(x=float(s), mean=v / 100, p5=v / 100, p95=v / 100)
                                      for s, v in c.items()] for key, c in curves.items()}
    plot_curves(list(drawn.items()), out.with_name(f"{out.stem}_figure3.png"),
                title=f"{out.stem}: every method, {images} test images, K = {args.sweep_samples}",
                xlabel="sigma")
    return {"samples": args.sweep_samples, "images": images,
            "models": {**old["models"], **{k: str(v) for k, v in models.items()}}, "curves": curves}


def sweep_each(models: dict, data: Path, sigmas: list, samples: int, compensation: str | None = None) -> dict:
    """{key: that model's sweep points}, one sweep per model: the API keys its curves by file stem, which two
    runs' files may share."""
    import ftcompile

    return {key: next(iter(ftcompile.sweep([path], data, sigmas=sigmas, samples=samples,
                                           compensation=compensation).curves.values()))
            for key, path in models.items()}


def half_loss_sigma(curve: list, rule: str = "grid") -> float:
    """Where a sweep ``curve`` (points with .sigma, .mean; the first at sigma 0) falls to half its clean value.
    ``grid``: the first swept sigma at or below half (the last one if none is). ``crossing``: the product's one rule
    (``ftcompile.runtime.crossing.half_loss_crossing``), to 0.01."""
    from ftcompile.runtime.crossing import half_loss_crossing

    half = curve[0].mean / 2
    below = next((i for i, p in enumerate(curve) if p.mean <= half), None)
    if below is None:
        return curve[-1].sigma
    if rule == "grid":
        return curve[below].sigma
    return round(half_loss_crossing([p.sigma for p in curve], [p.mean for p in curve], curve[0].mean), 2)


def _save(out: Path, results: dict, method: str | None = None) -> dict:
    """Write ``results`` (with only ``method``'s run taken from it), re-reading the file first: runs of other
    methods in parallel processes write the same file."""
    from ftcompile.fileio import write_text_atomic

    current = json.loads(out.read_text()) if out.exists() else {}
    current.update({k: v for k, v in results.items() if k != "runs"})
    runs = current.setdefault("runs", {})
    if method is not None:
        runs[method] = results["runs"][method]
    write_text_atomic(out, json.dumps(current, indent=2) + "\n")
    return current


def code_commit(root: Path) -> str:
    """The commit whose code a run ran (short hash), ``+changes`` when tracked files other than the results differed
    from it: the results say which code made them, so a table can tell runs before and after a change apart."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
    return f"{head or 'unknown'}{'+changes' if changed else ''}"


def save_run(out: Path, keys: tuple, summary: dict) -> None:
    """Store one run's ``summary`` at ``keys`` (nested) in the results file ``out``, re-read first: parallel
    invocations on other tasks write the same file (bench_recipe.py, bench_defaults.py)."""
    from ftcompile.fileio import write_text_atomic

    results = json.loads(out.read_text()) if out.exists() else {}
    node = results
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = summary
    write_text_atomic(out, json.dumps(results, indent=2, sort_keys=True) + "\n")


# the benchmarks' `map` allocator setting (bench_memory, bench_allocator), beside ftcompile's own
# (resources.keep_large_allocations): torch reads this variable once, at its first block of 2 MiB or more, so it goes
# in the child's environment
MAP_ENV = {"THP_MEM_ALLOC_ENABLE": "1"}


def map_large_blocks() -> bool:
    """Blocks of 4 MiB and up get their own mapping, released when freed (torch's huge pages: ``MAP_ENV``); the heap
    keeps the smaller ones and is never trimmed. glibc only; returns whether it applied."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 4 << 20)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def one_thread_env(root: Path) -> dict:
    """The environment of a harden subprocess with one torch thread, so two runs can share the 2 cores."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(root)}


def half_loss_arguments(default_methods: str) -> argparse.ArgumentParser:
    """The flags of the half-loss studies (examples/pennfudan_unet/run.py, examples/pennfudan_det/run.py)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=None, help="the example's work folder (default: its own)")
    ap.add_argument("--methods", default=default_methods)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--flags", default="", help="extra harden flags (default: none, the defaults)")
    ap.add_argument("--no-sweep", action="store_true", help="harden only: no sweep, plots or figure")
    ap.add_argument("--compensation", default=None, help="drift compensation of the chip (global, column, mean)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default: by compensation, in benchmarks/results)")
    ap.add_argument("--at", choices=("grid", "crossing"), default="grid",
                    help="harden sigma: the first swept sigma where ERM keeps at most half its clean metric (grid), "
                         "or the interpolated sigma where it keeps half (crossing; ERM is then measured there too)")
    return ap


def half_loss_study(erm: Path, harden_model: "Path | str", name: str, out: Path, sigmas: list, metric: str,
                    title: str, figure, picture: str, args) -> dict:
    """Sweep the ERM model ``erm`` over ``sigmas`` on ``args.work``/val.npz and harden ``harden_model`` (a file or a
    module factory) with each ``args.methods`` entry at the sigma where ERM keeps half its clean ``metric`` there
    (``half_loss_sigma`` by ``args.at``); ERM's curve on test.npz is the report's; then (unless ``args.no_sweep``)
    sweep every model, plot the curves to ``out``.png and call ``figure(models, work, sigma, path, comp=...)`` for
    the before/after picture
    (``args.work``/``out.stem``_``picture``.png). Runs with extra ``args.flags`` are keyed ``"method flags"``
    beside the defaults; the results JSON is rewritten after every run, re-read first (runs of other processes may
    have landed)."""
    from ftcompile.runtime.plot import plot_curves

    test, comp = args.work / "test.npz", args.compensation
    flags = f"--compensation {comp} {args.flags}".strip() if comp else args.flags
    # the harden sigma is a choice: it reads the validation data (the test images only measure)
    sigma = half_loss_sigma(sweep_each({"erm": erm}, args.work / "val.npz", sigmas, args.samples, comp)["erm"], args.at)
    curve = sweep_each({"erm": erm}, test, sigmas, args.samples, comp)["erm"]
    # between two swept sigmas: measure ERM there too, alone (a sample's draw does not depend on the other sigmas
    # swept), and sweep every model there
    if sigma not in sigmas:
        sigmas = sorted([*sigmas, sigma])
        curve = sorted([*curve, *sweep_each({"erm": erm}, test, [sigma], args.samples, comp)["erm"]],
                       key=lambda p: p.sigma)
    print(f"ERM {metric}: " + ", ".join(f"{p.sigma:g}: {p.mean:.3f}" for p in curve)
          + f" -> harden at sigma {sigma:g} ({args.at})")
    with np.load(test) as t:
        images = len(t["x"])
    results = json.loads(out.read_text()) if out.exists() else {}
    results.update({"sigma": sigma, "sigma_rule": args.at, "samples": args.samples, "test_images": images,
                    "compensation": comp or "none",
                    "erm_at_sigma": {"clean": round(curve[0].mean, 4),
                                     "mean": round(next(p.mean for p in curve if p.sigma == sigma), 4)}})
    results.setdefault("runs", {})
    models = {"erm": erm}
    for method in filter(None, args.methods.split(",")):
        key = f"{method} {args.flags}" if args.flags else method
        summary = harden_cli(harden_model, args.work, test, sigma, method, flags,
                             name=name + "".join(c if c.isalnum() else "-" for c in flags))
        if summary is None:
            continue
        results["runs"][key] = summary
        models[key] = Path(summary["out"])
        print(json.dumps({key: summary}), flush=True)
        _save(out, results, key)
    if args.no_sweep:
        return results
    curves = sweep_each(models, test, sigmas, args.samples, comp)
    results[metric] = {key: {f"{p.sigma:g}": round(p.mean, 4) for p in pts} for key, pts in curves.items()}
    for key, row in results[metric].items():
        print(f"{key:15s} " + "  ".join(f"{s}:{v:.3f}" for s, v in row.items()))
    plot_curves(list(curves.items()), out.with_suffix(".png"),
                title=title + (f", {comp} compensation" if comp else ""), xlabel="sigma", metric=metric)
    # the picture shows a data set's photograph (PennFudan's readme reserves its copyright): the work folder, never
    # the repository's results
    figure(models, args.work, sigma, args.work / f"{out.stem}_{picture}.png", comp=comp or "none")
    return _save(out, results)
