"""The guides' examples run as written: every ```python block of docs/python-api.md, in order, in an empty folder
(the first block writes the toy model and data the others read), then those of docs/validation.md there; and the
report fields docs/validation.md lists are the fields the reports have."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

DOCS = Path(__file__).resolve().parents[1] / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: str) -> list[str]:
    return FENCE.findall((DOCS / page).read_text())


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The folder the python-api examples ran in (each block in a fresh namespace, one after the other)."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("python-api")
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for i, code in enumerate(python_blocks("python-api.md")):
            try:
                exec(compile(code, f"docs/python-api.md block {i}", "exec"), {"__name__": f"docs_block_{i}"})
            except Exception as exc:  # name the block, not only the line inside it
                raise AssertionError(f"docs/python-api.md block {i} failed: {type(exc).__name__}: {exc}\n{code}")
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        if name == "mydata":  # the factory the page writes: not importable from another folder
            del sys.modules[name]
    return folder


def test_every_python_api_example_runs(ran):
    assert len(python_blocks("python-api.md")) >= 12
    for written in ("model.onnx", "report.json", "junit.xml", "hardened.onnx", "hardened.report.json", "twin.onnx"):
        assert (ran / written).is_file(), written


def test_the_validation_guide_python_runs(ran, monkeypatch):
    monkeypatch.chdir(ran)  # it reads the hardened model the python-api page wrote
    for i, code in enumerate(python_blocks("validation.md")):
        exec(compile(code, f"docs/validation.md block {i}", "exec"), {"__name__": f"docs_validation_{i}"})


def schema_fields(page: str, schema: str) -> set[str]:
    """The first-column `names` of the table between <!-- fields: SCHEMA --> and <!-- /fields -->."""
    text = (DOCS / page).read_text()
    section = text.split(f"<!-- fields: {schema} -->")[1].split("<!-- /fields -->")[0]
    return {m for line in section.splitlines() if line.startswith("| `")
            for m in re.findall(r"`([a-z_0-9]+)`", line.split("|")[1])}


def test_the_validation_guide_lists_every_report_field(ran):
    from ftcompile.cli import app

    run = CliRunner()
    report = json.loads((ran / "report.json").read_text())
    assert schema_fields("validation.md", report["schema"]) == set(report)
    harden = json.loads((ran / "hardened.report.json").read_text())
    assert schema_fields("validation.md", harden["schema"]) == set(harden)
    r = run.invoke(app, ["sweep", str(ran / "model.onnx"), "--data", str(ran / "test.npz"), "--sigmas", "0,0.5",
                         "--samples", "2", "--json"])
    sweep = json.loads(r.stdout)
    assert schema_fields("validation.md", sweep["schema"]) == set(sweep)
    assert schema_fields("validation.md", "sweep point") == set(sweep["curves"]["model"][0])
    r = run.invoke(app, ["analyze", str(ran / "model.onnx"), "--data", str(ran / "test.npz"), "--samples", "2",
                         "--json"])
    analysis = json.loads(r.stdout)
    assert schema_fields("validation.md", analysis["schema"]) == set(analysis)
    assert schema_fields("validation.md", "analysis layer") == set(analysis["layers"][0])
