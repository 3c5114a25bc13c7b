"""The search pieces and `harden` end to end on a tiny MLP (seconds)."""
import json
import weakref

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import ConfigError, Interrupted
from ftcompile.export import get_metadata
from ftcompile.frontend import import_onnx
from ftcompile.runtime.drift import LogNormalDrift
from ftcompile.search.controller import Controller
from ftcompile.search.harden import HardenConfig
from ftcompile.search.objective import DriftObjective
from ftcompile.search.drifting import DriftKey
from ftcompile.search.trainer import TrainConfig, fine_tune
from tests.helpers import teacher_mlp


def test_objective_matches_runtime_at_sigma_zero_and_uses_common_numbers(files):
    model, _, val = files
    imported = import_onnx(model)
    d = np.load(val)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    clean = DriftObjective(imported.module, x, y, drift=LogNormalDrift(0.0), samples=3)(imported.module)
    assert clean.values == (1.0, 1.0, 1.0)  # the teacher labels its own data
    obj = DriftObjective(imported.module, x, y, drift=LogNormalDrift(0.8), samples=12, seed=3)
    a, b = obj(imported.module), obj(imported.module)
    assert a.values == b.values and a.mean < 1.0  # the same drifts every call
    other = DriftObjective(imported.module, x, y, drift=LogNormalDrift(0.8), samples=12, seed=4)(imported.module)
    assert other.values != a.values
    name, first = next(iter(imported.module.named_parameters()))
    only_first = DriftObjective(imported.module, x, y, drift=LogNormalDrift(0.8), samples=12, seed=3,
                                keys={name: DriftKey(name, False, tuple(first.shape))})(imported.module)
    assert only_first.values != a.values and only_first.mean > a.mean  # fewer tensors drift, less harm


def test_objective_scores_compensated_lognormal(files):
    """comp=mean takes the vmapped path with the gain divided out: the same as the plain drift of weights
    pre-scaled by exp(-sigma^2/2) (same keyed draws). comp=global draws each layer whole through the runtime:
    its values are the runtime's drifted weights scored by hand."""
    import copy

    from torch.func import functional_call

    from ftcompile.runtime.drift import draw_sample

    model, _, val = files
    module = import_onnx(model).module
    d = np.load(val)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    mean = DriftObjective(module, x, y, drift=LogNormalDrift(0.8, "mean"), samples=8, seed=3)(module)
    scaled = copy.deepcopy(module)
    with torch.no_grad():
        for p in scaled.parameters():
            p.mul_(float(np.exp(-0.32)))
    plain = DriftObjective(scaled, x, y, drift=LogNormalDrift(0.8), samples=8, seed=3)(scaled)
    assert np.allclose(mean.values, plain.values, atol=0.011)  # a rounding may flip one of 100 predictions
    unscaled = DriftObjective(module, x, y, drift=LogNormalDrift(0.8), samples=8, seed=3)(module)
    assert mean.values != unscaled.values
    drift = LogNormalDrift(0.8, "global")
    got = DriftObjective(module, x, y, drift=drift, samples=3, seed=3)(module)
    weights = {n: p.detach().numpy() for n, p in module.named_parameters()}
    want = []
    for k in range(3):
        drifted = {n: torch.from_numpy(w) for n, w in draw_sample(drift, weights, 3, k).items()}
        want.append(float((functional_call(module, drifted, (x,)).argmax(-1) == y).float().mean()))
    assert got.values == pytest.approx(tuple(want))


def test_noise_injection_changes_the_gradient(files):
    model, train, _ = files
    d = np.load(train)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    weights = []
    for sigma in (0.0, 0.5):
        m = import_onnx(model).module
        fine_tune(m, x, y, TrainConfig(epochs=1, noise_sigma=sigma, seed=0))
        weights.append(next(m.parameters()).detach().clone())
    assert not torch.allclose(weights[0], weights[1])


def test_controller_design_bounds_and_best():
    c = Controller(3, max_rate=0.5, seed=0, trials=28)
    assert c.n_init == 7
    first = c.propose(torch.empty(0, 3), torch.empty(0), q=7)
    X = first.points
    assert first.origin == "design" and X.shape == (7, 3) and X.min() >= 0 and X.max() <= 0.5
    Y = -((X - 0.2) ** 2).sum(1)
    nxt = c.propose(X, Y)
    assert nxt.origin == "bo" and nxt.points.shape == (1, 3) and nxt.points.min() >= 0 and nxt.points.max() <= 0.5
    assert c.best(X, Y) == int(torch.argmax(Y))
    assert Controller(2, search="random", seed=1).propose(torch.empty(0, 2), torch.empty(0)).points.shape == (1, 2)


def test_saas_kernel_finds_the_one_rate_that_matters_and_proposes_inside_the_box(monkeypatch):
    """SAAS (sparse axis-aligned prior, NUTS): on 16 points in 8 dimensions where only rate 2 moves the
    objective, rate 2 gets by far the shortest lengthscale; proposals are BO points inside the bounds."""
    pytest.importorskip("numpyro")
    from ftcompile.search import controller as ctl

    monkeypatch.setattr(ctl, "SAAS_NUTS", {"warmup_steps": 32, "num_samples": 16, "thinning": 4})
    c = Controller(8, max_rate=0.8, kernel="saas", seed=0, trials=16)
    X = torch.rand(16, 8, generator=torch.Generator().manual_seed(0), dtype=torch.double) * 0.8
    Y = -10 * (X[:, 2] - 0.3) ** 2 + 0.01 * torch.randn(16, generator=torch.Generator().manual_seed(1),
                                                        dtype=torch.double)
    fit, fitted = c._fit, {}

    def fit_once(X_, Y_, Yvar=None):  # one NUTS fit (5 s once JAX has compiled) serves the lengthscales, proposal
        key = (X_.numpy().tobytes(), Y_.numpy().tobytes())  # and best
        if key not in fitted:
            fitted[key] = fit(X_, Y_, Yvar)
        return fitted[key]

    monkeypatch.setattr(c, "_fit", fit_once)
    lengthscales = c._fit(X, Y).median_lengthscale.reshape(-1)
    assert int(torch.argmin(lengthscales)) == 2 and lengthscales[2] * 5 < lengthscales[torch.arange(8) != 2].min()
    nxt = c.propose(X, Y)
    assert nxt.origin == "bo" and nxt.points.shape == (1, 8) and 0 <= nxt.points.min() and nxt.points.max() <= 0.8
    assert abs(float(X[c.best(X, Y), 2]) - 0.3) < 0.15
    assert len(fitted) == 1  # the proposal and the best point were made on the data fitted above
    monkeypatch.setitem(__import__("sys").modules, "numpyro", None)  # not installed: a one-line error
    with pytest.raises(ConfigError, match="fully-bayesian"):
        fit(X, Y)


def test_harden_end_to_end_and_resume(files, tmp_path):
    model, train, val = files
    cfg = HardenConfig(sigma=0.5, method="bayesft", trials=2, epochs=1, final_epochs=1, samples=4)
    out = tmp_path / "hard.onnx"
    r = ftcompile.harden(model, train, val, out=out, config=cfg, validate_samples=5, plot=False,
                         gate=ftcompile.Gate(min_accuracy=0.6, stat="mean"))
    # the teacher labels its own data: clean 1.0, about 0.72 at sigma 0.5; chance is 0.25
    assert r.passed and out.exists() and len(r.trials) == 2 and len(r.rates) == 1
    assert r.after.clean >= 0.9 and r.after.stats.mean >= 0.6 and r.warnings == []
    src, hard = ({i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(p).graph.initializer} for p in (model, out))
    assert all(np.abs(hard[k] - src[k]).max() > 0 for k in src)  # fine-tuned weights were written back
    meta = get_metadata(onnx.load(out))
    assert meta["verdict"] == "signed-off" and meta["sigma"] == 0.5 and meta["method"] == "bayesft"
    assert meta["drift"] == "lognormal:0.5" and meta["targets"] == "params"
    assert list(meta["dropout_rates"].values()) == pytest.approx(r.rates)
    assert json.loads(r.report_json.read_text())["after"]["mean"] == r.after.stats.mean
    assert r.journal.read_text().count('"kind": "trial"') == 2
    again = ftcompile.harden(model, train, val, out=out, config=cfg.__class__(**{**cfg.__dict__, "trials": 3}),
                             validate_samples=5, plot=False, resume=False)
    assert len(again.trials) == 3
    seen = []
    resumed = ftcompile.harden(model, train, val, out=out, config=cfg.__class__(**{**cfg.__dict__, "trials": 3}),
                               validate_samples=5, plot=False, resume=True, on_trial=lambda t, b: seen.append(t))
    assert seen == [] and [t.rates for t in resumed.trials] == [t.rates for t in again.trials]
    assert onnx.load(model).SerializeToString() == teacher_mlp().SerializeToString()  # input untouched


def test_outcome_warnings_judge_the_signoff_against_its_noise():
    from types import SimpleNamespace as NS

    from ftcompile.search.report import outcome_warnings

    def res(clean, mean, std, n=20):
        return NS(clean=clean, stats=NS(mean=mean, std=std, n=n))

    assert outcome_warnings(res(0.9, 0.70, 0.05), res(0.9, 0.68, 0.05)) == []  # 0.02 apart, se of the gap 0.016
    worse = outcome_warnings(res(0.9, 0.70, 0.05), res(0.9, 0.60, 0.05))
    assert len(worse) == 1 and "worse under drift" in worse[0] and "70.00% -> 60.00%" in worse[0]
    assert worse[0].endswith("a lower --lr.")
    assert outcome_warnings(res(0.9, 0.70, 0.05), res(0.9, 0.60, 0.05), "fixed-dropout")[0].endswith("--rate.")
    assert outcome_warnings(res(0.9, 0.70, 0.05), res(0.82, 0.75, 0.05)) == []  # 9% of clean lost: tolerated
    clean = outcome_warnings(res(0.9, 0.70, 0.05), res(0.80, 0.75, 0.05))
    assert len(clean) == 1 and clean[0].startswith("clean 90.00% -> 80.00%")


def test_harden_says_when_the_fine_tune_made_the_model_worse(files, tmp_path):
    model, train, val = files
    args = ["harden", str(model), "--train", str(train), "--val", str(val), "--method", "noise-injection",
            "--final-epochs", "2", "--validate-samples", "5", "--no-plot", "--out", str(tmp_path / "h.onnx"),
            "--lr", "0.5", "--optimizer", "sgd", "--train-sigma", "0.6"]  # far too hot: clean 1.0 -> about 0.5
    r = CliRunner().invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output  # no gate given: measured, not refused
    report = json.loads(r.stdout)
    assert "worse under drift" in report["warnings"][0] and report["warnings"][1].startswith("clean 100.00% ->")
    assert "warning: the hardened model is worse under drift" in r.stderr
    assert get_metadata(onnx.load(tmp_path / "h.onnx"))["signoff"]["warnings"] == report["warnings"]
    assert "**Warning:**" in (tmp_path / "h.report.md").read_text()


def test_interrupt_keeps_finished_trials(files, tmp_path):
    model, train, val = files
    cfg = HardenConfig(sigma=0.5, method="bayesft", trials=3, epochs=1, final_epochs=1, samples=4)
    out = tmp_path / "hard.onnx"

    def stop_after_first(trial, best):
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        ftcompile.harden(model, train, val, out=out, config=cfg, validate_samples=5, plot=False,
                         on_trial=stop_after_first)
    assert not out.exists()
    journal = out.with_name("hard.journal.jsonl").read_text().splitlines()
    assert len(journal) == 2  # header + the one finished trial
    r = ftcompile.harden(model, train, val, out=out, config=cfg, validate_samples=5, plot=False, resume=True)
    assert len(r.trials) == 3


def test_other_methods_share_the_loop(files, tmp_path):
    model, train, val = files
    for method in ("erm", "fixed-dropout", "noise-injection"):
        r = ftcompile.harden(model, train, val, out=tmp_path / f"{method}.onnx", validate_samples=3, plot=False,
                             config=HardenConfig(method=method, sigma=0.5, final_epochs=1, samples=3, rate=0.2))
        assert [t.stage for t in r.trials] == (["train-sigma"] * 3 if method == "noise-injection" else [])
        assert r.rates == ([0.2] if method == "fixed-dropout" else [0.0])


@pytest.mark.parametrize("kwargs,needle", [({"method": "magic"}, "--method"), ({"trials": 0}, "--trials"),
                                          ({"max_rate": 1.5}, "--max-rate"), ({"sigma": -1}, "--sigma"),
                                          ({"device": "tpu"}, "--device"), ({"final_epochs": "many"}, "--final-epochs"),
                                          ({"final_epochs": -1}, "--final-epochs"),
                                          ({"final_epochs": 1.5}, "--final-epochs"),
                                          ({"final_epochs": "inf"}, "--final-epochs"),
                                          ({"final_epochs": "nan"}, "--final-epochs")])
def test_bad_config(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        HardenConfig(**kwargs)


def test_final_epochs_auto_gives_small_training_sets_their_minimum_of_steps(files, tmp_path, monkeypatch):
    from ftcompile.search.harden import MIN_FINAL_STEPS

    auto = HardenConfig()
    assert auto.final_epochs_for(240) == MIN_FINAL_STEPS // 4 == 60  # 4 batches of 64 an epoch
    assert auto.final_epochs_for(5000) == 15 and auto.final_epochs_for(64 * 17) == 15  # 15 epochs are enough steps
    assert auto.final_epochs_for(1) == MIN_FINAL_STEPS
    assert HardenConfig(final_epochs="3").final_epochs_for(240) == 3  # a number is kept, however small the set
    assert HardenConfig(final_epochs="3.0").final_epochs == 3  # a whole number however spelled
    model, train, val = files  # 200 training examples: 4 batches, so auto fine-tunes 60 epochs
    import ftcompile.search.harden as harden_module

    fits = []

    def recording(module, x, y, train, *args, **kwargs):
        fits.append(train.epochs)
        return fine_tune(module, x, y, train, *args, **kwargs)

    monkeypatch.setattr(harden_module, "fine_tune", recording)
    r = ftcompile.harden(model, train, val, out=tmp_path / "n.onnx", validate_samples=2, plot=False,
                         config=HardenConfig(method="noise-injection", sigma=0.5, train_sigma=0.5, samples=2,
                                             blend="off"))
    assert fits == [60] and r.final_epochs == 60 and r.config["final_epochs"] == "auto"
    meta = {p.key: p.value for p in onnx.load(tmp_path / "n.onnx").metadata_props}
    assert json.loads(meta["ftcompile.final_epochs"]) == 60


def test_cli_harden(files, tmp_path):
    model, train, val = files
    runner = CliRunner()
    args = ["harden", str(model), "--train", str(train), "--val", str(val), "--method", "bayesft", "--trials", "2",
            "--epochs", "1", "--final-epochs", "1", "--samples", "3", "--validate-samples", "4", "--no-plot",
            "--out", str(tmp_path / "h.onnx")]
    r = runner.invoke(app, args + ["--min-accuracy", "0.4", "--stat", "total_ci_low", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["verdict"] == "signed-off" and report["after"]["total_ci_low"] >= 0.4
    fail = runner.invoke(app, args + ["--min-accuracy", "1.0", "--max-drop", "0.0"])
    assert fail.exit_code == 1 and (tmp_path / "h.onnx").exists()
    assert "rates: " in fail.output  # the searched rates are shown
    noise = runner.invoke(app, args[:6] + ["--method", "noise-injection", "--final-epochs", "1", "--validate-samples",
                                           "2", "--no-plot", "--out", str(tmp_path / "n.onnx")])
    assert noise.exit_code == 0 and "dropout: none (1 site at rate 0)" in noise.output and "rates: " not in noise.output
    assert "trained under lognormal sigma" in noise.output and "(chosen by the grid)" in noise.output
    assert "trained under" not in fail.output  # bayesft trains without noise
    assert get_metadata(onnx.load(tmp_path / "h.onnx"))["verdict"] == "not-signed-off"
    bad = runner.invoke(app, args + ["--method", "magic"])
    assert bad.exit_code == 2 and "--method" in bad.output
    bad = runner.invoke(app, args + ["--time-budget", "soon"])
    assert bad.exit_code == 2 and "time-budget" in bad.output
    x = np.load(train)
    np.savez(tmp_path / "badtrain.npz", x=x["x"], y=x["y"] + 10)
    bad = runner.invoke(app, args[:3] + [str(tmp_path / "badtrain.npz")] + args[4:])
    assert bad.exit_code == 2 and "labels span" in bad.output
    insp = runner.invoke(app, ["inspect", str(tmp_path / "h.onnx"), "--json"])
    info = json.loads(insp.stdout)
    assert insp.exit_code == 0 and len(info["layers"]) == 2 and info["output_layers"] == ["fc1"]
    assert info["parity"]["ok"] and info["metadata"]["verdict"] == "not-signed-off"


def test_cli_harden_with_worker_processes(files, tmp_path):
    model, train, val = files
    args = ["harden", str(model), "--train", str(train), "--val", str(val), "--method", "bayesft", "--trials", "4",
            "--epochs", "1",
            "--final-epochs", "1", "--samples", "3", "--validate-samples", "4", "--no-plot",
            "--out", str(tmp_path / "w.onnx")]
    r = CliRunner().invoke(app, args + ["--workers", "2"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in (tmp_path / "w.journal.jsonl").read_text().splitlines()[1:]]
    assert sorted(row["trial"] for row in rows) == [0, 1, 2, 3] and all(row["status"] == "ok" for row in rows)
    assert r.output.count("trial ") >= 4  # plain progress lines when not on a terminal
    bad = CliRunner().invoke(app, args + ["--workers", "0"])
    assert bad.exit_code == 2 and "--workers" in bad.output


def test_harden_objective_and_signoff_use_a_user_drift_and_metric(files, tmp_path):
    from tests.runtime import userplugins

    model, train, val = files
    userplugins.CALLS.clear()
    cfg = HardenConfig(trials=2, epochs=1, final_epochs=1, samples=3, drift="tests.runtime.userplugins:device",
                       objective="tests.runtime.userplugins:worst_class_recall", blend="off")
    r = ftcompile.harden(model, train, val, out=tmp_path / "u.onnx", config=cfg, validate_samples=4, plot=False)
    assert r.after.drift == "table:measured-chip-7:4" and r.after.metric == "worst_class_recall"
    # objective: (1 base + 2 trials + 1 final) x 3 samples; sign-off: 2 x (clean + 4 samples)
    assert len(userplugins.CALLS) == 4 * 3 + 2 * 5
    with pytest.raises(ConfigError, match="cannot load metric"):
        HardenConfig(objective="tests.runtime.userplugins:nope")
    with pytest.raises(ConfigError, match="unknown drift model"):
        HardenConfig(drift="wobble:3")


def test_sigma_and_drift_have_one_source_of_truth():
    assert HardenConfig().sigma == 0.6 and HardenConfig().drift_model().spec() == "lognormal:0.6"
    assert HardenConfig(drift="quantize:16,lognormal:0.9").sigma == 0.9  # the spec's sigma, also for training
    assert HardenConfig(drift="quantize:16,lognormal:0.9", method="noise-injection").noise == 0.9
    for sigma in (0.9, 0.6):  # agreeing or not, the drift is given once
        with pytest.raises(ConfigError, match="both give the drift"):
            HardenConfig(sigma=sigma, drift="lognormal:0.9")
    assert HardenConfig(drift="gaussian:0.1").sigma is None
    with pytest.raises(ConfigError, match="--train-sigma"):
        HardenConfig(drift="gaussian:0.1", method="bayesft+noise")
    assert HardenConfig(drift="gaussian:0.1", method="bayesft+noise", train_sigma=0.3).noise == 0.3


def test_default_method_trains_under_the_drift_when_it_can_and_searches_otherwise():
    """auto: noise injection (the measured winner) when the drift has a lognormal term or a device preset;
    the paper's search for a drift training cannot sample; an explicit --method is kept."""
    assert HardenConfig().method == "noise-injection" and HardenConfig().noise == 0.6
    assert HardenConfig(drift="quantize:16,lognormal:0.3").method == "noise-injection"
    assert HardenConfig(drift="pcm:1d").method == "noise-injection" and HardenConfig(drift="pcm:1d").train_device()
    assert HardenConfig(drift="gaussian:0.1").method == "bayesft"
    assert HardenConfig(drift="gaussian:0.1", train_sigma=0.2).method == "noise-injection"
    assert HardenConfig(method="bayesft").method == "bayesft"
    with pytest.raises(ConfigError, match="--method must be auto or one of"):
        HardenConfig(method="dropout")


def test_crossbar_targets_leave_biases_digital_in_the_objective_and_the_signoff(files, tmp_path):
    model, train, val = files
    cfg = HardenConfig(method="noise-injection", sigma=0.8, final_epochs=1, samples=3, targets="crossbar")
    r = ftcompile.harden(model, train, val, out=tmp_path / "c.onnx", config=cfg, validate_samples=3, plot=False)
    assert r.after.targets == "crossbar" and r.before.targets == "crossbar"
    assert r.after.drifting_tensors == 2  # the two weight matrices, not their biases
    assert get_metadata(onnx.load(tmp_path / "c.onnx"))["targets"] == "crossbar"


def test_objective_runs_in_bounded_batches_with_the_same_scores():
    """At most max_batch (sample, input) pairs per forward, whatever the validation set's size; batching
    changes no score. (An unbatched chunk would put 10 samples x all inputs through the net at once.)"""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    x, y = torch.randn(3000, 16), torch.randint(0, 4, (3000,))
    seen = []
    hook = net[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    tiny = DriftObjective(net, x, y, drift=LogNormalDrift(0.5), samples=20, max_batch=640)(net)
    hook.remove()
    assert seen and max(seen) * 10 <= 640  # chunks of 10 samples (vmapped) x 64 inputs
    big = DriftObjective(net, x, y, drift=LogNormalDrift(0.5), samples=20, max_batch=10**9, max_elements=10**12)(net)
    assert big.values == pytest.approx(tiny.values, abs=1e-9)
    seen.clear()
    hook = net[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    DriftObjective(net, x, y, drift=LogNormalDrift(0.5), samples=20, max_elements=16 * 320)(net)  # 320 pairs
    hook.remove()
    assert seen and max(seen) * 10 <= 320  # large inputs: the element bound wins over max_batch


def test_the_objective_keeps_no_batch_s_outputs_alive_into_the_next_forward():
    """Each batch's outputs are copied out and freed before the next forward. Kept until one final cat, they were
    small blocks made between the forwards' large activation blocks, each pinning a freed activation's hole: the
    heap grew by hundreds of MB, differently run to run (benchmarks/results/memory.json)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(16, 4)
    x, y = torch.randn(300, 16), torch.randint(0, 4, (300,))
    objective = DriftObjective(net, x, y, drift=LogNormalDrift(0.5), samples=2, max_batch=64)
    outputs, alive = [], []

    def forward(args):
        alive.append(sum(ref() is not None for ref in outputs))  # earlier batches' outputs still held
        out = net(*args)
        outputs.append(weakref.ref(out))
        return out

    with torch.no_grad():
        joined = objective._batched(forward)
        assert len(outputs) > 2 and max(alive) == 0, alive
        assert torch.equal(joined, net(x))  # in order, every example once


def test_hardware_aware_training_under_the_device_physics(files, tmp_path):
    """harden --drift pcm:1d fine-tunes on weights read back through the PCM model (differentiable), and the
    objective and sign-off measure the same physics."""
    model, train, val = files
    cfg = HardenConfig(method="noise-injection", drift="pcm:1d,comp=global", final_epochs=2, samples=3,
                       targets="crossbar")
    assert cfg.train_device().spec() == "pcm:1d,comp=global" and cfg.sigma is None
    r = ftcompile.harden(model, train, val, out=tmp_path / "p.onnx", config=cfg, validate_samples=3, plot=False)
    assert r.after.drift == "pcm:1d,comp=global" and r.after.stats.mean > 0.5
    d = np.load(train)
    x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
    trained = []
    for noise_model in (None, cfg.train_device()):
        m = import_onnx(model).module
        fine_tune(m, x, y, TrainConfig(epochs=1, noise_model=noise_model, seed=0))
        trained.append(next(m.parameters()).detach().clone())
    assert not torch.allclose(trained[0], trained[1])  # the physics reached the gradient
    assert HardenConfig(method="noise-injection", drift="pcm:1d", train_sigma=0.3).train_device() is None


@pytest.mark.parametrize("optimizer, schedule, steps, decays", [
    ("adam", "constant", 10, False), ("sgd", "cosine", 10, True),
    ("adam", "auto", 1999, False), ("adam", "auto", 2000, True)])
def test_fine_tune_optimizer_and_schedule(optimizer, schedule, steps, decays):
    import torch

    from ftcompile.search.trainer import TrainConfig, make_optimizer

    w = torch.nn.Parameter(torch.ones(3))
    opt, sched = make_optimizer([w], TrainConfig(lr=0.1, optimizer=optimizer, schedule=schedule), steps=steps)
    assert isinstance(opt, torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)
    for _ in range(steps):
        opt.step()
        sched.step()
    # cosine (and auto from 2,000 steps): the rate decays to 0 by the fine-tune's last step; constant: it stays
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0 if decays else 0.1, abs=1e-9)
    with pytest.raises(ConfigError, match="--optimizer must be one of"):
        HardenConfig(optimizer="rmsprop")


def test_fine_tune_keeps_batch_norm_statistics_and_trains_its_affine():
    from ftcompile.search.trainer import TrainConfig, fine_tune

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 36, 3))
    bn = net[1]
    mean, var, gamma = bn.running_mean.clone(), bn.running_var.clone(), bn.weight.detach().clone()
    x, y = 3 + 2 * torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,))  # far from the stored statistics (0, 1)
    fine_tune(net, x, y, TrainConfig(epochs=2, lr=1e-2, noise_sigma=0.3))
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert not torch.allclose(bn.weight, gamma)


def test_fine_tune_stops_with_a_one_line_error_when_the_loss_diverges():
    from ftcompile.search.trainer import TrainConfig, fine_tune

    net = torch.nn.Linear(4, 3)
    x, y = 1e30 * torch.randn(32, 4), torch.randint(0, 3, (32,))
    with pytest.raises(ConfigError, match=r"fine-tuning diverged .* lower --lr"):
        fine_tune(net, x, y, TrainConfig(epochs=3, lr=1e10, optimizer="sgd"))


def test_harden_against_compensated_lognormal_trains_and_signs_off_on_it(files, tmp_path):
    """--compensation on the paper's drift: training samples the compensated drift (the layer-wise read needs
    apply_torch), the objective draws it through the runtime, the sign-off names it."""
    model, train, val = files
    plain = HardenConfig(method="noise-injection", sigma=0.5)
    assert plain.train_device() is None and plain.noise == 0.5  # the trainer's own lognormal draw
    cfg = HardenConfig(method="noise-injection", sigma=0.5, compensation="global", final_epochs=2, samples=3)
    assert cfg.train_device().spec() == "lognormal:0.5,comp=global" and cfg.sigma == 0.5
    r = ftcompile.harden(model, train, val, out=tmp_path / "c.onnx", config=cfg, validate_samples=3, plot=False)
    assert r.after.drift == r.before.drift == "lognormal:0.5,comp=global"
    with pytest.raises(ConfigError, match="comp='mean'"):
        HardenConfig(drift="pcm:1d", compensation="mean")  # mean is lognormal's; a device preset refuses it


def test_a_model_with_two_inputs_hardens_end_to_end(tmp_path):
    """Token-classifier style: features and a mask as two inputs (``x * mask -> Gemm``), data arrays named after
    them; the fine-tune, the objective and the sign-off all feed both."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 8)).astype(np.float32)
    nodes = [helper.make_node("Mul", ["x", "mask"], ["h"]), helper.make_node("Gemm", ["h", "w"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
                                             helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "two.onnx")
    x = rng.standard_normal((300, 8)).astype(np.float32)
    mask = (rng.random((300, 8)) > 0.3).astype(np.float32)
    y = ((x * mask) @ w.T).argmax(1)
    for name, sl in (("train", slice(0, 200)), ("val", slice(200, 250)), ("test", slice(250, 300))):
        np.savez(tmp_path / f"{name}.npz", x=x[sl], mask=mask[sl], y=y[sl])
    r = ftcompile.harden(tmp_path / "two.onnx", tmp_path / "train.npz", tmp_path / "val.npz",
                         test=tmp_path / "test.npz", out=tmp_path / "h.onnx", validate_samples=3, plot=False,
                         config=HardenConfig(sigma=0.5, epochs=1, final_epochs=2, samples=3))
    assert r.before.clean == 1.0 and r.after.examples == 50 and 0 < r.torch_before < 1
    again = ftcompile.validate(tmp_path / "h.onnx", tmp_path / "test.npz", sigma=0.5, samples=3)
    assert again.values == r.after.values
