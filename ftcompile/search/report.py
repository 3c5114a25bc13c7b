"""The harden report: JSON (``ftcompile.harden/2``) and Markdown with the trial table and before/after, and the
warnings a compiler owes its user when the hardened model came out worse than the source."""
from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

from ftcompile.fileio import write_text_atomic
from ftcompile.search.journal import NOISE_GRID, RECIPE
from ftcompile.runtime.report import package_versions, to_json
from ftcompile.runtime.stats import format_ci, strict_json

# /2: the data of every role (train, val, signoff: source, sha256, examples), what the sign-off data is, the twin's
# calibration
SCHEMA = "ftcompile.harden/2"


def _trial_json(t) -> dict:
    row = asdict(t)
    if t.status != "ok":  # strict JSON has no NaN
        row["objective"] = row["stderr"] = None
    return row


# a clean drop beyond this share of the source's clean metric is worth a warning
CLEAN_DROP = 0.10


# what to turn down first, per method, when the fine-tune hurt (GTSRB STN: fixed dropout 0.3 took clean 98.4 -> 86.7)
_HOTTER = {"fixed-dropout": "a lower --rate", "awp": "a smaller --awp-gamma"}


def outcome_warnings(before, after, method: str = "") -> list[str]:
    """What went wrong, judged on the runtime's sign-off of the source (``before``) and of the hardened model.

    Worse under drift: the means differ by more than twice the standard error of their difference (drift
    samples only). On the full-width ResNet-18 (GPU table, README) the default learning rate left three of six
    methods at chance, and harden wrote them out without a word.
    """
    out = []
    b, a = before.stats, after.stats
    se = math.sqrt(b.std ** 2 / max(1, b.n) + a.std ** 2 / max(1, a.n))
    if b.mean - a.mean > 2 * se:
        knob = _HOTTER.get(method, "a lower --lr")
        out.append(f"the hardened model is worse under drift than the source ({100 * b.mean:.2f}% -> "
                   f"{100 * a.mean:.2f}% mean): the fine-tune hurt this network; try {knob}.")
    if before.clean > 0 and after.clean < (1 - CLEAN_DROP) * before.clean:
        out.append(f"clean {100 * before.clean:.2f}% -> {100 * after.clean:.2f}% (more than "
                   f"{100 * CLEAN_DROP:.0f}% lost): a lower --lr, or for noise training --compensation mean or a "
                   "lower --train-sigma (the network can learn the training noise's mean gain), may keep it.")
    return out


def harden_json(result) -> dict:
    return strict_json({
        "schema": SCHEMA, "model": result.model, "out": str(result.out), "method": result.config["method"],
        "sigma": result.config["sigma"], "config": result.config, "sites": result.sites, "rates": result.rates,
        "best_trial": result.best_trial, "train_sigma": result.train_sigma, "blend": result.blend,
        "final_epochs": result.final_epochs, "lr_scale": result.lr_scale, "sigma_auto": result.sigma_auto,
        "data": result.data, "signoff_kind": result.signoff_kind,
        "signoff_statement": result.signoff_statement, "calibration": result.calibration,
        "trials": [_trial_json(t) for t in result.trials],
        "torch_objective": {"before": result.torch_before, "after": result.torch_after},
        "before": to_json(result.before), "after": to_json(result.after), "verdict": result.verdict,
        "warnings": result.warnings,
        "seconds": result.seconds, "peak_mb": result.peak_mb, "plot": str(result.plot) if result.plot else None,
        "versions": package_versions(),
    })


def harden_markdown(result) -> str:
    b, a = result.before, result.after
    pct = lambda x: f"{100 * x:.2f}%"  # noqa: E731
    lines = [
        f"### ftcompile harden: **{result.verdict.upper()}**", "",
        f"`{Path(result.model).name}` -> `{Path(result.out).name}`, method `{result.config['method']}`, "
        f"drift `{a.drift}`, {len(result.trials)} trials, {result.seconds:.0f} s.", "",
        "| model | clean | mean under drift | 95% CI, drift + examples | 95% CI, drift only | p5 | min |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, r in (("before", b), ("after", a)):
        s = r.stats
        lines.append(f"| {label} | {pct(r.clean)} | {pct(s.mean)} "
                     f"| {format_ci(s.total_ci_low, s.total_ci_high, sep=' - ')} "
                     f"| {format_ci(s.drift_ci_low, s.drift_ci_high, sep=' - ')} | {pct(s.p5)} | {pct(s.min)} |")
    lines += ["", f"{result.signoff_statement} Measured by onnxruntime on {a.examples} examples, {a.samples} "
              f"samples (seed {a.seed}). The torch objective (the validation data that chose the recipe, "
              f"{result.config['samples']} common drift samples of seed {result.config['seed']} + 2^20) went from "
              f"{pct(result.torch_before)} to {pct(result.torch_after)}.", ""]
    if result.data:
        lines += ["| data | file | sha256 | examples | part |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {role} | `{d['source']}` | `{d['sha256'][:12]}` | {d['examples']:,} | {d.get('subset', '')} |"
                  for role, d in result.data.items()]
        lines.append("")
    if result.calibration:
        lines += [f"Analog twin: {a.converters}; converter ranges {result.calibration}.", ""]
    if result.sigma_auto is not None:
        pts = ", ".join(f"{s:g}: {pct(m)}" for s, m in result.sigma_auto["points"])
        lines += [f"Target sigma {result.sigma_auto['sigma']:g}, where the source keeps half its clean metric "
                  f"({pct(result.sigma_auto['clean'])}) on the validation data (`--sigma auto`; mean by sigma: {pts}).",
                  ""]
    if result.train_sigma is not None:
        how = (" (chosen by the training-noise grid below)" if any(t.stage == NOISE_GRID for t in result.trials) else
               " (chosen by the recipe search below)" if any(t.stage == RECIPE for t in result.trials) else "")
        lines += [f"Trained under lognormal drift at sigma {result.train_sigma:g}{how}"
                  + (f", learning rate x{result.lr_scale:.2f} of `--lr`" if result.lr_scale != 1.0 else "") + ".", ""]
    if result.blend is not None:
        tried = ", ".join(f"{a:g}: {pct(m)}" for a, m, _ in result.blend["scores"])
        lines += [f"Source weights blended in: {result.blend['share']:g} (objective by share: {tried}; under "
                  "`--blend auto` keeps the smallest share within one standard error of the best).", ""]
    lines += ["| site (after layer) | rate |", "| --- | --- |"]
    lines += [f"| {site} | {rate:.3f} |" for site, rate in zip(result.sites, result.rates)]
    if result.trials:
        lines += ["", "| trial | from | tried | objective | +- se | seconds |", "| --- | --- | --- | --- | --- | --- |"]
        for t in result.trials:
            chosen = (t.train_sigma == result.train_sigma if t.stage == NOISE_GRID
                      else t.trial == result.best_trial)
            mark_word = "kept" if t.stage == RECIPE else "best"
            mark = f" ({mark_word})" if chosen and t.status == "ok" else ""
            score = (pct(t.objective), pct(t.stderr)) if t.status == "ok" else (f"failed: {t.error}", "")
            lines.append(f"| {t.trial}{mark} | {t.origin} | {t.tried} | {score[0]} "
                         f"| {score[1]} | {t.seconds:.1f} |")
    for c in a.checks:
        lines.append(f"\nGate {c.name}: {c.value:.4f} -> {'pass' if c.passed else 'FAIL'}")
    lines += [f"\n**Warning:** {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def write_harden_reports(result, json_path: Path, markdown_path: Path) -> None:
    payload = json.dumps(harden_json(result), indent=2, allow_nan=False) + "\n"
    text = harden_markdown(result)
    write_text_atomic(json_path, payload)
    write_text_atomic(markdown_path, text)
