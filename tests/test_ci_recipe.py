"""The CI recipes: the composite action's gate step run as GitHub would run it (on a passing, a failing and a
broken input), and the GitHub and GitLab templates."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import numpy_helper

from tests.helpers import teacher_files

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def run_gate_step(tmp_path, **inputs):
    """The action's gate step: its env with ``${{ inputs.X }}`` filled from ``inputs`` (and the action's defaults),
    its script run by bash, GITHUB_OUTPUT and GITHUB_STEP_SUMMARY as files."""
    step = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "gate")
    values = {k: str(v.get("default", "")) for k, v in ACTION["inputs"].items()}
    values.update({k.replace("_", "-"): str(v) for k, v in inputs.items()})
    env = {k: re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], v)
           for k, v in step["env"].items()}
    output, summary = tmp_path / "github_output", tmp_path / "summary.md"
    output.write_text(""), summary.write_text("")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # where pip put the ftcompile command
    r = subprocess.run(["bash", "-c", step["run"]], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, **env, "PATH": path, "GITHUB_OUTPUT": str(output),
                            "GITHUB_STEP_SUMMARY": str(summary)})
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return r, outputs, summary.read_text()


def test_the_action_passes_fails_and_errors_with_distinct_codes(tmp_path):
    model, data = teacher_files(tmp_path)
    broken = onnx.load(model)  # same graph, scrambled weights: near-chance accuracy
    rng = np.random.default_rng(5)
    for init in broken.graph.initializer:
        w = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(rng.permutation(w.reshape(-1)).reshape(w.shape), init.name))
    onnx.save(broken, tmp_path / "scrambled.onnx")
    common = dict(data=data, drift="lognormal:0.1", samples=10, min_accuracy=0.8)
    ok, out, summary = run_gate_step(tmp_path, model=model, out_dir="ok", **common)
    assert ok.returncode == 0 and out == {"verdict": "pass", "report": "ok/report.json"}, ok.stderr
    assert "gate: PASS (total_ci_low" in ok.stdout and "**PASS**" in summary
    bad, out, summary = run_gate_step(tmp_path, model=tmp_path / "scrambled.onnx", out_dir="bad", **common)
    assert bad.returncode == 1 and out["verdict"] == "fail" and "**FAIL**" in summary
    for folder, verdict in (("ok", "pass"), ("bad", "fail")):  # reports exist on both outcomes
        assert json.loads((tmp_path / folder / "report.json").read_text())["verdict"] == verdict
        assert "failures=" in (tmp_path / folder / "junit.xml").read_text()
    missing, out, _ = run_gate_step(tmp_path, model=tmp_path / "nope.onnx", out_dir="m", **common)
    assert missing.returncode == 2 and out["verdict"] == "error" and "nope.onnx" in missing.stderr
    extra, out, _ = run_gate_step(tmp_path, model=model, out_dir="x", extra_args="--stat mean --seed 3", **common)
    assert extra.returncode == 0 and json.loads((tmp_path / "x" / "report.json").read_text())["seed"] == 3


def test_the_action_installs_the_runtime_only_and_keeps_the_reports():
    steps = ACTION["runs"]["steps"]
    install = next(s for s in steps if "Install" in s.get("name", ""))
    assert "torch" not in install["run"] and "ACTION_PATH" in install["run"]
    keep = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert keep["if"] == "always()" and ACTION["runs"]["using"] == "composite"
    assert set(ACTION["outputs"]) == {"verdict", "report"}


def test_the_workflow_and_gitlab_templates_run_the_gate():
    flow = yaml.safe_load((ROOT / "examples" / "ci" / "github-workflow.yml").read_text())
    steps = flow["jobs"]["drift-gate"]["steps"]
    uses = next(s for s in steps if s.get("uses", "").startswith("ftcompile/ftcompile@"))
    assert set(uses["with"]) <= set(ACTION["inputs"]) and {"model", "data", "min-accuracy"} <= set(uses["with"])
    lab = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-ci.yml").read_text())["drift-gate"]
    script = " ".join(lab["script"])
    assert "pip install --quiet ftcompile" in script and "ftcompile gate" in script and "torch" not in script
    assert lab["artifacts"]["when"] == "always" and lab["artifacts"]["reports"]["junit"] == "drift-report/junit.xml"
