"""A chip in torch training: the hooked module computes the chip's twin tile by tile, the search's objective reads
the runtime's own draws (weights, per-tile noise, compensation factors), input ranges learn with aihwkit's gradient
and are stored in the hardened model, and the weight clip and remap of noise-injection training."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

import onnxruntime as ort  # noqa: E402

import ftcompile  # noqa: E402
from ftcompile.errors import ConfigError  # noqa: E402
from ftcompile.frontend import import_onnx  # noqa: E402
from ftcompile.passes.chip_hooks import RANGE_PARAM, _InputRange, attach_chip  # noqa: E402
from ftcompile.passes.chip_twin import calibrate_chip, chip_layers, insert_chip  # noqa: E402
from ftcompile.runtime.devices.chip import parse_chip  # noqa: E402
from ftcompile.runtime.devices.tiles import ChipDrift  # noqa: E402
from ftcompile.search.clipping import WeightClip, parse_clip, weight_clip  # noqa: E402
from ftcompile.search.drifting import onnx_drift_keys  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402
from ftcompile.search.objective import DriftObjective  # noqa: E402
from tests.helpers import teacher_files  # noqa: E402
from tests.runtime.test_chip import QUIET, conv_net, wide_gemm  # noqa: E402


def _twin_output(model, ranges, chip, x):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    twin = insert_chip(model, ranges, chip)
    session = ort.InferenceSession(twin.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_the_hooked_module_computes_the_chip_s_twin():
    model = conv_net()
    x = np.random.default_rng(0).standard_normal((32, 3, 8, 8)).astype(np.float32)
    imported = import_onnx(model)
    digital = imported.module(torch.from_numpy(x)).detach().numpy()
    for spec in (QUIET, QUIET + ",ir_drop=3"):  # tiles, DAC, IR drop (and its scale), ADC: all but the noise
        chip = parse_chip(spec)
        ranges = calibrate_chip(model, [{"x": x}], chip)
        hooks = attach_chip(imported.module, imported.sources, imported.onnx_model, ranges, chip)
        assert len(hooks.forwards) == 3 and not any(RANGE_PARAM in n for n, _ in imported.module.named_parameters())
        with torch.no_grad():
            got = imported.module(torch.from_numpy(x)).numpy()
        want = _twin_output(model, ranges, chip, x)
        assert np.isclose(got, want, atol=1e-4).mean() > 0.99 and not np.allclose(got, digital, atol=1e-2)
        hooks.remove()
        with torch.no_grad():
            np.testing.assert_allclose(imported.module(torch.from_numpy(x)).numpy(), digital, atol=1e-5)


def test_the_objective_scores_the_runtime_s_draws_on_the_full_preset(tmp_path):
    model_path, data = teacher_files(tmp_path, n=150, sizes=(600, 24, 4))
    model = onnx.load(model_path)
    d = np.load(data)
    x, y = d["x"], d["y"]
    chip = parse_chip("aihwkit-inference")
    calibration = ftcompile.api.calibrate_on_data(model_path, data, chip=chip)
    drift = ChipDrift(chip.device(3.15e7), tuple(chip_layers(model, chip)))
    imported = import_onnx(model)
    hooks = attach_chip(imported.module, imported.sources, imported.onnx_model, calibration.ranges, chip, drift=drift)
    twin = insert_chip(imported.onnx_model, calibration.ranges, chip, expose_weights=False)
    keys = onnx_drift_keys(imported, targets="crossbar", bias=False, runtime=twin)
    assert sorted(k.name for k in keys.values()) == ["fc0.weight", "fc1.weight"]
    obj = DriftObjective(imported.module, torch.from_numpy(x), torch.from_numpy(y), drift=drift, samples=4, seed=7,
                         keys=keys, converters=hooks)(imported.module)
    run = ftcompile.validate(model_path, (x, y), chip=chip, drift="pcm:1y", samples=4, seed=7, calibration=calibration)
    # the same weights, noise and compensation factors: at most one prediction in 150 flips on float rounding
    assert np.abs(np.array(obj.values) - np.array(run.values)).max() <= 1 / 150
    assert len(set(run.values)) > 1  # the samples differ


def test_input_ranges_take_aihwkit_s_gradient():
    chip = parse_chip("aihwkit-inference")
    x = torch.tensor([-4.0, -1.0, 0.5, 2.0, 3.5, 5.0])
    g = torch.tensor([0.3, -0.2, 0.1, 0.4, -0.5, 0.7])
    r = torch.tensor([3.0], requires_grad=True)
    xr = x.clone().requires_grad_(True)
    out = _InputRange.apply(xr, r, chip)
    (out * g).sum().backward()
    assert out.tolist() == [-3.0, -1.0, 0.5, 2.0, 3.0, 3.0]
    # aihwkit's InputRangeForward.backward by hand: clipped-above gradients clamped to <= 0, clipped-below to >= 0,
    # times r (gradient_relative) and gradient_scale; no decay term: only 4 of 6 inputs (< 95%) are inside
    want = (min(-0.5, 0) + min(0.7, 0)) - max(0.3, 0)
    assert r.grad.item() == pytest.approx(want * 3.0)
    assert xr.grad.tolist() == pytest.approx([0.0, -0.2, 0.1, 0.4, 0.0, 0.0])
    r2 = torch.tensor([10.0], requires_grad=True)
    (_InputRange.apply(x, r2, chip) * g).sum().backward()
    assert r2.grad.item() == pytest.approx(0.001 * 10.0)  # nothing clips: the decay shrinks the range


def test_the_reading_s_rest_reaches_the_input_range_through_the_output_scaling():
    """Inside the range (and without the decay) only the non-ideal rest of the reading reaches ``r``, as aihwkit's
    output scaling ``r s`` passes it: ``d out / d r = rest / r``; the rest (here IR drop) read off the ONNX twin."""
    model, w, b = wide_gemm(300, 8)  # one tile
    chip = parse_chip(QUIET + ",out_res=0,decay=0")  # no ADC rounding: the rest is the IR drop alone
    x = np.random.default_rng(0).uniform(-1, 1, (64, 300)).astype(np.float32)  # all inside r = 3 std = 1.73
    ranges = calibrate_chip(model, [{"x": x}], chip)
    r = ranges["fc#0.0:in"][1]
    imported = import_onnx(model)
    attach_chip(imported.module, imported.sources, imported.onnx_model, ranges, chip, learn=True)
    (param,) = [p for n, p in imported.module.named_parameters() if RANGE_PARAM in n]
    g = np.random.default_rng(1).standard_normal((64, 8))
    (imported.module(torch.from_numpy(x)) * torch.from_numpy(g).float()).sum().backward()
    step = 2 * r / chip.inp_res
    ideal = (np.round(x / step) * step).astype(np.float64) @ w.T.astype(np.float64)
    rest = _twin_output(model, ranges, chip, x) - b - ideal
    assert np.abs(rest).max() > 1e-3  # the IR drop moves the reading
    assert param.grad.item() == pytest.approx((g * rest).sum() / r, rel=1e-2)


def test_harden_learns_the_input_ranges_and_stores_them(tmp_path):
    model, data = teacher_files(tmp_path, n=240, sizes=(600, 24, 4))
    cfg = HardenConfig(chip="aihwkit-inference", drift="pcm:1d", method="noise-injection", final_epochs=2, samples=2,
                       blend="off", lr=0.01)
    assert (cfg.weight_clip, cfg.weight_remap, cfg.targets, cfg.sigma) == ("fixed:1", "channel", "crossbar", None)
    r = ftcompile.harden(model, data, data, out=tmp_path / "h.onnx", config=cfg, validate_samples=2, plot=False)
    twin = json.loads({p.key: p.value for p in onnx.load(tmp_path / "h.onnx").metadata_props}["ftcompile.analog_twin"])
    initial = ftcompile.api.calibrate_on_data(model, data, role="training", chip=parse_chip("aihwkit-inference"))
    assert twin["chip"] == "aihwkit-inference" and set(twin["ranges"]) == set(initial.ranges)
    assert twin["ranges"] != {k: list(v) for k, v in initial.ranges.items()}  # trained, not the initial ones
    assert twin["calibrated_on"].endswith("then learned in hardware-aware training")
    assert r.after.calibration == f"calibrated on {twin['calibrated_on']}"  # the sign-off read the learned ranges
    assert r.after.converters.startswith("chip aihwkit-inference") and r.before.converters == r.after.converters
    later = ftcompile.validate(tmp_path / "h.onnx", data, chip="aihwkit-inference", drift="pcm:1d", samples=2)
    assert later.calibration.startswith("stored in the model") and "learned" in later.calibration
    assert not any("ftcompile_tile" in n.name for n in onnx.load(tmp_path / "h.onnx").graph.node)  # digital model
    with pytest.raises(ConfigError, match="brings its own converters"):
        HardenConfig(chip="aihwkit-inference", drift="pcm:1d", dac_bits=8)


def _linear(w):
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
    lin.weight.data = torch.tensor(w, dtype=torch.float32)
    return torch.nn.Sequential(lin)


def test_weight_clip_and_remap_follow_aihwkit_s_rules():
    w = np.array([[1.0, -0.5, 0.2, 0.1], [0.3, 0.2, -0.1, 0.05]])
    assert parse_clip("gaussian:2.5") == ("gaussian", 2.5) and parse_clip(None) == ("none", 0.0)
    with pytest.raises(ConfigError, match="--weight-clip 'fixed:-1'"):
        parse_clip("fixed:-1")
    # fixed:1 with a channel remap: no weight grows past its channel's largest before the step
    net = _linear(w)
    clip = weight_clip("fixed:1", "channel", net, None)
    clip.start(net)
    with torch.no_grad():
        net[0].weight += torch.tensor([[0.5, 0.9, 0.0, 0.0], [0.0, 0.4, 0.0, 0.0]])
    clip.step(net)
    assert net[0].weight.reshape(-1).tolist() == pytest.approx([1.0, 0.4, 0.2, 0.1, 0.3, 0.3, -0.1, 0.05])
    with torch.no_grad():  # the references follow the weights (remap): channel 1 shrinks to a largest of 0.15
        net[0].weight[1] *= 0.5
    clip.step(net)
    with torch.no_grad():
        net[0].weight[1, 2] = -0.35
    clip.step(net)
    assert net[0].weight[1, 2].item() == pytest.approx(-0.15)
    # layer remap: the tensor's max; no remap: the source's channel max, fixed
    net = _linear(w)
    clip = WeightClip("fixed", 1.0, "layer", ("0.weight",))
    clip.start(net)
    with torch.no_grad():
        net[0].weight[1, 0] = 0.9
    clip.step(net)
    assert net[0].weight[1, 0].item() == pytest.approx(0.9)  # under the layer's max of 1
    net = _linear(w)
    clip = WeightClip("fixed", 1.0, "none", ("0.weight",))
    clip.start(net)
    with torch.no_grad():
        net[0].weight.mul_(0.5)
        net[0].weight[1, 0] = 0.8
    clip.step(net)
    clip.step(net)
    assert net[0].weight[1, 0].item() == pytest.approx(0.3)  # the source's channel max, not today's 0.8
    net = _linear(np.random.default_rng(0).standard_normal((8, 50)))
    clip = weight_clip("gaussian:2", "none", net, None)
    clip.start(net)
    std = net[0].weight.std().item()
    clip.step(net)
    assert net[0].weight.abs().max().item() == pytest.approx(2 * std)  # LAYER_GAUSSIAN: at 2 std of the layer


def test_harden_clips_the_crossbar_weights_it_trains(tmp_path):
    model, data = teacher_files(tmp_path, n=200)
    cfg = HardenConfig(sigma=0.3, method="noise-injection", final_epochs=2, samples=2, blend="off",
                       weight_clip="gaussian:1.5")
    ftcompile.harden(model, data, data, out=tmp_path / "c.onnx", config=cfg, validate_samples=2, plot=False)
    # clipped at 1.5 std after every step (the clip itself lowers the std a little); the source reached ~3 std
    after = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(tmp_path / "c.onnx").graph.initializer}
    for before in onnx.load(model).graph.initializer:
        if before.name.endswith("weight"):
            w0, w1 = onnx.numpy_helper.to_array(before), after[before.name]
            assert np.abs(w1).max() / w1.std() < 1.6 < 2.5 < np.abs(w0).max() / w0.std()
