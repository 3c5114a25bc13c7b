"""Validation reports: JSON (schema ``ftcompile.validation/3``), Markdown and JUnit XML.

All are built from ``ValidationResult`` and written atomically.
"""
from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from xml.etree import ElementTree as ET

from ftcompile.fileio import write_text_atomic
from ftcompile.runtime.stats import format_ci, strict_json
from ftcompile.runtime.validate import ValidationResult

# /2: the one "ci" became drift_ci_* (drift sampling only) and total_ci_* (drift + finite example set)
# /3: the data measured on (source, sha256, examples), the drifted tensors' names, the twin's calibration
SCHEMA = "ftcompile.validation/3"


def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("ftcompile", "numpy", "onnx", "onnxruntime", "torch", "botorch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def to_json(result: ValidationResult) -> dict:
    d = result.to_dict()
    stats = d.pop("stats")
    # the statistics' own count of examples is 0 for a metric that is no mean over examples (mAP): the result's
    # number of examples measured wins
    return strict_json({"schema": SCHEMA, **stats, **{k: v for k, v in d.items() if k != "values"},
                        "values": d["values"], "versions": package_versions()})


def to_markdown(result: ValidationResult) -> str:
    s = result.stats
    icon = {"pass": "PASS", "fail": "FAIL", "measured": "MEASURED"}[result.verdict]
    lines = [
        f"### ftcompile validation: **{icon}**",
        "",
        f"Model `{Path(result.model).name}` (sha256 `{result.model_sha256[:12]}`), drift `{result.drift}` on "
        f"{result.drifting_tensors} tensors ({result.drifting_weights:,} weights, targets `{result.targets}`"
        f"{TARGET_WORDS.get(result.targets, '')}), {result.samples} samples, seed {result.seed}, "
        f"{result.examples} examples.",
        "",
        *_data_lines(result),
        "| clean | mean | 95% CI, drift + examples | 95% CI, drift only | std | p5 | p50 | p95 | min |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {_pct(result.clean)} | {_pct(s.mean)} | {format_ci(s.total_ci_low, s.total_ci_high, sep=' - ')} "
        f"| {format_ci(s.drift_ci_low, s.drift_ci_high, sep=' - ')} | {_pct(s.std)} "
        f"| {_pct(s.p5)} | {_pct(s.p50)} | {_pct(s.p95)} | {_pct(s.min)} |",
        "",
        "The drift-only interval covers Monte-Carlo sampling of the drift; the other also covers the finite "
        f"set of {result.examples} examples (what a gate on `--stat total_ci_low` uses)."
        + (f" {s.ci_note[0].upper() + s.ci_note[1:]}." if s.ci_note else ""),
    ]
    if result.checks:
        lines += ["", "| gate | value | threshold | result |", "| --- | --- | --- | --- |"]
        lines += [f"| {c.name} | {c.value:.4f} | {c.threshold:.4f} | {'pass' if c.passed else 'FAIL'} |"
                  for c in result.checks]
    return "\n".join(lines) + "\n"


TARGET_WORDS = {"crossbar": ": layer weights; biases and normalization digital",
                "params": ": every learned parameter"}


def _data_lines(result: ValidationResult) -> list[str]:
    lines = []
    if result.data:
        d = result.data
        part = f", {d['subset']}" if d.get("subset") else ""
        lines.append(f"Data `{d['source']}` (sha256 `{d['sha256'][:12]}`, {d['examples']:,} examples{part}).")
    if result.converters:
        lines.append(f"Analog twin: {result.converters}; converter ranges {result.calibration}.")
    return lines + ([""] if lines else [])


def to_junit(result: ValidationResult) -> str:
    checks = result.checks
    suite = ET.Element("testsuite", name="ftcompile.validate", tests=str(max(1, len(checks))),
                       failures=str(sum(not c.passed for c in checks)), time=f"{result.seconds:.3f}")
    props = ET.SubElement(suite, "properties")
    for key in ("model", "model_sha256", "drift", "targets", "samples", "seed", "clean"):
        ET.SubElement(props, "property", name=key, value=str(getattr(result, key)))
    for key, value in (result.data or {}).items():
        ET.SubElement(props, "property", name=f"data_{key}", value=str(value))
    if result.converters:
        ET.SubElement(props, "property", name="converters", value=result.converters)
        ET.SubElement(props, "property", name="calibration", value=result.calibration)
    for key in ("mean", "total_ci_low", "total_ci_high", "drift_ci_low", "drift_ci_high"):
        value = getattr(result.stats, key)
        ET.SubElement(props, "property", name=key, value="null" if value is None else str(value))
    if not checks:
        ET.SubElement(suite, "testcase", classname="ftcompile.validate", name="measured (no gate)")
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname="ftcompile.validate", name=c.name)
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=f"{c.name}: got {c.value:.4f}")
            failure.text = f"{c.name}: measured {c.value:.4f}, threshold {c.threshold:.4f} ({result.drift})"
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_reports(result: ValidationResult, *, json_path=None, markdown_path=None, junit_path=None) -> None:
    """Render every report first, then write each atomically (no half-written set on a render error)."""
    rendered = []
    if json_path:
        rendered.append((json_path, json.dumps(to_json(result), indent=2, allow_nan=False) + "\n"))
    if markdown_path:
        rendered.append((markdown_path, to_markdown(result)))
    if junit_path:
        rendered.append((junit_path, to_junit(result)))
    for path, text in rendered:
        write_text_atomic(Path(path), text)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"
