"""The training-noise grid (``--train-sigma auto``): which levels, which one is kept, failures, resume, reports."""
import json

import onnx
import pytest
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import EXIT_BAD_INPUT, ConfigError
from ftcompile.export import get_metadata
from ftcompile.search.executor import LocalExecutor
from ftcompile.search.harden import HardenConfig
from ftcompile.search.journal import Journal
from ftcompile.search.journal import NOISE_GRID as STAGE
from ftcompile.search.noise_level import choose_train_sigma, train_sigma_grid
from ftcompile.search.objective import Score


class PeakedRunner:
    """A trial whose score peaks at ``best`` sigma and that raises at the sigmas in ``fails``."""

    def __init__(self, best: float, fails=()):
        self.best, self.fails, self.calls = best, set(fails), []

    def __call__(self, task):
        self.calls.append(task.train_sigma)
        if task.train_sigma in self.fails:
            raise RuntimeError(f"diverged at sigma {task.train_sigma}")
        return Score(1 - abs(task.train_sigma - self.best), 0.01, ())


def _journal(tmp_path, resume=False, name="j"):
    return Journal(tmp_path / f"{name}.jsonl", {"k": 1}, resume=resume)


def test_grid_is_shares_of_the_harden_sigma_and_only_for_lognormal_noise_training():
    assert train_sigma_grid(0.6) == (0.6, 0.45, 0.3)
    assert HardenConfig(sigma=0.3).train_sigma_grid() == (0.3, 0.225, 0.15)  # the default method
    assert HardenConfig(sigma=0.3, train_sigma=None).train_sigma == "auto"  # the API's old spelling
    assert HardenConfig(sigma=0.3, train_sigma=0.2).train_sigma_grid() == ()  # given: kept
    assert HardenConfig(sigma=0.3, train_sigma="0.2").noise == 0.2  # the CLI passes text
    assert HardenConfig(sigma=0.3, method="bayesft").train_sigma_grid() == ()  # no training noise
    assert HardenConfig(sigma=0.3, method="bayesft+noise").train_sigma_grid() == (0.3, 0.225, 0.15)
    assert HardenConfig(drift="pcm:1d").train_sigma_grid() == ()  # the device preset trains as itself
    # compensated lognormal trains through its own draw (train_device): no level to search, by grid or recipe
    for recipe in ("grid", "bo"):
        compensated = HardenConfig(drift="lognormal:0.5,comp=mean", recipe=recipe)
        assert compensated.train_device() is not None and compensated.noise == 0.5
        assert not compensated.searches_train_sigma and compensated.train_sigma_grid() == ()
    assert HardenConfig(sigma=0.3, recipe="bo").searches_train_sigma  # the recipe search chooses it instead
    assert HardenConfig(sigma=0.0).train_sigma_grid() == ()


@pytest.mark.parametrize("bad", ["often", "-0.1", "nan", float("inf")])
def test_bad_train_sigma_is_refused(bad):
    with pytest.raises(ConfigError, match="--train-sigma must be auto or a number >= 0"):
        HardenConfig(train_sigma=bad)


def test_the_best_scoring_level_is_kept_and_every_trial_journaled(tmp_path):
    runner = PeakedRunner(best=0.45)
    journal = _journal(tmp_path)
    seen = []
    chosen = choose_train_sigma(LocalExecutor(runner), journal, (0.6, 0.45, 0.3), [0.0, 0.0], seed=0,
                                on_trial=lambda record, best: seen.append((record.train_sigma, best.train_sigma)))
    assert chosen == 0.45
    assert sorted(runner.calls) == [0.3, 0.45, 0.6]
    assert [(t.stage, t.origin, t.rates) for t in journal.trials] == [(STAGE, "grid", [0.0, 0.0])] * 3
    assert seen[-1][1] == 0.45
    # a resumed run reads the three back and trains nothing
    again = PeakedRunner(best=0.3)
    resumed = _journal(tmp_path, resume=True)
    assert choose_train_sigma(LocalExecutor(again), resumed, (0.6, 0.45, 0.3), [0.0, 0.0], seed=0) == 0.45
    assert again.calls == []


class FlatRunner:
    """Scores by level, with a standard error of ``se``: ``means`` maps a sigma to its mean."""

    def __init__(self, means: dict, se: float):
        self.means, self.se = means, se

    def __call__(self, task):
        return Score(self.means[task.train_sigma], self.se, ())


@pytest.mark.parametrize("means,kept", [
    ({0.6: 0.90, 0.45: 0.905, 0.3: 0.902}, 0.6),   # the best (0.45) by less than its standard error: the target
    ({0.6: 0.90, 0.45: 0.93, 0.3: 0.935}, 0.45),   # 0.3 best, 0.45 within one error of it, 0.6 not: 0.45
    ({0.6: 0.80, 0.45: 0.85, 0.3: 0.90}, 0.3),     # the farthest level clearly best
])
def test_the_simplest_level_within_one_standard_error_of_the_best_is_kept(tmp_path, means, kept):
    assert choose_train_sigma(LocalExecutor(FlatRunner(means, 0.01)), _journal(tmp_path), (0.6, 0.45, 0.3),
                              [0.0], seed=0) == kept


def test_a_level_that_fails_is_retried_once_then_left_out(tmp_path):
    runner = PeakedRunner(best=0.6, fails={0.6})  # the failure depends on the level, not the trial number
    journal = _journal(tmp_path)
    chosen = choose_train_sigma(LocalExecutor(runner), journal, (0.6, 0.45, 0.3), [0.0], seed=0)
    assert chosen == 0.45
    assert runner.calls.count(0.6) == 2  # first attempt and one retry
    failed = [t for t in journal.trials if t.status == "failed"]
    assert len(failed) == 1 and failed[0].origin == "retry" and "diverged at sigma 0.6" in failed[0].error
    everything = PeakedRunner(best=0.6, fails={0.6, 0.45, 0.3})
    none_left = _journal(tmp_path, name="none-left")
    assert choose_train_sigma(LocalExecutor(everything), none_left, (0.6, 0.45, 0.3), [0.0], seed=0) == 0.6
    assert [t.status for t in none_left.trials] == ["failed"] * 3  # the final fit then fails, or works, alone


def test_harden_trains_the_final_model_and_the_rate_trials_at_the_chosen_level(files, tmp_path, monkeypatch):
    """The grid runs inside harden; whatever level it returns (here the lowest, as if it had won) is the one
    the rate trials and the final fit train under, and the one the model's record names."""
    import ftcompile.search.harden as harden_module

    model, train, val = files
    trained_at, real_fit, real_choose = [], harden_module.fine_tune, harden_module.choose_train_sigma
    monkeypatch.setattr(harden_module, "fine_tune", lambda module, x, y, cfg, *a, **k: (
        trained_at.append(cfg.noise_sigma), real_fit(module, x, y, cfg, *a, **k))[1])
    monkeypatch.setattr(harden_module, "choose_train_sigma", lambda *a, **k: (real_choose(*a, **k), 0.4)[1])
    cfg = HardenConfig(method="bayesft+noise", sigma=0.8, trials=2, epochs=1, final_epochs=1, samples=4)
    r = ftcompile.harden(model, train, val, out=tmp_path / "h.onnx", config=cfg, validate_samples=3, plot=False)
    assert sorted(t.train_sigma for t in r.trials if t.stage == STAGE) == [0.4, 0.6, 0.8]
    assert r.train_sigma == 0.4
    assert [t.train_sigma for t in r.trials if t.stage == "rates"] == [0.4, 0.4]
    assert sorted(trained_at[:3]) == [0.4, 0.6, 0.8] and trained_at[3:] == [0.4] * 3  # 2 rate trials, the final fit
    assert get_metadata(onnx.load(r.out))["train_sigma"] == 0.4
    report = json.loads(r.report_json.read_text())
    assert report["train_sigma"] == 0.4 and len(report["trials"]) == 5
    assert "| grid | train sigma 0.4 | " in r.report_markdown.read_text()


def test_harden_keeps_the_level_the_grid_ranks_first_and_a_given_one(files, tmp_path):
    model, train, val = files
    cfg = HardenConfig(method="noise-injection", sigma=0.8, epochs=1, final_epochs=1, samples=4)
    r = ftcompile.harden(model, train, val, out=tmp_path / "h.onnx", config=cfg, validate_samples=3, plot=False)
    assert r.train_sigma == max(r.trials, key=lambda t: t.objective).train_sigma
    assert f"(best) | grid | train sigma {r.train_sigma:g} |" in r.report_markdown.read_text()
    fixed = ftcompile.harden(model, train, val, out=tmp_path / "f.onnx", validate_samples=3, plot=False,
                             config=HardenConfig(method="noise-injection", sigma=0.8, train_sigma=0.5,
                                                 final_epochs=1, samples=4))
    assert fixed.trials == [] and fixed.train_sigma == 0.5


def test_cli_refuses_a_bad_train_sigma_in_one_line(files, tmp_path):
    model, train, val = files
    r = CliRunner().invoke(app, ["harden", str(model), "--train", str(train), "--val", str(val),
                                 "--train-sigma", "often", "--out", str(tmp_path / "h.onnx")])
    assert r.exit_code == EXIT_BAD_INPUT
    assert r.output.strip().count("\n") == 0 and "--train-sigma must be auto or a number >= 0" in r.output
    assert not (tmp_path / "h.onnx").exists()


def test_trials_take_the_schedule_the_final_fit_will_have(files, tmp_path, monkeypatch):
    """Under --lr-schedule auto a trial's schedule follows the final fit's length, not its own: on ResNet-20 the
    3-epoch trials at a constant rate ranked the noise levels unlike the 15-epoch fits, cosine ones alike."""
    import ftcompile.search.harden as harden_module

    model, train, val = files  # 200 training examples: 4 steps an epoch at batch 64
    seen = []
    monkeypatch.setattr(harden_module, "fine_tune", lambda module, x, y, cfg, *a, **k: seen.append(
        (cfg.epochs, cfg.schedule)) or 0.0)
    for final_epochs, schedule, expected in ((500, "auto", "cosine"), (499, "auto", "constant"),
                                             (500, "constant", "constant")):
        seen.clear()
        cfg = HardenConfig(method="noise-injection", sigma=0.5, epochs=1, final_epochs=final_epochs, samples=2,
                           lr_schedule=schedule)
        ftcompile.harden(model, train, val, out=tmp_path / "h.onnx", config=cfg, validate_samples=2, plot=False)
        assert seen == [(1, expected)] * 3 + [(final_epochs, expected)]
