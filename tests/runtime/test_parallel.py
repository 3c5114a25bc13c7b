"""Sharded validation (processes, Ray) equals the one-process run; Ray trials behave like local ones."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ftcompile
from ftcompile.errors import ConfigError
from ftcompile.runtime.parallel import shards
from tests.helpers import teacher_files


@given(samples=st.integers(1, 500), pieces=st.integers(1, 64))
def test_shards_cover_every_sample_once_in_order(samples, pieces):
    ranges = shards(samples, pieces)
    flat = [i for a, n in ranges for i in range(a, a + n)]
    assert flat == list(range(samples)) and len(ranges) <= pieces


def test_process_shards_equal_the_single_process_values(tmp_path):
    model, data = teacher_files(tmp_path)
    one = ftcompile.validate(model, data, sigma=0.8, samples=12, seed=3)
    seen = []
    two = ftcompile.validate(model, data, sigma=0.8, samples=12, seed=3, workers=2, executor="process",
                             on_sample=lambda k, v: seen.append(k))
    assert two.values == one.values and two.stats == one.stats and sorted(seen) == list(range(12))
    with pytest.raises(ConfigError, match="--executor"):
        ftcompile.validate(model, data, workers=2, executor="dask")
    with pytest.raises(ConfigError, match="--workers"):
        ftcompile.validate(model, data, workers=0)


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ftcompile[ray]'); CI installs it")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


def test_ray_shards_equal_the_single_process_values(ray, tmp_path):
    model, data = teacher_files(tmp_path)
    one = ftcompile.validate(model, data, sigma=0.8, samples=10, seed=1)
    on_ray = ftcompile.validate(model, data, sigma=0.8, samples=10, seed=1, workers=2, executor="ray")
    assert on_ray.values == one.values


def test_ray_trials_match_local_and_a_dead_worker_is_retried(ray, tmp_path):
    from ftcompile.search.executor import LocalExecutor, RayExecutor
    from tests.search.test_executor import Quadratic, _search

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    local = _search(LocalExecutor(Quadratic()), tmp_path / "a", trials=6)
    remote = _search(RayExecutor(Quadratic(), 2), tmp_path / "b", trials=6)
    assert sorted(t.trial for t in remote.trials) == list(range(6))
    design = sorted((t for t in remote.trials if t.origin == "design"), key=lambda t: t.trial)
    from ftcompile.search.controller import Controller

    sobol = [list(map(float, row)) for row in Controller(2, max_rate=0.8, seed=0, trials=6)._design(0, 6)]
    assert [t.rates for t in design] == sobol[:len(design)]  # the design does not depend on timing
    scores = {tuple(t.rates): t.objective for t in local.trials}
    assert all(scores.get(tuple(t.rates), t.objective) == t.objective for t in remote.trials)
    marker = tmp_path / "died-once"
    crashed = _search(RayExecutor(Quadratic(crash=2, marker=str(marker)), 2), tmp_path / "c", trials=4)
    assert marker.exists() and all(t.status == "ok" for t in crashed.trials) and len(crashed.trials) == 4


def test_cli_harden_and_validate_on_ray(ray, tmp_path):
    import json

    from typer.testing import CliRunner

    from ftcompile.cli import app

    model, data = teacher_files(tmp_path, n=300)
    d = np.load(data)
    np.savez(tmp_path / "train.npz", x=d["x"][:200], y=d["y"][:200])
    np.savez(tmp_path / "val.npz", x=d["x"][200:], y=d["y"][200:])
    r = CliRunner().invoke(app, ["harden", str(model), "--train", str(tmp_path / "train.npz"), "--val",
                                 str(tmp_path / "val.npz"), "--method", "bayesft", "--trials", "3", "--epochs", "1",
                                 "--final-epochs", "1", "--samples", "3", "--validate-samples", "4", "--no-plot",
                                 "--workers", "2", "--executor", "ray", "--out", str(tmp_path / "h.onnx"), "--json"])
    assert r.exit_code == 0, r.output
    assert sorted(t["trial"] for t in json.loads(r.stdout)["trials"]) == [0, 1, 2]
    v = CliRunner().invoke(app, ["validate", str(tmp_path / "h.onnx"), "--data", str(tmp_path / "val.npz"),
                                 "--samples", "6", "--workers", "2", "--executor", "ray", "--json"])
    local = ftcompile.validate(tmp_path / "h.onnx", tmp_path / "val.npz", samples=6)
    assert v.exit_code == 0 and json.loads(v.stdout)["values"] == local.values
