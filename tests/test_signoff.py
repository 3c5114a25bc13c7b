"""A sign-off you can trust: the verdict reads data no choice saw, every report names its data, and a sign-off
on the choosing data, or on a copy of it, is refused or labelled."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.data import Dataset, as_dataset, hold_out
from ftcompile.errors import ConfigError, DataError
from ftcompile.export import get_metadata
from ftcompile.fileio import sha256_file
from ftcompile.search.harden import HardenConfig
from ftcompile.signoff import assign_roles
from tests.helpers import teacher_files

FAST = dict(method="noise-injection", sigma=0.5, train_sigma=0.5, final_epochs=1, samples=2, blend="off")


def _files(tmp_path, n=400):
    model, data = teacher_files(tmp_path, n=n)
    d = np.load(data)
    paths = {}
    for name, sl in (("train", slice(0, 200)), ("val", slice(200, 300)), ("test", slice(300, 400))):
        paths[name] = tmp_path / f"{name}.npz"
        np.savez(paths[name], x=d["x"][sl], y=d["y"][sl])
    return model, paths


def test_hold_out_depends_on_each_example_not_on_the_order():
    x = np.random.default_rng(0).standard_normal((500, 4)).astype(np.float32)
    data = Dataset({"x": x}, np.arange(500), "v.npz", sha256="f" * 64)
    kept, held = hold_out(data, 0.3)
    assert len(kept) + len(held) == 500 and 100 < len(held) < 200  # about 0.3 of them
    order = np.random.default_rng(1).permutation(500)
    _, held2 = hold_out(Dataset({"x": x[order]}, order, "v.npz"), 0.3)
    assert sorted(held.labels.tolist()) == sorted(held2.labels.tolist())  # the same examples, shuffled or not
    assert set(held.labels.tolist()).isdisjoint(kept.labels.tolist())
    assert held.record("signoff").sha256 == "f" * 64 and "held-out 0.3" in held.record("signoff").subset
    with pytest.raises(DataError, match="leaves none"):
        hold_out(Dataset({"x": x[:2]}, np.arange(2), "tiny.npz"), 0.001)


def test_roles_refuse_a_copy_of_the_choosing_data_and_count_duplicates(tmp_path):
    model, p = _files(tmp_path)
    spec = [ftcompile.data.InputSpec("x", ("N", 16), np.dtype(np.float32))]
    bind = lambda path: as_dataset(path, spec)  # noqa: E731
    copy = tmp_path / "copy.npz"
    copy.write_bytes(p["val"].read_bytes())
    with pytest.raises(ConfigError, match="is the same data as the validation data"):
        assign_roles(bind(p["train"]), bind(p["val"]), bind(copy), 0.3)
    with pytest.raises(ConfigError, match="is the same data as the training data"):
        assign_roles(bind(p["train"]), bind(p["val"]), bind(p["train"]), 0.3)
    # a test file that repeats a tenth of the training examples: recorded and warned
    t, tr = np.load(p["test"]), np.load(p["train"])
    np.savez(tmp_path / "leaky.npz", x=np.concatenate([t["x"][:90], tr["x"][:10]]),
             y=np.concatenate([t["y"][:90], tr["y"][:10]]))
    roles = assign_roles(bind(p["train"]), bind(p["val"]), bind(tmp_path / "leaky.npz"), 0.3)
    assert roles.overlap == pytest.approx(0.10) and "10.0% of the sign-off examples" in roles.warnings[0]
    clean = assign_roles(bind(p["train"]), bind(p["val"]), bind(p["test"]), 0.3)
    assert clean.overlap == 0 and not clean.warnings and clean.kind == "test" and len(clean.val) == 100


def test_without_test_data_harden_signs_off_on_a_held_out_share_no_choice_saw(tmp_path, monkeypatch):
    model, p = _files(tmp_path)
    import ftcompile.search.harden as harden_module

    seen = []
    real = harden_module.DriftObjective

    def spy(module, x, y, **kw):
        seen.append(len(x))
        return real(module, x, y, **kw)

    monkeypatch.setattr(harden_module, "DriftObjective", spy)
    r = ftcompile.harden(model, p["train"], p["val"], out=tmp_path / "h.onnx", validate_samples=2, plot=False,
                         config=HardenConfig(**FAST))
    held = r.after.examples
    assert r.signoff_kind == "holdout" and 15 < held < 45 and seen == [100 - held]  # the choices saw the rest
    assert r.before.examples == held and "held out by example hash before any choice" in r.signoff_statement
    assert r.data["signoff"]["examples"] == held and r.data["val"]["examples"] == 100 - held
    assert r.data["val"]["sha256"] == r.data["signoff"]["sha256"] == sha256_file(p["val"])
    assert r.data["train"]["sha256"] == sha256_file(p["train"]) and r.data["train"]["examples"] == 200
    meta = get_metadata(onnx.load(tmp_path / "h.onnx"))
    assert meta["data"] == r.data and meta["signoff_kind"] == "holdout"
    report = json.loads((tmp_path / "h.report.json").read_text())
    assert report["data"] == r.data and report["after"]["data"]["role"] == "signoff"
    assert "held out by example hash" in (tmp_path / "h.report.md").read_text()


def test_validation_numbers_are_labelled_and_cannot_be_gated(tmp_path):
    model, p = _files(tmp_path)
    r = ftcompile.harden(model, p["train"], p["val"], out=tmp_path / "v.onnx", validate_samples=2, plot=False,
                         config=HardenConfig(**FAST, holdout=0))
    assert r.signoff_kind == "validation" and r.verdict == "measured" and r.after.examples == 100
    assert "validation numbers, optimistic, not a sign-off" in r.signoff_statement
    assert "not a sign-off" in (tmp_path / "v.report.md").read_text()
    with pytest.raises(ConfigError, match="a gate .* needs data no choice saw"):
        ftcompile.harden(model, p["train"], p["val"], out=tmp_path / "g.onnx", gate=ftcompile.Gate(min_accuracy=0.5),
                         config=HardenConfig(**FAST, holdout=0))
    assert not (tmp_path / "g.onnx").exists()
    args = ["harden", str(model), "--train", str(p["train"]), "--val", str(p["val"]), "--no-plot",
            "--final-epochs", "1", "--samples", "2", "--validate-samples", "2", "--out", str(tmp_path / "c.onnx")]
    bad = CliRunner().invoke(app, args + ["--holdout", "0", "--min-accuracy", "0.5"])
    assert bad.exit_code == 2 and "needs data no choice saw" in bad.output
    same = CliRunner().invoke(app, args + ["--test", str(p["val"])])
    assert same.exit_code == 2 and "is the same data as the validation data" in same.output
    ok = CliRunner().invoke(app, args + ["--test", str(p["test"]), "--min-accuracy", "0.1"])
    assert ok.exit_code == 0 and "Signed off on" in ok.output and "100 held-out examples" in ok.output, ok.output
    with pytest.raises(ConfigError, match="--holdout must be in"):
        HardenConfig(holdout=1.0)


def test_validate_reports_name_their_data(tmp_path):
    model, p = _files(tmp_path)
    paths = {k: tmp_path / f"r.{k}" for k in ("json", "md", "xml")}
    r = CliRunner().invoke(app, ["validate", str(model), "--data", str(p["test"]), "--samples", "3",
                                 "--min-accuracy", "0.1", "--report", str(paths["json"]), "--markdown",
                                 str(paths["md"]), "--junit", str(paths["xml"])])
    assert r.exit_code == 0, r.output
    digest = sha256_file(p["test"])
    got = json.loads(paths["json"].read_text())["data"]
    assert got == {"role": "data", "source": str(p["test"]), "sha256": digest, "examples": 100, "subset": ""}
    assert digest[:12] in paths["md"].read_text() and "100 examples" in paths["md"].read_text()
    props = {e.get("name"): e.get("value") for e in ET.parse(paths["xml"]).getroot().iter("property")}
    assert props["data_sha256"] == digest and props["data_examples"] == "100" and props["targets"] == "params"
    mem = ftcompile.validate(model, (np.load(p["test"])["x"], np.load(p["test"])["y"]), samples=2)
    assert mem.data["source"] == "<arrays>" and len(mem.data["sha256"]) == 64  # arrays hashed, no file


def test_a_device_drift_leaves_biases_and_norms_digital_by_default(tmp_path):
    model, p = _files(tmp_path)
    pcm = ftcompile.validate(model, p["test"], drift="pcm:1d", samples=2)
    assert pcm.targets == "crossbar" and pcm.drifted == ["fc0.weight", "fc1.weight"]
    both = ftcompile.validate(model, p["test"], drift="pcm:1d", samples=2, targets="params")
    assert both.targets == "params" and len(both.drifted) == 4
    assert ftcompile.validate(model, p["test"], samples=2).targets == "params"  # the paper's drift: every parameter
    assert HardenConfig(drift="pcm:1d").targets == "crossbar" and HardenConfig(sigma=0.3).targets == "params"
    assert "targets `crossbar`: layer weights; biases and normalization digital" in \
        ftcompile.runtime.report.to_markdown(pcm)
    with pytest.raises(ConfigError, match="--targets 'weights' is unknown"):
        ftcompile.validate(model, p["test"], samples=2, targets="weights")


@pytest.mark.parametrize("command", ["validate", "analyze"])
def test_sigma_beside_drift_is_refused_everywhere(tmp_path, command):
    model, p = _files(tmp_path)
    r = CliRunner().invoke(app, [command, str(model), "--data", str(p["test"]), "--drift", "gaussian:0.1",
                                 "--sigma", "0.3", "--samples", "2"])
    assert r.exit_code == 2 and "both give the drift; give it once" in r.output, r.output
    with pytest.raises(ConfigError, match="both give the drift"):
        getattr(ftcompile, command)(model, p["test"], drift="gaussian:0.1", sigma=0.3, samples=2)
    # sweep's --sigmas set the drift's own sigma term: that is no second drift
    ok = CliRunner().invoke(app, ["sweep", str(model), "--data", str(p["test"]), "--drift", "gaussian:0.1",
                                  "--sigmas", "0,0.3", "--samples", "2"])
    assert ok.exit_code == 0, ok.output
