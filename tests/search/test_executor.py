"""Executors: local and process pools run the same trials; failures are retried once, then recorded."""
import os
from pathlib import Path

import torch

from ftcompile.search.controller import Controller, initial_design_size
from ftcompile.search.executor import LocalExecutor, ProcessExecutor, TrialTask
from ftcompile.search.harden import HardenConfig, rate_stage, run_trials
from ftcompile.search.journal import Journal
from ftcompile.search.objective import Score
from ftcompile.search.space import rate_space


class Quadratic:
    """A cheap picklable objective peaked at rates 0.3; trial ``crash`` kills its worker, ``fail`` raises."""

    def __init__(self, crash: int = -1, fail: int = -1, marker: str = "", fail_above: float = 2.0):
        self.crash, self.fail, self.marker, self.fail_above = crash, fail, marker, fail_above

    def __call__(self, task: TrialTask) -> Score:
        if task.trial == self.crash and not (self.marker and Path(self.marker).exists()):
            if self.marker:  # die only on the first attempt: the retry succeeds
                Path(self.marker).touch()
            os._exit(9)
        if task.trial == self.fail or task.rates[0] > self.fail_above:
            raise ValueError("diverged")
        value = 1.0 - sum((r - 0.3) ** 2 for r in task.rates)
        return Score(value, 0.01, (value,))


def _search(executor, tmp_path, trials=8, dim=2, search="bo"):
    cfg = HardenConfig(trials=trials)
    journal = Journal(tmp_path / "j.jsonl", {"k": 1}, resume=False)
    controller = Controller(dim, max_rate=0.8, seed=0, trials=trials, search=search)
    try:
        run_trials(controller, executor, journal, cfg, rate_stage(rate_space("per-layer", [8] * dim), None))
    finally:
        executor.close()
    return journal


def test_process_pool_gives_the_local_scores_and_records_every_trial(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    local = _search(LocalExecutor(Quadratic()), tmp_path / "a", trials=6)
    pooled = _search(ProcessExecutor(Quadratic(), 2), tmp_path / "b", trials=6)
    assert sorted(t.trial for t in pooled.trials) == list(range(6))
    # design points come from one Sobol sequence whatever the timing, and score the same in any process
    assert [t.origin for t in local.trials] == ["design"] * 2 + ["bo"] * 4
    sobol = [list(map(float, row)) for row in Controller(2, max_rate=0.8, seed=0, trials=6)._design(0, 6)]
    design = sorted((t for t in pooled.trials if t.origin == "design"), key=lambda t: t.trial)
    assert [t.rates for t in design] == sobol[:len(design)] and len(design) >= 2
    scores = {tuple(t.rates): t.objective for t in local.trials}
    assert all(scores.get(tuple(t.rates), t.objective) == t.objective for t in pooled.trials)


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
    batch = c.propose(X, Y, q=2).points
    assert batch.shape == (2, 2) and (batch >= 0).all() and (batch <= 0.8).all()
    assert torch.cdist(batch[:1], batch[1:]).item() > 1e-3  # q points are distinct
    alone = c.propose(X, Y, q=1).points
    steered = c.propose(X, Y, q=1, pending=alone).points
    assert torch.cdist(alone, steered).item() > 1e-3


def test_the_design_is_a_small_share_of_the_budget():
    assert initial_design_size(19, 20) == 5 and initial_design_size(4, 20) == 5  # BO proposes 15 of 20
    assert initial_design_size(1, 20) == 3 and initial_design_size(20, 6) == 2 and initial_design_size(60, 100) == 25


def test_a_failure_that_depends_on_the_rates_is_never_proposed_again(tmp_path):
    """Trials with a first rate above 0.5 diverge: each is retried once, then journaled failed; no point comes
    back, the design moves on, and the GP (which sees failures as the worst score) keeps proposing."""
    journal = _search(LocalExecutor(Quadratic(fail_above=0.5)), tmp_path, trials=14, dim=2)
    points = [tuple(t.rates) for t in journal.trials]
    failed = [t for t in journal.trials if t.status == "failed"]
    assert failed and len(journal.trials) == 14
    assert len(set(points)) == len(points)  # not one point proposed twice
    assert all(t.origin == "retry" and t.rates[0] > 0.5 for t in failed)
    assert all(t.rates[0] <= 0.5 for t in journal.trials if t.status == "ok")
    bo = [t for t in journal.trials if t.trial >= 4]  # past the design and its first failures
    assert sum(t.rates[0] > 0.5 for t in bo) <= len(bo) // 3  # the GP learned the region is bad


def test_random_search_says_so():
    journal_origins = {Controller(3, search=s, trials=8).propose(torch.empty(0, 3), torch.empty(0)).origin
                       for s in ("random", "grid")}
    assert journal_origins == {"random", "grid"}
