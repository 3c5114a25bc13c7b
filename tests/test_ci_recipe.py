"""The CI recipe: the shell gate's exit codes and reports on a passing, a failing and a broken input."""
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import numpy_helper

from tests.helpers import teacher_files

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ci" / "drift-gate.sh"


def gate(*args, cwd):
    env = {**os.environ, "FTCOMPILE": f"{shlex.quote(sys.executable)} -m ftcompile.cli", "SAMPLES": "10",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run(["sh", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)


def test_shell_gate_passes_fails_and_errors_with_distinct_codes(tmp_path):
    model, data = teacher_files(tmp_path)
    broken = onnx.load(model)  # same graph, scrambled weights: near-chance accuracy
    rng = np.random.default_rng(5)
    for init in broken.graph.initializer:
        w = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(rng.permutation(w.reshape(-1)).reshape(w.shape), init.name))
    onnx.save(broken, tmp_path / "scrambled.onnx")

    ok = gate(model, data, 0.1, 0.9, tmp_path / "ok", cwd=tmp_path)
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stderr
    bad = gate(tmp_path / "scrambled.onnx", data, 0.1, 0.9, tmp_path / "bad", cwd=tmp_path)
    assert bad.returncode == 1 and "FAIL" in bad.stdout, bad.stderr
    for out, verdict in (("ok", "pass"), ("bad", "fail")):  # reports exist on both outcomes
        assert json.loads((tmp_path / out / "report.json").read_text())["verdict"] == verdict
        assert "failures=" in (tmp_path / out / "junit.xml").read_text()
        assert verdict.upper() in (tmp_path / out / "report.md").read_text()
    missing = gate(tmp_path / "nope.onnx", data, cwd=tmp_path)
    assert missing.returncode == 2 and "ERROR" in missing.stdout and "nope.onnx" in missing.stderr
    usage = gate(model, cwd=tmp_path)
    assert usage.returncode == 2 and "usage" in usage.stderr


def test_github_workflow_runs_the_gate_and_publishes_the_reports():
    flow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text())
    steps = flow["jobs"]["drift-gate"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "pip install ftcompile" in runs and "torch" not in runs
    assert "examples/ci/drift-gate.sh" in runs and "GITHUB_STEP_SUMMARY" in runs
    assert all(s.get("if") == "always()" for s in steps if "summary" in s.get("name", "").lower())
