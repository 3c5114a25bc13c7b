"""The default search over the hardening recipe (search/recipe.py): the space, the choice, the controller's plain
first trial, the whole harden with its journal and resume, and --sigma auto."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import ftcompile
from ftcompile.errors import ConfigError
from ftcompile.export import get_metadata
from ftcompile.runtime.crossing import find_half_loss
from ftcompile.search.blend import choose_blend
from ftcompile.search.controller import Controller
import ftcompile.search.harden as harden_module
from ftcompile.search.harden import HardenConfig
from ftcompile.search.journal import RECIPE
from ftcompile.search.recipe import DROPOUT_MAX, LR, NOISE, Recipe, choose, recipe_space


def test_the_space_maps_the_unit_cube_to_recipes_and_knows_the_plain_one():
    space = recipe_space(noise=True, stages=(0, 0, 1, 2, 2))
    assert space.dim == 1 + 3 + 1
    plain = space.recipe(space.plain())
    assert plain.noise_scale == pytest.approx(1.0) and plain.rates == (0.0,) * 5 and plain.lr_scale == pytest.approx(1)
    assert plain.complexity() == pytest.approx(0.0, abs=1e-9)
    low = space.recipe([0, 0.5, 0.5, 0.5, 0])
    high = space.recipe([1, 1, 0, 0, 1])
    assert low.noise_scale == pytest.approx(NOISE[0]) and high.noise_scale == pytest.approx(NOISE[1])
    assert low.lr_scale == pytest.approx(LR[0]) and high.lr_scale == pytest.approx(LR[1])
    assert high.rates == (DROPOUT_MAX, DROPOUT_MAX, 0, 0, 0) and low.rates == (0.25,) * 5  # sites share their stage's
    device = recipe_space(noise=False, stages=(0, 1))
    assert device.dim == 3 and device.recipe(device.plain()).noise_scale is None
    many = recipe_space(noise=True, stages=(0, 1, 2, 3, 4, 5))
    assert many.n_stages == 3 and many.stages == (0, 0, 1, 1, 2, 2)  # merged in depth order


def test_complexity_is_the_distance_from_the_plain_recipe():
    assert Recipe(2.0, (0.1, 0.2), 0.5).complexity() == pytest.approx(1 + 0.3 + 1)
    assert Recipe(None, (), 1.0).complexity() == 0.0


def test_the_simplest_recipe_within_one_posterior_standard_error_is_kept():
    space = recipe_space(noise=True, stages=(0,))
    plain, other, far = space.plain(), (0.5, 0.2, 0.5), (0.0, 1.0, 1.0)
    # the far recipe is best by less than its posterior error: the plain one is kept
    assert choose([space.recipe(p) for p in (far, plain, other)], [0.81, 0.80, 0.79], [0.02, 0.02, 0.02]) == 1
    # by more: the far one
    assert choose([space.recipe(p) for p in (far, plain, other)], [0.90, 0.80, 0.79], [0.02, 0.02, 0.02]) == 0
    # between: the simpler of two that tie with the best
    assert choose([space.recipe(p) for p in (far, plain, other)], [0.90, 0.70, 0.895], [0.02, 0.02, 0.02]) == 2


def test_the_controller_proposes_its_anchor_first_then_the_design():
    anchor = (0.3, 0.7)
    c = Controller(2, max_rate=1.0, seed=1, trials=8, anchors=(anchor,))
    first = c.propose(torch.empty(0, 2, dtype=torch.double), torch.empty(0, dtype=torch.double))
    assert first.points.tolist() == [list(anchor)] and first.origin == "design"
    both = c.propose(torch.empty(0, 2, dtype=torch.double), torch.empty(0, dtype=torch.double), q=2)
    assert both.points[0].tolist() == list(anchor) and both.points[1].tolist() != list(anchor)
    plain = Controller(2, max_rate=1.0, seed=1, trials=8)
    assert plain.n_init + 1 == c.n_init  # the anchor comes on top of the design
    x = torch.rand(6, 2, dtype=torch.double, generator=torch.Generator().manual_seed(0))
    y = -((x - 0.5) ** 2).sum(1)
    mean, std = c.posterior(x, y)
    assert len(mean) == len(std) == 6 and all(s >= 0 for s in std)
    assert int(np.argmax(mean)) == int(torch.argmax(y))


def test_with_measured_errors_the_posterior_spread_follows_each_trials_own_error():
    # six trials of a smooth objective, each with its Monte-Carlo error: with the errors known, the posterior at a
    # trial can be no wider than its own error (one observation already pins it that far), and the trials measured
    # less precisely are known less precisely
    x = torch.tensor([[0.1, 0.2], [0.9, 0.1], [0.5, 0.5], [0.2, 0.9], [0.8, 0.8], [0.5, 0.05]], dtype=torch.double)
    y = 0.8 - 0.1 * ((x - 0.4) ** 2).sum(1)
    se = torch.tensor([0.004, 0.004, 0.004, 0.03, 0.03, 0.03], dtype=torch.double)
    c = Controller(2, max_rate=1.0, trials=6)
    _, std = c.posterior(x, y, se ** 2)
    assert all(s <= e + 1e-9 for s, e in zip(std, se.tolist()))
    assert min(std[3:]) > 1.5 * max(std[:3])
    # a zero measured error (every drift sample scored alike) is floored, not interpolated exactly
    _, floored = c.posterior(x, y, torch.zeros(6, dtype=torch.double))
    assert all(5e-5 < s <= 1e-4 + 1e-9 for s in floored)


def test_a_failed_trial_enters_with_the_worst_score_and_the_largest_error():
    from ftcompile.search.controller import with_failures

    X, Y, V = torch.rand(3, 2, dtype=torch.double), torch.tensor([0.5, 0.7, 0.6]), torch.tensor([1e-4, 4e-4, 2e-4])
    X2, Y2, V2 = with_failures(X, Y, torch.rand(1, 2, dtype=torch.double), V)
    assert len(X2) == 4 and Y2[-1] == pytest.approx(0.5) and V2[-1] == pytest.approx(4e-4)
    assert with_failures(X, Y, None, V)[2] is V and with_failures(X, Y, torch.rand(1, 2), None)[2] is None


def test_harden_runs_the_recipe_search_journals_it_and_resumes(files, tmp_path, monkeypatch):
    model, train, val = files
    cfg = HardenConfig(sigma=0.5, recipe="bo", trials=3, epochs=1, final_epochs=1, samples=3)
    assert cfg.recipe_search and cfg.trial_count == 3 and cfg.train_sigma_grid() == ()
    calls = []

    def spy(recipes, means, stds):
        calls.append((recipes, means, stds, choose(recipes, means, stds)))
        return calls[-1][3]

    monkeypatch.setattr(harden_module, "choose_recipe", spy)
    walks = []

    def blend_spy(*args, walk=True, **kwargs):
        walks.append(walk)
        return choose_blend(*args, walk=walk, **kwargs)

    monkeypatch.setattr(harden_module, "choose_blend", blend_spy)
    proposals = []
    propose = Controller.propose

    def propose_spy(self, X, Y, *args, **kwargs):
        proposals.append((Y.tolist(), kwargs.get("Yvar")))
        return propose(self, X, Y, *args, **kwargs)

    monkeypatch.setattr(Controller, "propose", propose_spy)
    r = ftcompile.harden(model, train, val, out=tmp_path / "r.onnx", config=cfg, validate_samples=2, plot=False)
    recipe = [t for t in r.trials if t.stage == RECIPE]
    # every proposal is made knowing the finished trials' measured errors
    assert [len(y) for y, _ in proposals] == [0, 1, 2]
    for y, yvar in proposals:
        assert yvar.tolist() == pytest.approx([t.stderr ** 2 for t in recipe[:len(y)]])
    assert len(recipe) == 3 and recipe[0].origin == "plain" and recipe[0].train_sigma == pytest.approx(0.5)
    assert recipe[0].lr_scale == pytest.approx(1.0) and set(recipe[0].rates) == {0.0}
    # the kept trial is the rule's choice on the GP's posterior at the journaled points, not an argmax
    ((recipes, means, stds, index),) = calls
    X = torch.tensor([t.point for t in recipe], dtype=torch.double)
    assert [(c.lr_scale, c.rates) for c in recipes] == [(pytest.approx(t.lr_scale), pytest.approx(tuple(t.rates)))
                                                        for t in recipe]
    assert [c.noise_scale * 0.5 for c in recipes] == pytest.approx([t.train_sigma for t in recipe], abs=1e-6)
    assert r.best_trial == recipe[index].trial
    # ... with each trial's own Monte-Carlo error taken as known (controller.py)
    posterior = Controller(X.shape[1], max_rate=1.0, trials=3).posterior(
        X, torch.tensor([t.objective for t in recipe]), torch.tensor([t.stderr ** 2 for t in recipe]))
    assert means == pytest.approx(posterior[0], abs=1e-5) and stds == pytest.approx(posterior[1], abs=1e-5)
    kept = next(t for t in recipe if t.trial == r.best_trial)
    assert r.train_sigma == kept.train_sigma and r.lr_scale == kept.lr_scale and r.rates == kept.rates
    meta = get_metadata(onnx.load(tmp_path / "r.onnx"))
    assert meta["lr_scale"] == pytest.approx(r.lr_scale) and meta["train_sigma"] == pytest.approx(r.train_sigma)
    report = json.loads((tmp_path / "r.report.json").read_text())
    assert report["lr_scale"] == r.lr_scale and [t["stage"] for t in report["trials"]] == [RECIPE] * 3
    assert r.blend is not None and [s[0] for s in r.blend["scores"]] == [round(0.1 * i, 1) for i in range(10)]
    again = ftcompile.harden(model, train, val, out=tmp_path / "r.onnx", config=cfg, validate_samples=2, plot=False,
                             resume=True)
    assert [t.seconds for t in again.trials] == [t.seconds for t in r.trials]  # read back, none run again
    grid = ftcompile.harden(model, train, val, out=tmp_path / "g.onnx", validate_samples=2, plot=False,
                            config=HardenConfig(sigma=0.5, recipe="grid", epochs=1, final_epochs=1, samples=3))
    assert [t.stage for t in grid.trials] == ["train-sigma"] * 3 and grid.lr_scale == 1.0
    assert walks == [False, False, True]  # the recipe search scores every share (twice: resumed); the grid walks
    with pytest.raises(ConfigError, match="--recipe must be one of bo, grid"):
        HardenConfig(recipe="magic")


def test_find_half_loss_brackets_and_interpolates():
    calls = []

    def measure(s):  # accuracy 0.9 at 0 falling linearly to 0 at sigma 1.2: half (0.45) at 0.6
        calls.append(s)
        return max(0.0, 0.9 * (1 - s / 1.2))

    sigma, points = find_half_loss(measure, 0.9)
    assert sigma == pytest.approx(0.6, abs=1e-9) and calls[:4] == [0.1, 0.2, 0.4, 0.8]
    assert len(calls) <= 10 and points[0] == (0.0, 0.9)
    never, _ = find_half_loss(lambda s: 0.89, 0.9, stop=0.8)
    assert never is None


def test_sigma_auto_finds_the_half_loss_sigma_on_the_validation_data(files, tmp_path):
    model, train, val = files
    cfg = HardenConfig(sigma="auto", method="noise-injection", recipe="grid", train_sigma=0.3, epochs=1,
                       final_epochs=1, samples=3, blend="off")
    r = ftcompile.harden(model, train, val, out=tmp_path / "a.onnx", config=cfg, validate_samples=2, plot=False)
    auto = r.sigma_auto
    assert auto is not None and r.config["sigma"] == auto["sigma"] and r.after.drift == f"lognormal:{auto['sigma']:g}"
    # by hand: the runtime's lognormal drift with the selection draws, on the part of val the choices saw
    from ftcompile.api import bind_data, open_session
    from ftcompile.data import hold_out
    from ftcompile.runtime.drift import LogNormalDrift, with_compensation
    from ftcompile.runtime.validate import run_samples

    session = open_session(model)
    seen, held = hold_out(bind_data(session, val), 0.3)
    measure = lambda s: run_samples(session, seen, LogNormalDrift(s), samples=10, seed=2 ** 20).summary().mean  # noqa
    want, _ = find_half_loss(measure, 1.0)
    assert auto["sigma"] == pytest.approx(round(want, 3)) and auto["clean"] == 1.0
    on_all = lambda s: run_samples(session, bind_data(session, val), LogNormalDrift(s), samples=10,  # noqa: E731
                                   seed=2 ** 20).summary().mean
    assert find_half_loss(on_all, 1.0)[0] != want  # the held-out examples took no part
    # the sigma is found under the drift the sign-off applies: with its compensation
    comp = ftcompile.harden(model, train, val, out=tmp_path / "c.onnx", validate_samples=2, plot=False,
                            config=HardenConfig(sigma="auto", method="erm", compensation="mean", samples=3))
    drift = lambda s: with_compensation(LogNormalDrift(s), "mean")  # noqa: E731
    compensated, _ = find_half_loss(lambda s: run_samples(session, seen, drift(s), samples=10,
                                                          seed=2 ** 20).summary().mean, 1.0)
    assert comp.sigma_auto["sigma"] == pytest.approx(round(compensated, 3)) and round(compensated, 3) != auto["sigma"]
    assert comp.after.drift == drift(comp.sigma_auto["sigma"]).spec()
    # and through the analog twin when converters are named: its clean metric is the twin's (4 bits lose some)
    from ftcompile.api import calibrate_on_data
    from ftcompile.runtime.validate import clean_metric

    twin = ftcompile.harden(model, train, val, out=tmp_path / "t.onnx", validate_samples=2, plot=False,
                            config=HardenConfig(sigma="auto", method="erm", dac_bits=4, adc_bits=4, samples=3))
    twin_session = open_session(model, dac_bits=4, adc_bits=4, calibration=calibrate_on_data(model, train))
    clean = clean_metric(twin_session, hold_out(bind_data(twin_session, val), 0.3)[0], seed=2 ** 20)
    assert twin.sigma_auto["clean"] == pytest.approx(clean) and clean < 1.0
    with pytest.raises(ConfigError, match="already names the target drift"):
        HardenConfig(sigma="auto", drift="pcm:1d")
    with pytest.raises(ConfigError, match="--sigma must be auto or >= 0"):
        HardenConfig(sigma="often")
    if not torch.cuda.is_available():  # refused at once, not after the sigma's search
        with pytest.raises(ConfigError, match="no CUDA device"):
            HardenConfig(sigma="auto", device="cuda")
