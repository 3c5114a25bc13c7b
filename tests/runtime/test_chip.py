"""A chip a user can name: tiles (split, twin, per-tile converters, noise streams and compensation), the
aihwkit-inference preset field by field, the --chip option of every runtime command, and the programming file."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

import ftcompile
from ftcompile.cli import app
from ftcompile.errors import ConfigError, OutputError
from ftcompile.passes.chip_twin import calibrate_chip, chip_layers, insert_chip, noise_streams
from ftcompile.passes.converters import NOISE_PREFIX
from ftcompile.programming import SCHEMA, read_weights
from ftcompile.runtime.devices.chip import PRESETS, Chip, channel_split, parse_chip, split_sizes
from ftcompile.runtime.devices.models import PCMDrift
from ftcompile.runtime.devices.tiles import COMP_PREFIX, ChipDrift
from ftcompile.runtime.drift import draw_sample
from ftcompile.runtime.session import DriftSession

QUIET = "aihwkit-inference,out_noise=0,w_noise=0"  # the preset's deterministic part


def _run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def wide_gemm(n_in: int = 1100, n_out: int = 10, seed: int = 0) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """One Gemm (transB) of ``n_in`` inputs with a bias; its weight and bias."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n_out, n_in)) * 0.05).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, w, b


def conv_net(seed: int = 0) -> onnx.ModelProto:
    """Conv 3->64 (27 rows), Conv 64->16 3x3 with bias (576 rows: two tiles), Relu, Flatten, MatMul 1024->5 (stored
    in x out, two tiles)."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((64, 3, 3, 3)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((16, 64, 3, 3)) * 0.05).astype(np.float32)
    b2 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w3 = (rng.standard_normal((16 * 8 * 8, 5)) * 0.05).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h1"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["h2"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h2"], ["r2"]), helper.make_node("Flatten", ["r2"], ["f"]),
             helper.make_node("MatMul", ["f", "w3"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                              [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"),
                                                                           (w3, "w3"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _hand_tile(x, w, r, chip, rows):
    """One tile by aihwkit's forward in its normalized units (x by r, each column by its max |w|), by hand:
    DAC, product, IR drop, ADC, back to the layer's units. ``x``: n x rows, ``w``: cols x rows."""
    s = np.abs(w).max(axis=1)
    xn = np.clip(x, -r, r) / r
    xn = np.round(xn / (2 / chip.inp_res)) * (2 / chip.inp_res)
    wn = w / s[:, None]
    y = xn @ wn.T
    a = rows / chip.ir_drop_g_ratio * (np.abs(xn) @ np.abs(wn).T)
    c = a * (a * (0.05 * a - 0.2) + 0.5)
    f = 1 - (1 - np.arange(rows) / rows) ** 2
    y = y - chip.ir_drop * c * ((xn * f) @ wn.T)
    step = 2 * chip.out_bound / chip.out_res
    y = np.clip(np.round(y / step) * step, -chip.out_bound, chip.out_bound)
    return y * r * s


def test_a_layer_splits_over_tiles_as_aihwkit_splits_it_kernel_windows_whole():
    assert split_sizes(1100, 512) == (367, 367, 366)  # aihwkit's TileModuleArray.get_split_sizes
    assert split_sizes(512, 512) == (512,) and split_sizes(1100, 0) == (1100,)
    assert channel_split(64, 9, 512) == (32, 32)       # 576 rows: 288 + 288, as aihwkit cuts them
    assert channel_split(113, 9, 512) == (38, 38, 37)  # 1,017 rows: 2 tiles would need 57 channels = 513 rows
    assert channel_split(1100, 1, 512) == (367, 367, 366)
    with pytest.raises(ConfigError, match="kernel window of 49 rows does not fit a tile of 32 rows"):
        channel_split(4, 49, 32)
    model, _, _ = wide_gemm()
    (layer,) = chip_layers(model, PRESETS["aihwkit-inference"])
    assert (layer.rows, layer.cols, [t.key for t in layer.tiles]) == ((367, 367, 366), (10,), ["fc#0.0", "fc#1.0",
                                                                                               "fc#2.0"])
    (layer,) = chip_layers(model, parse_chip("aihwkit-inference,tile=512x4"))
    assert layer.cols == (4, 3, 3) and len(layer.tiles) == 9
    c1, c2, fc = chip_layers(conv_net(), PRESETS["aihwkit-inference"])
    assert (c1.rows, c2.rows, c2.kernel, fc.rows) == ((3,), (32, 32), 9, (512, 512))
    assert [t.rows for t in c2.tiles] == [288, 288]


def test_the_twin_shows_the_split_and_equals_a_hand_computed_tiled_layer():
    model, w, b = wide_gemm()
    chip = parse_chip(QUIET)
    x = np.random.default_rng(1).standard_normal((64, 1100)).astype(np.float32)
    ranges = calibrate_chip(model, [{"x": x}], chip)
    twin = insert_chip(model, ranges, chip)
    ops = [n.op_type for n in twin.graph.node]
    tiled = [n for n in twin.graph.node if n.name.startswith("ftcompile_tile_weight")]
    assert len(tiled) == 3 and ops.count("Sum") == 1 and ops.count("Gemm") == 3 * 2  # [W; W f] stacked, current
    comps = [i.name for i in twin.graph.input if i.name.startswith(COMP_PREFIX)]
    assert comps == [COMP_PREFIX + f"fc#{t}.0" for t in range(3)]
    got = _run(twin, {"x": x})

    def by_hand(chip):
        want = b.astype(np.float64).copy()
        for (c0, c1), key in zip(((0, 367), (367, 734), (734, 1100)), ("fc#0.0", "fc#1.0", "fc#2.0")):
            want = want + _hand_tile(x[:, c0:c1].astype(np.float64), w[:, c0:c1].astype(np.float64),
                                     ranges[key + ":in"][1], chip, c1 - c0)
        return want

    want = by_hand(chip)
    # the same formulas; float32 against float64 may move a value across an ADC step rarely
    assert np.isclose(got, want, atol=1e-4).mean() > 0.99
    scaled = parse_chip(QUIET + ",ir_drop=3")  # ir_drop scales the drop (aihwkit's applyIrDrop)
    got3 = _run(insert_chip(model, ranges, scaled), {"x": x})
    assert np.isclose(got3, by_hand(scaled), atol=1e-4).mean() > 0.99 and np.abs(got3 - got).max() > 1e-3
    assert not np.allclose(got, x @ w.T + b, atol=1e-2)  # the converters did something
    whole = _hand_tile(x.astype(np.float64), w.astype(np.float64), 3 * x.std(), chip, 1100) + b
    assert np.abs(whole - want).max() > 1e-2  # one 1,100-row tile would read differently


def test_a_convolution_is_split_along_its_input_channels():
    model = conv_net()
    chip = parse_chip(QUIET + ",ir_drop=0")
    x = np.random.default_rng(2).standard_normal((16, 3, 8, 8)).astype(np.float32)
    ranges = calibrate_chip(model, [{"x": x}], chip)
    twin = insert_chip(model, ranges, chip)
    slices = [n for n in twin.graph.node if n.op_type == "Slice" and n.input[0] == "r1"]
    assert len(slices) == 2  # the 64 input channels of c2 in two tiles of 32
    # each tile's input range is 3 std of its own channels (aihwkit's init_std_alpha * std)
    r1 = np.maximum(_run(model_with_output(model, "r1"), {"x": x}), 0)
    assert ranges["c2#0.0:in"][1] == pytest.approx(3 * r1[:, :32].std(), rel=1e-5)
    assert ranges["c2#1.0:in"][1] == pytest.approx(3 * r1[:, 32:].std(), rel=1e-5)
    # the twin's c2 equals the sum of two tiled convolutions computed by hand (im2col)
    got_h2 = _run(model_with_output(twin, "h2"), {"x": x})
    r1q = _run(model_with_output(twin, "r1"), {"x": x})
    w2 = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w2")).astype(np.float64)
    b2 = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "b2"))
    patches = _im2col(r1q.astype(np.float64))  # (n*64 positions) x (64 channels * 9)
    want = np.zeros((len(patches), 16))
    for t, (c0, c1) in enumerate(((0, 32), (32, 64))):
        want += _hand_tile(patches[:, c0 * 9:c1 * 9], w2[:, c0:c1].reshape(16, -1), ranges[f"c2#{t}.0:in"][1],
                           chip, 288)
    want = (want + b2).reshape(16, 8, 8, 16).transpose(0, 3, 1, 2)
    assert np.isclose(got_h2, want, atol=1e-4).mean() > 0.99


def model_with_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """``model`` with ``name`` as its only output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.output[:]
    out.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    return out


def _im2col(x: np.ndarray) -> np.ndarray:
    """3x3 patches with padding 1, rows ordered (channel, ky, kx) as aihwkit unfolds them."""
    n, c, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([padded[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=2)  # n c 9 h w
    return cols.reshape(n, c * 9, h * w).transpose(0, 2, 1).reshape(n * h * w, c * 9)


def test_output_and_read_noise_have_the_preset_spread_per_tile_column():
    model, w, _ = wide_gemm(600, 8)
    x = np.random.default_rng(3).standard_normal((4000, 600)).astype(np.float32)
    base = "aihwkit-inference,ir_drop=0,out_res=0,inp_res=0"
    quiet_chip, out_chip, w_chip = (parse_chip(f"{base},out_noise={o},w_noise={v}") for o, v in
                                    ((0, 0), (0.04, 0), (0, 0.0175)))
    ranges = calibrate_chip(model, [{"x": x}], quiet_chip)
    quiet = _run(insert_chip(model, ranges, quiet_chip), {"x": x})
    s = np.abs(w[:, :300]).max(1), np.abs(w[:, 300:]).max(1)
    r = ranges["fc#0.0:in"][1], ranges["fc#1.0:in"][1]
    loud = _run(insert_chip(model, ranges, out_chip), {"x": x}) - quiet
    want = np.sqrt((0.04 * r[0] * s[0]) ** 2 + (0.04 * r[1] * s[1]) ** 2)  # two tiles, independent streams
    assert np.allclose(loud.std(0) / want, 1, atol=4 / np.sqrt(2 * 4000))
    read = _run(insert_chip(model, ranges, w_chip), {"x": x}) - quiet
    xc = np.clip(x, -r[0], r[0]), np.clip(x, -r[1], r[1])
    var = sum(0.0175 ** 2 * s[t][None] * (xc[t][:, 300 * t:300 * (t + 1)] ** 2 @ np.abs(w[:, 300 * t:300 * (t + 1)]).T)
              for t in range(2))
    assert np.allclose((read / np.sqrt(var)).std(0), 1, atol=4 / np.sqrt(2 * 4000))
    streams = noise_streams(chip_layers(model, PRESETS["aihwkit-inference"]), PRESETS["aihwkit-inference"])
    assert sorted(k[len(NOISE_PREFIX):] for k in streams) == ["fc#0.0", "fc#1.0"]  # one stream per tile


def _teacher(tmp_path, n_in=600):
    from tests.helpers import teacher_files

    return teacher_files(tmp_path, n=200, sizes=(n_in, 32, 4))


def test_validate_reads_each_tile_s_keyed_noise_whatever_the_batch(tmp_path):
    model, data = _teacher(tmp_path)
    kw = dict(chip="aihwkit-inference", drift="pcm:1d", samples=3, seed=4)
    one = ftcompile.validate(model, data, batch_size=1024, **kw)
    small = ftcompile.validate(model, data, batch_size=7, **kw)
    assert one.values == small.values and one.clean == small.clean
    assert one.converters.startswith("chip aihwkit-inference: tiles of 512 rows")
    assert one.drift == "pcm:1d,comp=global,per_channel=1" and one.targets == "crossbar"
    other = ftcompile.validate(model, data, batch_size=1024, **{**kw, "seed": 5})
    assert other.values != one.values
    columns = dict(kw, chip="aihwkit-inference,tile=512x20")  # 32 outputs: column tiles of 16, each its own stream
    wide, narrow = (ftcompile.validate(model, data, batch_size=b, **columns) for b in (1024, 7))
    assert wide.values == narrow.values and wide.values != one.values


def _two_tile_session(tmp_path, spec="aihwkit-inference"):
    model, data = _teacher(tmp_path)
    return DriftSession(model, targets="crossbar", converters=parse_chip(spec),
                        calibration=ftcompile.api.calibrate_on_data(model, data, chip=parse_chip(spec))), model


def test_each_tile_drifts_on_its_own_stream_scales_and_compensation(tmp_path):
    session, _ = _two_tile_session(tmp_path)
    w = session.weights["fc0.weight"]  # 32 x 600: two tiles of 300 rows
    layer = session.chip_layers[0]
    assert layer.rows == (300, 300)
    plain = PCMDrift(3.15e7, per_channel=True)
    # a layer on one tile draws what the untiled runtime draws; tile t draws from block t of the tensor's stream
    one = draw_sample(ChipDrift(plain, tuple(session.chip_layers[1:])), session.weights, 9, 2)
    assert np.array_equal(one["fc1.weight"], draw_sample(plain, session.weights, 9, 2)["fc1.weight"])
    # each tile its own stream: two tiles holding the same weights read different devices
    twin = dict(session.weights, **{"fc0.weight": np.concatenate([w[:, :300], w[:, :300]], axis=1)})
    d = ChipDrift(plain, (layer,)).draw_sample(twin, 9, 2)["fc0.weight"]
    assert not np.allclose(d[:, :300], d[:, 300:])
    # per-tile column scales: a tile of weights 100x smaller keeps its own relative precision
    small = dict(session.weights, **{"fc0.weight": np.concatenate([w[:, :300], w[:, 300:] / 100], axis=1)})
    tiled = ChipDrift(PCMDrift(1.0, per_channel=True), (layer,))
    errors = []
    for k in range(20):
        d = tiled.draw_sample(small, 0, k)["fc0.weight"]
        errors.append([np.abs(d[:, :300] - small["fc0.weight"][:, :300]).mean() / np.abs(w[:, :300]).mean(),
                       np.abs(d[:, 300:] - small["fc0.weight"][:, 300:]).mean() / np.abs(w[:, 300:] / 100).mean()])
    rel = np.array(errors).mean(0)
    assert rel[1] / rel[0] == pytest.approx(1, abs=0.15)  # one mapping for both tiles would make it ~100x
    # compensation: a factor per tile, not folded into the weights (the chip applies it after the ADC)
    comp = ChipDrift(PCMDrift(3.15e7, comp="global", per_channel=True), (layer,))
    drawn = comp.draw_sample(session.weights, 1, 0)
    raw = ChipDrift(PCMDrift(3.15e7, per_channel=True), (layer,)).draw_sample(session.weights, 1, 0)
    assert np.array_equal(drawn["fc0.weight"], raw["fc0.weight"])  # the same devices, uncompensated
    f0, f1 = drawn[COMP_PREFIX + "fc0#0.0"], drawn[COMP_PREFIX + "fc0#1.0"]
    assert f0.shape == (32,) and np.all(f0 == f0[0]) and 1.5 < f0[0] < 3 and f0[0] != f1[0]  # global: one per tile
    assert comp.compensation(1, 0)["fc0#1.0"] is not None


def test_the_compensation_factor_scales_the_tile_after_its_adc():
    model, w, b = wide_gemm(600, 8)
    chip = parse_chip(QUIET)
    x = np.random.default_rng(0).standard_normal((200, 600)).astype(np.float32)
    twin = insert_chip(model, calibrate_chip(model, [{"x": x}], chip), chip)
    base = _run(twin, {"x": x}) - b
    half = {COMP_PREFIX + "fc#0.0": np.full(8, 0.5, np.float32), COMP_PREFIX + "fc#1.0": np.full(8, 0.5, np.float32)}
    scaled = _run(twin, {"x": x, **half}) - b
    np.testing.assert_allclose(scaled, 0.5 * base, rtol=1e-5, atol=1e-6)  # the ADC's reading, then the factor
    folded = _run(twin, {"x": x, "w": w * 0.5}) - b  # the factor in the weights: the ADC reads another signal
    assert np.abs(folded - 0.5 * base).max() > 1e-3


def test_the_preset_equals_aihwkit_s_standard_inference_setting():
    """aihwkit 1.2.0, simulator/presets/inference.py (StandardHWATrainingPreset, lines 76-139) and the defaults it
    keeps (simulator/parameters/io.py IOParameters; inference/noise/pcm.py PCMLikeNoiseModel; inference/converter/
    conductance.py SinglePairConductanceConverter); benchmarks/chip_vs_aihwkit.py reads them out of aihwkit itself."""
    aihwkit = {"max_input_size": 512, "max_output_size": 0, "weight_scaling_omega": 1.0,
               "weight_scaling_columnwise": True, "digital_bias": True, "learn_out_scaling": True,
               "out_scaling_columnwise": True, "inp_bound": 1.0, "inp_res": 254, "out_bound": 10.0, "out_res": 254,
               "out_noise": 0.04, "w_noise": 0.0175, "w_noise_type": "pcm_read", "ir_drop": 1.0,
               "ir_drop_g_ratio": 1 / 0.35 / 5e-6, "bound_management": "none", "noise_management": "constant",
               "nm_thres": 1.0, "input_range": True, "learn_input_range": True, "init_value": 3.0,
               "init_from_data": 100, "init_std_alpha": 3.0, "decay": 0.001, "input_min_percentage": 0.95,
               "manage_output_clipping": False, "output_min_percentage": 0.95, "gradient_scale": 1.0,
               "gradient_relative": True, "clip_type": "fixed", "clip_fixed_value": 1.0, "clip_sigma": 2.5,
               "remap_type": "channel", "remapped_wmax": 1.0, "noise_model": "pcm", "g_max": 25.0,
               "prog_noise_scale": 1.0, "read_noise_scale": 1.0, "drift_scale": 1.0, "drift_compensation": "global"}
    chip = PRESETS["aihwkit-inference"]
    fields = {k: v for k, v in chip.to_dict().items() if k not in ("name", "t")}
    assert fields == aihwkit
    assert chip == parse_chip("aihwkit-inference") and chip.spec() == "aihwkit-inference"
    device = chip.device(86400.0)
    assert device.spec() == "pcm:1d,comp=global,per_channel=1" and device.g_max == 25.0


def test_chip_specs_times_and_errors():
    chip = parse_chip("aihwkit-inference,tile=256x128,out_noise=0,t=1y,ir_drop=0")
    assert (chip.max_input_size, chip.max_output_size, chip.out_noise, chip.t) == (256, 128, 0.0, 365 * 86400.0)
    assert parse_chip(chip.spec()) == chip
    assert chip.drift(None).t == 365 * 86400.0 and chip.drift("pcm:1h").t == 3600.0
    assert chip.drift("pcm:1h,comp=none").comp == "none"  # a spec with keywords is taken as written
    assert chip.drift("lognormal:0.3").spec() == "lognormal:0.3"
    for bad, match in (("nosuch", "unknown; use aihwkit-inference"), ("aihwkit-inference,foo=1", "unknown field 'foo'"),
                       ("aihwkit-inference,tile=x", "must be a whole number"), ("tile=3", "start with a preset"),
                       ("aihwkit-inference,tile=3.7", "must be a whole number"),
                       ("aihwkit-inference,bound_management=iterative", "bound_management must be none"),
                       ("aihwkit-inference,w_noise_type=additive", "w_noise_type must be one of")):
        with pytest.raises(ConfigError, match=match):
            parse_chip(bad)
    with pytest.raises(ConfigError, match="give the time since programming"):
        Chip().drift(None)
    with pytest.raises(ConfigError, match="brings its own converters"):
        ftcompile.api.resolve_chip("aihwkit-inference", "pcm:1d", None, converters=True)
    with pytest.raises(ConfigError, match="--sigma 0.3 with --chip"):
        ftcompile.api.resolve_chip("aihwkit-inference", None, 0.3)


def test_every_runtime_command_takes_the_chip(tmp_path):
    model, data = _teacher(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(model), "--data", str(data), "--chip", "aihwkit-inference", "--drift",
                            "pcm:1y", "--samples", "2", "--report", str(tmp_path / "v.json")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["converters"].startswith("chip aihwkit-inference") and "measured data" in report["calibration"]
    r = runner.invoke(app, ["validate", str(model), "--data", str(data), "--chip", "aihwkit-inference"])
    assert r.exit_code == 2 and "give the time since programming" in r.output
    r = runner.invoke(app, ["gate", str(model), "--data", str(data), "--chip", "aihwkit-inference,t=1d",
                            "--min-accuracy", "0.1", "--samples", "2", "--out-dir", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["sweep", str(model), "--data", str(data), "--chip", "aihwkit-inference", "--times",
                            "1s,1y", "--samples", "2", "--json"])
    assert r.exit_code == 0, r.output
    sweep = json.loads(r.output)
    assert sweep["axis"] == "t" and [p["x"] for p in sweep["curves"]["model"]] == [1.0, 365 * 86400.0]
    assert sweep["drift"] == "pcm:1s,comp=global,per_channel=1"  # the chip's device, swept over time
    r = runner.invoke(app, ["export-twin", str(model), "-o", str(tmp_path / "twin.onnx"), "--chip",
                            "aihwkit-inference", "--calibrate-on", str(data)])
    assert r.exit_code == 0 and "3 tiles of chip aihwkit-inference" in r.output, r.output
    twin = onnx.load(tmp_path / "twin.onnx")
    x = np.load(data)["x"][:5]
    assert _run(twin, {"x": x}).shape == (5, 4)  # stand-alone: its noise drawn in the graph, factors default 1
    assert json.loads({p.key: p.value for p in twin.metadata_props}["ftcompile.analog_twin"])["chip"] == \
        "aihwkit-inference"


def test_the_programming_file_round_trips_to_the_weights(tmp_path):
    model_path = tmp_path / "conv.onnx"
    onnx.save(conv_net(), model_path)
    x = np.random.default_rng(5).standard_normal((20, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=x, y=np.zeros(20, np.int64))
    out = tmp_path / "program"
    r = CliRunner().invoke(app, ["export-program", str(model_path), "--chip", "aihwkit-inference", "-o", str(out),
                                 "--calibrate-on", str(tmp_path / "cal.npz")])
    assert r.exit_code == 0 and "3 layers on 5 tiles" in r.output, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["schema"] == SCHEMA and manifest["model_sha256"] == ftcompile.api._sha(model_path)
    inits = {i.name: numpy_helper.to_array(i) for i in conv_net().graph.initializer}
    rebuilt = read_weights(out)
    assert set(rebuilt) == {"w1", "w2", "w3"}
    for name, w in rebuilt.items():
        np.testing.assert_allclose(w, inits[name], rtol=1e-6, atol=1e-7)
    c2 = manifest["layers"][1]
    assert [t["input_channels"] for t in c2["tiles"]] == [[0, 32], [32, 64]] and c2["kernel"] == [3, 3]
    from ftcompile.fileio import sha256_file

    with np.load(out / c2["tiles"][1]["file"]) as f:
        assert sha256_file(out / c2["tiles"][1]["file"]) == c2["tiles"][1]["sha256"]
        g_plus, g_minus, s = f["g_plus"], f["g_minus"], f["column_scale"]
        assert g_plus.shape == (16, 288) and g_plus.min() >= 0 and g_plus.max() <= 25.0 + 1e-4
        assert np.all((g_plus == 0) | (g_minus == 0))  # one device of a pair holds the weight
        assert np.allclose(np.maximum(g_plus, g_minus).max(1), 25.0)  # each column's largest |w| at g_max
        np.testing.assert_allclose(f["compensation_reference"], [np.abs(g_plus - g_minus).mean()], rtol=1e-5)
        r = float(f["dac_range"][1])
        np.testing.assert_allclose(f["adc_bound"], 10 * r * s, rtol=1e-6)
        # without read_weights: the pair holds the tile's block, rows in the documented order (its channels in order,
        # each channel's 3x3 window row-major: row 9 c + 3 ky + kx)
        block = inits["w2"][:, 32:64].reshape(16, 288)
        np.testing.assert_allclose((g_plus - g_minus) * s[:, None] / 25.0, block, rtol=1e-5, atol=1e-7)
    with np.load(out / manifest["layers"][2]["tiles"][1]["file"]) as f:  # a MatMul stores in x out: a column per output
        np.testing.assert_allclose((f["g_plus"] - f["g_minus"]) * f["column_scale"][:, None] / 25.0,
                                   inits["w3"][512:].T, rtol=1e-5, atol=1e-7)
    # each tile's DAC range is that tile's calibrated input range
    ranges = calibrate_chip(conv_net(), [{"x": x}], PRESETS["aihwkit-inference"])
    for layer in manifest["layers"]:
        for tile in layer["tiles"]:
            with np.load(out / tile["file"]) as f:
                assert f["dac_range"].tolist() == pytest.approx(list(ranges[tile["key"] + ":in"]), rel=1e-5)
    onnx.save(wide_gemm()[0], tmp_path / "other.onnx")
    with pytest.raises(OutputError, match="another model"):
        ftcompile.api.export_program(tmp_path / "other.onnx", out, chip="aihwkit-inference",
                                     calibrate_on=(np.zeros((4, 1100), np.float32), np.zeros(4, np.int64)))


def test_a_1x1_convolution_reads_as_the_same_layer_written_as_a_gemm():
    # the IR-drop factors of a kernel of size one keep its kernel axes (they once broadcast along them)
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((6, 40)) * 0.1).astype(np.float32)
    x = rng.standard_normal((16, 40)).astype(np.float32)
    conv = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="fc")], "c",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 40, 1, 1])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 1, 1])],
                             [numpy_helper.from_array(w.reshape(6, 40, 1, 1), "w")])
    gemm = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)], "g",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 40])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])],
                             [numpy_helper.from_array(w, "w")])
    chip = parse_chip(QUIET + ",ir_drop=3")
    outs = []
    for graph, xs in ((conv, x.reshape(16, 40, 1, 1)), (gemm, x)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        twin = insert_chip(model, calibrate_chip(model, [{"x": xs}], chip), chip)
        outs.append(_run(twin, {"x": xs}).reshape(16, 6))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    assert not np.allclose(outs[1], x @ w.T, atol=1e-3)  # the drop is there
