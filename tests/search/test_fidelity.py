"""Multi-fidelity trials of the recipe search (search/fidelity.py, --low-fidelity): the cost of a trial, the
controller's design and proposals with a fidelity column, its posterior at full fidelity, the nested trial data,
the budget in full trials' cost, the journal and resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ftcompile
from ftcompile.errors import ConfigError
from ftcompile.search.controller import Controller
from ftcompile.search.fidelity import TARGET, Fidelity, cost_model, fixed_share
from ftcompile.search.harden import HardenConfig
from ftcompile.search.journal import RECIPE

D = torch.double


def test_a_trial_costs_its_scoring_plus_its_share_of_the_training():
    assert fixed_share(epochs=3, train_examples=1000, samples=20, val_examples=450) == pytest.approx(0.5)
    f = Fidelity(0.25, fixed=0.5)
    assert f.levels == (0.25, TARGET) and f.cost(TARGET) == pytest.approx(1.0) and f.cost(0.25) == pytest.approx(0.625)
    # BoTorch's cost model is the same affine cost, read on the fidelity column
    X = torch.tensor([[[0.3, 0.25]], [[0.7, 1.0]]], dtype=D)
    costs = cost_model(f, column=1).cost_model(X).flatten().tolist()
    assert costs == pytest.approx([f.cost(0.25), f.cost(1.0)])
    for low, fixed in ((0.0, 0.0), (1.0, 0.0), (0.5, 1.0)):
        with pytest.raises(ValueError):
            Fidelity(low, fixed)


def test_the_anchor_runs_at_full_fidelity_and_the_design_at_both_in_turn():
    c = Controller(2, max_rate=1.0, seed=3, trials=8, anchors=((0.3, 0.7),), fidelity=Fidelity(0.2))
    plain = Controller(2, max_rate=1.0, seed=3, trials=8, anchors=((0.3, 0.7),))
    empty = torch.empty(0, 3, dtype=D), torch.empty(0, dtype=D)
    q = c.n_init + 2  # past the design: its sequence goes on for the points a GP does not yet propose
    rows = c.propose(*empty, q=q).points
    assert rows[:, 2].tolist() == [1.0] + [0.2, 1.0] * ((q - 1) // 2)
    assert rows[:, :2].tolist() == plain.propose(torch.empty(0, 2, dtype=D), empty[1], q=q).points.tolist()
    with pytest.raises(ValueError, match="search='bo'"):
        Controller(2, search="random", fidelity=Fidelity(0.2))


def _two_fidelities(n_low: int = 12, n_full: int = 4, low: float = 0.25):
    """A 1-D objective whose low-fidelity trials score ``0.2 x (1 - fidelity)`` lower than full ones would."""
    x = torch.rand(n_low + n_full, 1, generator=torch.Generator().manual_seed(0), dtype=D)
    s = torch.tensor([low] * n_low + [1.0] * n_full, dtype=D)
    full = 0.8 - 0.3 * ((x[:, 0] - 0.6) ** 2)
    return torch.cat([x, s[:, None]], 1), full - 0.2 * (1 - s), full


def test_the_posterior_the_choice_reads_is_the_full_fidelity_one():
    X, y, full = _two_fidelities()
    c = Controller(1, max_rate=1.0, trials=8, fidelity=Fidelity(0.25))
    mean, std = c.posterior(X, y, torch.full((len(y),), 1e-5, dtype=D))
    low = slice(0, 12)
    # at the cheap trials' points it predicts what a full trial would score, not what the cheap one did
    assert mean[low] == pytest.approx(full[low].tolist(), abs=0.02)
    assert min(m - o for m, o in zip(mean[low], y[low].tolist())) > 0.1
    assert all(s >= 0 for s in std)


def test_after_the_design_each_proposal_is_a_point_at_one_of_the_two_fidelities():
    X, y, _ = _two_fidelities()
    c = Controller(1, max_rate=1.0, trials=8, fidelity=Fidelity(0.25, fixed=0.3))
    p = c.propose(X, y, q=2, Yvar=torch.full((len(y),), 1e-5, dtype=D), pending=X[:1])
    assert p.origin == "bo" and p.points.shape == (2, 2)
    assert set(p.points[:, 1].tolist()) <= {0.25, 1.0} and 0 <= float(p.points[:, 0].min()) <= 1


def test_the_proposals_fidelity_follows_its_cost():
    # the same trials; a low fidelity at a twentieth of a full trial's cost is worth its information, one that costs
    # nearly a full trial (scoring dominates) is not: the acquisition weighs information by the cost model
    X, y, _ = _two_fidelities(low=0.05)
    levels = []
    for fixed in (0.0, 0.99):
        c = Controller(1, max_rate=1.0, trials=8, fidelity=Fidelity(0.05, fixed=fixed))
        levels.append(float(c.propose(X, y, Yvar=torch.full((len(y),), 1e-4, dtype=D)).points[0, 1]))
    assert levels == [0.05, 1.0]


def test_harden_spends_full_trials_cost_on_cheaper_trials_journals_and_resumes(files, tmp_path):
    model, train, val = files
    cfg = HardenConfig(sigma=0.5, recipe="bo", trials=3, epochs=1, final_epochs=1, samples=3, low_fidelity=0.25)
    r = ftcompile.harden(model, train, val, out=tmp_path / "r.onnx", config=cfg, validate_samples=2, plot=False)
    recipe = [t for t in r.trials if t.stage == RECIPE]
    assert recipe[0].origin == "plain" and recipe[0].fidelity == 1.0
    assert {t.fidelity for t in recipe} <= {0.25, 1.0} and recipe[1].fidelity == 0.25  # the design: cheap, full
    # the budget: 3 full trials' cost, of which the scoring (samples x validation examples) is the fixed part
    n_val = 100 - round(100 * cfg.holdout)
    f = Fidelity(0.25, fixed_share(epochs=1, train_examples=200, samples=3, val_examples=n_val))
    spent = sum(f.cost(t.fidelity) for t in recipe)
    assert 3 - f.cost(0.25) < spent <= 3 + 1e-9 and len(recipe) > 3
    assert "on 25% of the trial data" in recipe[1].tried and "trial data" not in recipe[0].tried
    again = ftcompile.harden(model, train, val, out=tmp_path / "r.onnx", config=cfg, validate_samples=2, plot=False,
                             resume=True)
    assert [(t.seconds, t.fidelity) for t in again.trials] == [(t.seconds, t.fidelity) for t in r.trials]
    with pytest.raises(ConfigError, match="journal was written by a run with other settings"):
        ftcompile.harden(model, train, val, out=tmp_path / "r.onnx", plot=False, resume=True,
                         config=HardenConfig(sigma=0.5, recipe="bo", trials=3, epochs=1, final_epochs=1, samples=3,
                                             low_fidelity=0.5))


def test_the_low_fidelity_trials_see_the_first_part_of_the_full_trials_data(files, tmp_path, monkeypatch):
    import ftcompile.search.harden as harden_module

    seen = []
    fine_tune = harden_module.fine_tune

    def spy(module, x, y, train, device, **kwargs):
        seen.append(y.clone())
        return fine_tune(module, x, y, train, device, **kwargs)

    monkeypatch.setattr(harden_module, "fine_tune", spy)
    model, train, val = files
    cfg = HardenConfig(sigma=0.5, recipe="bo", trials=2, epochs=1, final_epochs=1, samples=2, low_fidelity=0.5,
                       trial_fraction=0.8, blend="off")
    r = ftcompile.harden(model, train, val, out=tmp_path / "r.onnx", config=cfg, validate_samples=2, plot=False)
    sizes = [len(y) for y in seen]
    fidelities = [t.fidelity for t in r.trials]
    assert sizes == [round(0.8 * 200 * f) for f in fidelities] + [200]  # the trials', then the final fit's
    full, low = seen[0], seen[fidelities.index(0.5)]
    runner_order = torch.randperm(200, generator=torch.Generator().manual_seed(cfg.seed))
    labels = torch.from_numpy(np.load(train)["y"])
    assert torch.equal(full, labels[runner_order[:160].sort().values])
    assert torch.equal(low, labels[runner_order[:80].sort().values])  # nested: the first half of the same order


def test_low_fidelity_is_refused_where_there_is_no_recipe_search():
    assert HardenConfig(recipe="bo", low_fidelity="0.25").low_fidelity == 0.25  # the API may pass it as text
    with pytest.raises(ConfigError, match="--low-fidelity must be in"):
        HardenConfig(recipe="bo", low_fidelity=1.0)
    with pytest.raises(ConfigError, match="--low-fidelity runs cheap trials of the recipe search"):
        HardenConfig(recipe="grid", low_fidelity=0.25)
    with pytest.raises(ConfigError, match="--low-fidelity runs cheap trials"):
        HardenConfig(recipe="bo", method="bayesft", low_fidelity=0.25)


def test_the_cli_passes_low_fidelity_to_the_search_and_refuses_it_without_one(files, tmp_path):
    from typer.testing import CliRunner

    from ftcompile.cli import app

    model, train, val = files
    common = [str(model), "--train", str(train), "--val", str(val), "--sigma", "0.5", "--epochs", "1",
              "--final-epochs", "1", "--samples", "2", "--validate-samples", "2", "--no-plot", "--quiet"]
    refused = CliRunner().invoke(app, ["harden", *common, "--low-fidelity", "0.25", "--out", str(tmp_path / "g.onnx")])
    assert refused.exit_code == 2 and "--low-fidelity runs cheap trials of the recipe search" in refused.output
    ok = CliRunner().invoke(app, ["harden", *common, "--recipe", "bo", "--trials", "2", "--low-fidelity", "0.25",
                                  "--blend", "off", "--out", str(tmp_path / "b.onnx")])
    assert ok.exit_code == 0, ok.output
    journal = [json.loads(line) for line in (tmp_path / "b.journal.jsonl").read_text().splitlines()]
    assert journal[0]["config"]["low_fidelity"] == 0.25
    assert [row["fidelity"] for row in journal[1:]][:2] == [1.0, 0.25]


@pytest.mark.parametrize("low", [None, 0.25])
def test_trials_in_parallel_slots_start_only_while_the_budget_affords_them(tmp_path, low):
    from ftcompile.search.executor import LocalExecutor
    from ftcompile.search.harden import recipe_stage, run_trials
    from ftcompile.search.journal import Journal
    from ftcompile.search.objective import Score
    from ftcompile.search.recipe import recipe_space

    space = recipe_space(noise=True, stages=())
    fidelity = Fidelity(low, fixed=0.0) if low else None
    batches = []

    class Batched(LocalExecutor):  # a batch: the trials submitted between two results
        slots, fresh = 3, True

        def submit(self, task):
            if self.fresh:
                batches.append([])
            self.fresh = False
            batches[-1].append(task)
            super().submit(task)

        def next_done(self):
            self.fresh = True
            return super().next_done()

    def runner(task):
        return Score(0.5 + 0.1 * task.point[0] - 0.05 * (1 - task.fidelity), 0.01, ())

    cfg = HardenConfig(sigma=0.5, recipe="bo", trials=4, low_fidelity=low)
    journal = Journal(tmp_path / "j.jsonl", {}, resume=False)
    controller = Controller(space.dim, max_rate=1.0, trials=4, anchors=(space.plain(),), fidelity=fidelity)
    run_trials(controller, Batched(runner), journal, cfg, recipe_stage(space, 0.5, None, fidelity))
    cost = fidelity.cost if fidelity else (lambda f: 1.0)
    cheapest = cost(low) if low else 1.0
    spent = 0.0
    for batch in batches:  # each batch: as many trials as the budget left affords at the cheapest
        assert len(batch) <= max(0, (4 - spent) // cheapest + 1e-9)
        spent += sum(cost(t.fidelity) for t in batch)
    assert 4 - cheapest < spent and len(journal.trials) == sum(map(len, batches))
    if low is None:  # three slots, then the fourth trial as one frees
        assert [len(b) for b in batches] == [3, 1]


def test_the_trial_board_gives_no_eta_when_the_budget_counts_cost():
    from ftcompile.cli import TrialBoard
    from ftcompile.search.journal import TrialRecord

    record = TrialRecord(0, [0.0], 0.8, 0.01, 2.0, 0, stage=RECIPE, train_sigma=0.5, lr_scale=1.0)
    titles = []
    for total in (8, None):  # --trials 8; a multi-fidelity budget, whose trial count is not known ahead
        board = TrialBoard(total, 1, enabled=True)
        board.rows = [record]
        titles.append(board._table(record).title)
    assert "ETA" in titles[0] and "ETA" not in titles[1] and "best 80.00% at trial 0" in titles[1]
