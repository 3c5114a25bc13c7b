"""The CLI as a product: options grouped by intent, defaults that agree with the API, output a CI log can read,
--json that prints only JSON, and the release gate."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import fields

import pytest
import typer
from typer.testing import CliRunner

from ftcompile.cli import BATCH, HOLDOUT, app
from ftcompile.runtime.crossing import half_loss_crossing
from tests.helpers import teacher_files

run = CliRunner().invoke


def _params(command: str) -> dict:
    cmd = typer.main.get_command(app).commands[command]
    return {p.name: p for p in cmd.params}


def test_every_option_of_every_command_sits_in_a_panel():
    for name, cmd in typer.main.get_command(app).commands.items():
        loose = [p.name for p in cmd.params if getattr(p, "param_type_name", "") == "option"
                 and not getattr(p, "rich_help_panel", None)]
        assert not loose, (name, loose)
    panels = {p.rich_help_panel for p in _params("harden").values() if getattr(p, "rich_help_panel", None)}
    assert panels == {"Data", "Target drift and chip", "Method", "Search", "Training", "Gate", "Outputs",
                      "Execution", "Research knobs (methods other than the default)"}
    research = {p.name for p in _params("harden").values() if (p.rich_help_panel or "").startswith("Research")}
    assert {"kernel", "rate_space", "awp_gamma", "code_bits", "max_rate", "search", "trial_fraction",
            "dropout_rate"} <= research


def test_cli_defaults_are_the_api_s():
    from ftcompile.search.harden import HardenConfig
    from ftcompile.signoff import HOLDOUT as API_HOLDOUT

    from ftcompile.runtime.validate import BATCH as API_BATCH

    assert HOLDOUT == API_HOLDOUT and BATCH == API_BATCH
    params = _params("harden")
    renamed = {"rate": "dropout_rate", "rates": "rate_space"}
    for f in fields(HardenConfig):
        p = params.get(renamed.get(f.name, f.name))
        if p is None or f.name in ("sigma", "drift", "compensation", "time_budget", "dac_bits", "adc_bits",
                                   "ray_address"):
            continue
        assert str(p.default) == str(f.default), (f.name, p.default, f.default)


def test_help_names_every_drift_family_and_no_lab_notes():
    text = run(app, ["harden", "--help"], terminal_width=200).output
    for family in ("lognormal:", "gaussian:", "stuck-at:", "quantize:", "table:", "pcm:", "reram-wan2022:", "comp="):
        assert family in text, family
    for lab in ("README", "measured,", "(measured", "measured)"):
        assert lab not in text, lab


def test_a_pipe_gets_every_digit(tmp_path):
    model, data = teacher_files(tmp_path)
    r = run(app, ["validate", str(model), "--data", str(data), "--sigma", "0.8", "--samples", "5"])
    assert r.exit_code == 0
    row = r.stdout.splitlines()[2]  # title, header, the row
    assert "…" not in r.stdout and len(row.split()) == 9 and "-" in row.split()[2]  # the interval, whole


@pytest.mark.parametrize("command", ["validate", "sweep", "analyze", "gate", "export-twin"])
def test_json_prints_only_json(tmp_path, command):
    model, data = teacher_files(tmp_path)
    args = {"validate": ["--samples", "2"], "sweep": ["--sigmas", "0,0.5", "--samples", "2"],
            "analyze": ["--samples", "2"], "gate": ["--samples", "2", "--min-accuracy", "0.1", "--out-dir",
                                                    str(tmp_path / "g")],
            "export-twin": ["--calibrate-on", str(data), "-o", str(tmp_path / "t.onnx")]}[command]
    data_args = [] if command == "export-twin" else ["--data", str(data)]
    r = CliRunner().invoke(app, [command, str(model), *data_args, *args, "--json"])
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)  # nothing else on stdout


def test_gate_writes_every_report_appends_the_summary_and_gates_the_lower_bound(tmp_path):
    model, data = teacher_files(tmp_path)
    summary = tmp_path / "summary.md"
    ok = run(app, ["gate", str(model), "--data", str(data), "--sigma", "0.2", "--samples", "10", "--min-accuracy",
                   "0.5", "--out-dir", str(tmp_path / "ok")], env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert ok.exit_code == 0, ok.output
    assert "gate: PASS (total_ci_low of accuracy" in ok.output
    report = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert report["verdict"] == "pass" and report["checks"][0]["name"].startswith("total_ci_low")
    assert ET.parse(tmp_path / "ok" / "junit.xml").getroot().get("failures") == "0"
    assert "ftcompile validation: **PASS**" in summary.read_text()
    bad = run(app, ["gate", str(model), "--data", str(data), "--sigma", "1.2", "--samples", "10", "--min-accuracy",
                    "0.99", "--out-dir", str(tmp_path / "bad")], env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert bad.exit_code == 1 and "gate: FAIL" in bad.output
    assert ET.parse(tmp_path / "bad" / "junit.xml").getroot().get("failures") == "1"
    assert summary.read_text().count("ftcompile validation") == 2
    missing = run(app, ["gate", str(tmp_path / "nope.onnx"), "--data", str(data), "--min-accuracy", "0.5",
                        "--out-dir", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "no such model file" in missing.output
    nobar = run(app, ["gate", str(model), "--data", str(data)])
    assert nobar.exit_code == 2  # a gate needs its bar


def test_sweep_prints_where_each_model_crosses_half_its_clean_metric(tmp_path):
    model, data = teacher_files(tmp_path)
    r = run(app, ["sweep", str(model), "--data", str(data), "--sigmas", "0:2:0.5", "--samples", "4", "--json"])
    payload = json.loads(r.stdout)
    curve = payload["curves"]["model"]
    want = half_loss_crossing([p["x"] for p in curve], [p["mean"] for p in curve], curve[0]["mean"])
    assert payload["crossing"]["model"] == pytest.approx(want)
    text = run(app, ["sweep", str(model), "--data", str(data), "--sigmas", "0:2:0.5", "--samples", "4"]).output
    assert "model: half its clean accuracy at lognormal sigma" in text


@pytest.mark.parametrize("xs,means,clean,want", [
    ([0, 0.2, 0.4], [0.9, 0.6, 0.3], 0.9, 0.3),
    ([0, 0.2, 0.4], [0.9, 0.8, 0.7], 0.9, None),   # never half
    ([0.5, 1.0], [0.4, 0.2], 0.9, 0.5),            # already below at the first point
    ([0, 1], [1.0, 0.0], 1.0, 0.5),
])
def test_half_loss_crossing(xs, means, clean, want):
    got = half_loss_crossing(xs, means, clean)
    assert got == (None if want is None else pytest.approx(want))


def test_the_crossing_of_a_time_axis_is_log_interpolated():
    assert half_loss_crossing([10, 1000], [0.8, 0.2], 1.0, log=True) == pytest.approx(100)
