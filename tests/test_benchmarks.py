"""The GPU benchmark's code path, run on CPU at smoke size on synthetic CIFAR-shaped data."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_smoke_on_cpu(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("cifar10_train20k", 700), ("cifar10_test", 300)):
        np.savez(tmp_path / f"{name}.npz", x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 y=rng.integers(0, 10, n).astype(np.int64))
    out = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke", "--device", "cpu",
                        "--data", str(tmp_path), "--work", str(tmp_path / "w"), "--out", str(out),
                        "--methods", "bayesft,ftna"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    for model in ("resnet18", "vgg11"):
        acc = res["models"][model]["accuracy"]
        assert set(acc) == {"erm", "bayesft", "ftna"} and all(len(v) == 6 for v in acc.values())
        assert res["models"][model]["validate"]["provider"] == "CPUExecutionProvider"


def test_bench_gpu_subsets_are_drawn_across_a_test_file_sorted_by_class(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_gpu import split

    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    sorted_labels = np.repeat(np.arange(10), 100)  # as CIFAR-10's test file: the first 1,000 are one class
    sets = split({"train": (images(800), rng.integers(0, 10, 800)), "test": (images(1000), sorted_labels)},
                 tmp_path, smoke=True)
    assert len(set(sets["signoff"][1])) == 10 and len(set(sets["test"][1])) == 10


def test_figure3_sweeps_erm_and_every_run_left_on_disk(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from argparse import Namespace

    import onnx

    from harden_runs import FIGURE3_SIGMAS, figure3
    from tests.helpers import teacher_files, teacher_mlp

    model, data = teacher_files(tmp_path)
    other = tmp_path / "other.onnx"
    onnx.save(teacher_mlp(seed=3), other)  # another teacher: about chance on these labels
    results = {"runs": {"a": {"out": str(other)}, "gone": {"out": str(tmp_path / "deleted.onnx")}, "old": {}}}
    args = Namespace(sweep_samples=8, sweep_extra=f"extra={model}")
    fig = figure3(model, data, results, args, tmp_path / "task.json")
    assert list(fig["curves"]) == ["erm", "a", "extra"]  # runs without a model on disk are left out
    assert fig["samples"] == 8 and fig["images"] == 400
    erm = fig["curves"]["erm"]
    assert list(erm) == [f"{s:g}" for s in FIGURE3_SIGMAS]
    assert erm["0"] == 100.0 and erm["1.5"] < 90  # labels are the model's own: drift alone costs accuracy
    assert fig["curves"]["extra"] == erm  # the same model under the same draws
    assert fig["curves"]["a"]["0"] < 60
    assert (tmp_path / "task_figure3.png").stat().st_size > 0

    # --sweep-only: the named model is swept again, the others' stored curves are kept as they are, even a run
    # whose model is no longer on disk
    results["figure3"] = {**fig, "curves": {**fig["curves"], "erm": {"0": -1.0}, "a": {"0": -1.0},
                                            "gone": {"0": -2.0}}}
    again = figure3(model, data, results, Namespace(sweep_samples=8, sweep_extra=f"extra={model}", sweep_only="a"),
                    tmp_path / "task.json")
    assert again["curves"]["erm"] == {"0": -1.0} and again["curves"]["gone"] == {"0": -2.0}
    assert again["curves"]["a"] == fig["curves"]["a"] and list(again["models"]) == ["erm", "a", "extra"]
    for bad in (Namespace(sweep_samples=4, sweep_extra="", sweep_only="a"),
                Namespace(sweep_samples=8, sweep_extra="", sweep_only="gone")):
        with pytest.raises(SystemExit, match="^error: --sweep-only"):
            figure3(model, data, results, bad, tmp_path / "task.json")


def test_half_loss_sigma_by_grid_and_by_crossing(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from types import SimpleNamespace as P

    from harden_runs import half_loss_sigma

    curve = [P(sigma=0.0, mean=0.8), P(sigma=0.2, mean=0.64), P(sigma=0.4, mean=0.24), P(sigma=0.6, mean=0.1)]
    assert half_loss_sigma(curve, "grid") == 0.4
    assert half_loss_sigma(curve, "crossing") == 0.32  # 0.2 + (0.64 - 0.4) / (0.64 - 0.24) * 0.2
    exact = [P(sigma=0.0, mean=0.8), P(sigma=0.2, mean=0.4), P(sigma=0.4, mean=0.1)]
    assert half_loss_sigma(exact, "grid") == half_loss_sigma(exact, "crossing") == 0.2
    never = [P(sigma=0.0, mean=0.8), P(sigma=0.5, mean=0.7)]
    assert half_loss_sigma(never, "grid") == half_loss_sigma(never, "crossing") == 0.5


def test_half_loss_study_measures_erm_at_the_crossing_and_keeps_runs_other_processes_wrote(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from types import SimpleNamespace as P

    import harden_runs

    means = {0.0: 0.8, 0.2: 0.64, 0.4: 0.24, 0.32: 0.41}
    swept = []

    def sweep_each(models, data, sigmas, samples, comp=None):
        swept.append((data.name, list(sigmas)))
        return {"erm": [P(sigma=s, mean=means[s]) for s in sigmas]}

    out = tmp_path / "results.json"

    def harden_cli(model, work, signoff, sigma, method, flags, name=None, env=None):
        # another process's run lands in the results file while this one hardens
        out.write_text(json.dumps({"runs": {"other": {"after": {"mean": 0.5}}}}))
        return {"out": str(tmp_path / "h.onnx"), "sigma": sigma}

    monkeypatch.setattr(harden_runs, "sweep_each", sweep_each)
    monkeypatch.setattr(harden_runs, "harden_cli", harden_cli)
    np.savez(tmp_path / "test.npz", x=np.zeros((25, 1), np.float32))
    args = P(work=tmp_path, compensation=None, flags="", at="crossing", samples=5, methods="auto", no_sweep=True)
    harden_runs.half_loss_study(tmp_path / "erm.onnx", tmp_path / "erm.onnx", "m", out, [0.0, 0.2, 0.4], "acc",
                                "t", None, "p", args)
    # the sigma chosen on the validation data; ERM measured on test, once more at the crossing alone
    assert swept == [("val.npz", [0.0, 0.2, 0.4]), ("test.npz", [0.0, 0.2, 0.4]), ("test.npz", [0.32])]
    saved = json.loads(out.read_text())
    assert saved["sigma"] == 0.32 and saved["erm_at_sigma"] == {"clean": 0.8, "mean": 0.41}
    assert set(saved["runs"]) == {"other", "auto"} and saved["runs"]["auto"]["sigma"] == 0.32


def test_harden_cli_summarizes_the_report(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from harden_runs import harden_cli
    from tests.helpers import teacher_files

    model, data = teacher_files(tmp_path, n=120)
    d = np.load(data)
    for name, part in (("train", slice(0, 80)), ("val", slice(80, 100)), ("test", slice(100, 120))):
        np.savez(tmp_path / f"{name}.npz", x=d["x"][part], y=d["y"][part])
    flags = "--train-sigma 0.4 --final-epochs 2 --blend 0.5 --samples 2 --validate-samples 2"
    summary = harden_cli(model, tmp_path, tmp_path / "test.npz", 0.5, "noise-injection", flags)
    assert summary["train_sigma"] == 0.4 and summary["final_epochs"] == 2 and summary["blend"] == 0.5
    assert Path(summary["out"]).exists() and summary["method"] == "noise-injection"
    # what the README and RESULTS tables read: the target, and which data signed off
    assert summary["sigma"] == 0.5 and summary["drift"] == "lognormal:0.5" and summary["after"]["samples"] == 2
    assert summary["signoff"] == "test" and summary["signoff_examples"] == 20
    # bench_defaults' path: no test data at all, the sign-off on the share of val.npz harden holds out
    held = harden_cli(model, tmp_path, None, 0.5, "noise-injection", flags, name="held")
    assert held["signoff"] == "holdout" and 0 < held["signoff_examples"] < 20


def test_sweep_each_keeps_two_models_whose_files_share_a_stem(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import onnx

    from harden_runs import sweep_each
    from tests.helpers import teacher_files, teacher_mlp

    model, data = teacher_files(tmp_path)
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / model.name
    onnx.save(teacher_mlp(seed=3), other)
    points = sweep_each({"teacher": model, "other": other}, data, [0.0, 0.5], samples=4)
    assert list(points) == ["teacher", "other"]
    assert points["teacher"][0].mean == 1.0 and points["other"][0].mean < 0.6


def test_seed_table_reads_each_run_against_erm_and_its_own_clean(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import tables

    def run(flags, seed, clean, mean):
        return {"flags": f"{flags} --seed {seed}", "seconds": 100 + seed, "before": {"clean": 0.8, "mean": 0.4},
                "after": {"clean": clean, "mean": mean}}

    runs = [run("--train-sigma 0.3", 0, 0.8, 0.6), run("--train-sigma 0.3", 2, 0.5, 0.4),
            run("--blend off", 1, 0.4, 0.6)]
    (tmp_path / "study.json").write_text(json.dumps({"runs": {str(i): r for i, r in enumerate(runs)}}))
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    lines = tables.seeds("study").splitlines()
    assert lines[0].count("seed ") == 3 and len(lines) == 4
    assert lines[2] == ("| `--train-sigma 0.3` | 0.800 / 0.600 |  | 0.500 / 0.400 | 0.500 | 62.5 (50.0-75.0) "
                        "| 77.5 (75.0-80.0) | 100-102 s |")
    assert lines[3] == "| `--blend off` |  | 0.400 / 0.600 |  | 0.600 | 75.0 (75.0) | 150.0 (150.0) | 101 s |"


def test_val_read_writes_the_runtime_read_beside_each_models_torch_objective(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import importlib.util
    import shutil

    import torch

    import ftcompile
    from ftcompile.export import save_onnx
    from ftcompile.frontend.torch_import import detector_to_onnx
    from tests.search.detectors import boxes_data, tiny

    spec = importlib.util.spec_from_file_location("val_read", ROOT / "examples" / "pennfudan_det" / "val_read.py")
    val_read = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(val_read)
    np.savez(tmp_path / "val.npz", **boxes_data(6, 1))
    save_onnx(detector_to_onnx(tiny(), torch.zeros(1, 3, 32, 32)), tmp_path / "detector.onnx")
    hardened = tmp_path / "detector--seed-0.auto.onnx"
    shutil.copy(tmp_path / "detector.onnx", hardened)
    hardened.with_suffix(".report.json").write_text(json.dumps({"torch_objective": {"before": 0.25, "after": 0.5},
                                                                  "config": {"samples": 20}}))
    calls, validate = [], ftcompile.validate

    def recording(model, data, **kwargs):
        calls.append((model.name, kwargs["targets"], kwargs["sigma"], kwargs["samples"]))
        return validate(model, data, **kwargs)

    monkeypatch.setattr(ftcompile, "validate", recording)
    out = tmp_path / "read.json"
    argv = ["val_read.py", "--work", str(tmp_path), "--samples", "2", "--sigma", "0.3", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv + ["--glob", "detector--*.onnx"])
    val_read.main()
    d = json.loads(out.read_text())
    model = d["models"]["detector--seed-0.auto"]
    assert model["torch_objective"] == 0.5 and model["erm_torch_objective"] == 0.25 and d["sigma"] == 0.3
    assert model["runtime"] == d["erm"]["runtime"]  # the same weights: the same runtime read
    # ERM read as the sign-off drifts and with no bias drifting; each hardened model as the sign-off drifts
    assert calls == [("detector.onnx", "params", 0.3, 2), ("detector.onnx", "crossbar", 0.3, 2),
                     ("detector--seed-0.auto.onnx", "params", 0.3, 2)]
    monkeypatch.setattr(sys, "argv", argv[:-1] + [str(tmp_path / "x.json"), "--glob", "nothing*.onnx"])
    with pytest.raises(SystemExit, match="no model"):
        val_read.main()
    assert not (tmp_path / "x.json").exists()


def test_bench_chip_times_the_full_preset_beside_lognormal_validate(tmp_path, monkeypatch):
    from tests.helpers import teacher_files

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from bench_chip import main

    model, data = teacher_files(tmp_path, n=60, sizes=(600, 16, 4))  # 600 inputs: two tiles
    out = tmp_path / "chip.json"
    main(["--model", str(model), "--npz", str(data), "--images", "50", "--samples", "3", "--chunk", "2",
          "--out", str(out)])
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"lognormal", "chip", "chip-quiet"} and set(res["ratio_to_lognormal"]) == {
        "chip", "chip-quiet"}
    chip, plain = res["runs"]["chip"], res["runs"]["lognormal"]
    assert chip["chip"] == "aihwkit-inference" and chip["drift"] == "pcm:1d,comp=global,per_channel=1"
    assert plain["chip"] is None and plain["drift"] == "lognormal:0.6" and chip["images"] == 50 == plain["images"]
    assert chip["samples"] == 3 and res["ratio_to_lognormal"]["chip"] == chip["seconds"] / plain["seconds"]


def test_save_run_keeps_the_runs_other_processes_wrote(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from harden_runs import save_run

    out = tmp_path / "recipe.json"
    save_run(out, ("lenet", "runs", "grid seed 0"), {"mean": 0.9})
    out.write_text(json.dumps({**json.loads(out.read_text()), "unet": {"runs": {"bo seed 0": {"mean": 0.5}}}}))
    save_run(out, ("lenet", "runs", "bo seed 0"), {"mean": 0.8})
    lenet = {"bo seed 0": {"mean": 0.8}, "grid seed 0": {"mean": 0.9}}
    assert json.loads(out.read_text()) == {"lenet": {"runs": lenet}, "unet": {"runs": {"bo seed 0": {"mean": 0.5}}}}


def test_chip_macs_count_each_layer_kind_and_the_presets_extra_products(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bench_chip import RUNS, macs_per_image

    rng = np.random.default_rng(0)
    w = lambda name, *shape: numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)  # noqa: E731
    conv = helper.make_node("Conv", ["x", "w1"], ["h"], pads=[1, 1, 1, 1])   # 3 -> 4 channels, 3x3, 8x8 kept
    relu = helper.make_node("Relu", ["h"], ["r"])
    conv2 = helper.make_node("Conv", ["r", "w2"], ["y"])                      # 4 -> 2 channels, 1x1
    plain = helper.make_graph([conv, relu, conv2], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                          ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 8, 8])],
                              [w("w1", 4, 3, 3, 3), w("w2", 2, 4, 1, 1)])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(plain, opset_imports=[helper.make_opsetid("", 17)]), path)
    data = (rng.normal(size=(16, 3, 8, 8)).astype(np.float32), rng.integers(0, 2, 16))
    expected = 4 * 64 * 27 + 2 * 64 * 4
    assert macs_per_image(path, data, *RUNS["lognormal"]) == expected
    assert macs_per_image(path, data, *RUNS["chip-quiet"]) == expected
    # the full preset: the read, the IR-drop current and its correction, and the read noise's variance
    assert macs_per_image(path, data, *RUNS["chip"]) == 4 * expected
    up = helper.make_graph([helper.make_node("ConvTranspose", ["x", "wt"], ["y"], strides=[2, 2])], "t",
                           [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 16, 16])],
                           [w("wt", 3, 5, 2, 2)])
    onnx.save(helper.make_model(up, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert macs_per_image(path, data, *RUNS["lognormal"]) == 3 * 64 * 5 * 4  # each input meets 5 x 2x2 weights
