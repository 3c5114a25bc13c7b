"""Executors: local and process pools run the same trials; failures are retried once, then recorded."""
import os
from pathlib import Path

import torch

from ftcompile.search.controller import Controller
from ftcompile.search.executor import LocalExecutor, ProcessExecutor, TrialTask
from ftcompile.search.harden import HardenConfig, run_trials
from ftcompile.search.journal import Journal
from ftcompile.search.objective import Score


class Quadratic:
    """A cheap picklable objective peaked at rates 0.3; trial ``crash`` kills its worker, ``fail`` raises."""

    def __init__(self, crash: int = -1, fail: int = -1, marker: str = ""):
        self.crash, self.fail, self.marker = crash, fail, marker

    def __call__(self, task: TrialTask) -> Score:
        if task.trial == self.crash and not (self.marker and Path(self.marker).exists()):
            if self.marker:  # die only on the first attempt: the retry succeeds
                Path(self.marker).touch()
            os._exit(9)
        if task.trial == self.fail:
            raise ValueError("diverged")
        value = 1.0 - sum((r - 0.3) ** 2 for r in task.rates)
        return Score(value, 0.01, (value,))


def _search(executor, tmp_path, trials=8, dim=2):
    cfg = HardenConfig(trials=trials)
    journal = Journal(tmp_path / "j.jsonl", {"k": 1}, resume=False)
    controller = Controller(dim, max_rate=0.8, seed=0, trials=trials)
    try:
        run_trials(controller, executor, journal, cfg, dim)
    finally:
        executor.close()
    return journal


def test_process_pool_gives_the_local_scores_and_records_every_trial(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    local = _search(LocalExecutor(Quadratic()), tmp_path / "a", trials=6)
    pooled = _search(ProcessExecutor(Quadratic(), 2), tmp_path / "b", trials=6)
    assert sorted(t.trial for t in pooled.trials) == list(range(6))
    # the Sobol design (n_init = 5 trials) does not depend on timing: same rates and scores in any order
    by_trial = {t.trial: t for t in local.trials}
    for t in (t for t in pooled.trials if t.trial < 5):
        assert t.rates == by_trial[t.trial].rates and t.objective == by_trial[t.trial].objective


def test_a_dead_worker_is_retried_then_the_search_goes_on(tmp_path):
    marker = tmp_path / "died-once"
    journal = _search(ProcessExecutor(Quadratic(crash=2, marker=str(marker)), 2), tmp_path, trials=5)
    assert marker.exists() and all(t.status == "ok" for t in journal.trials)
    assert sorted(t.trial for t in journal.trials) == list(range(5))


def test_a_trial_that_always_fails_is_recorded_failed_and_skipped_by_the_gp(tmp_path):
    journal = _search(LocalExecutor(Quadratic(fail=1)), tmp_path, trials=9)
    failed = [t for t in journal.trials if t.status == "failed"]
    assert [t.trial for t in failed] == [1] and "diverged" in failed[0].error
    assert len(journal.trials) == 9  # BO went on past n_init with the failure left out
    resumed = Journal(tmp_path / "j.jsonl", {"k": 1}, resume=True)
    assert [t.status for t in resumed.trials] == [t.status for t in journal.trials]


def test_pending_points_steer_a_batch_away_from_running_trials():
    c = Controller(2, max_rate=0.8, seed=0, n_init=5)
    X = torch.rand(8, 2, dtype=torch.double) * 0.8
    Y = 1 - ((X - 0.3) ** 2).sum(-1)
    batch = c.propose(X, Y, q=2)
    assert batch.shape == (2, 2) and (batch >= 0).all() and (batch <= 0.8).all()
    assert torch.cdist(batch[:1], batch[1:]).item() > 1e-3  # q points are distinct
    alone = c.propose(X, Y, q=1)
    steered = c.propose(X, Y, q=1, pending=alone)
    assert torch.cdist(alone, steered).item() > 1e-3
