"""ftcompile's chip preset against aihwkit itself: the fields, and the forward pass of tiled layers.

Runs in a virtual environment with aihwkit 1.2.0 (built from source, CPU; benchmarks/bench_aihwkit_devices.py says
how) and onnx, onnxruntime, onnx-graphsurgeon, array-api-compat, with this checkout on the path:

    OMP_NUM_THREADS=1 /work/venvs/aihwkit/bin/python benchmarks/chip_vs_aihwkit.py

1. Fields: every field of ``Chip`` (ftcompile/runtime/devices/chip.py) read out of aihwkit's
   ``StandardHWATrainingPreset()`` by its aihwkit path, and the forward-pass settings ftcompile does not model,
   which must be off in the preset.
2. Forward: a Gemm of 1,100 inputs (three tiles) and a 3x3 convolution over 64 channels (two tiles), noise off: the
   twin's output against aihwkit's ``AnalogLinear``/``AnalogConv2d`` in eval mode, at the same input ranges.
3. Noise: the spread of the output noise and of the PCM-like read noise, per output, in both.
Writes benchmarks/results/chip_vs_aihwkit.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aihwkit  # noqa: E402
import onnxruntime as ort  # noqa: E402
from aihwkit.nn import AnalogConv2d, AnalogLinear  # noqa: E402
from aihwkit.simulator.presets.inference import StandardHWATrainingPreset  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from ftcompile.passes.chip_twin import calibrate_chip, insert_chip  # noqa: E402
from ftcompile.runtime.devices import physics  # noqa: E402
from ftcompile.runtime.devices.chip import PRESETS, parse_chip  # noqa: E402

PATHS = {  # Chip field -> where aihwkit keeps it
    "max_input_size": "mapping.max_input_size", "max_output_size": "mapping.max_output_size",
    "weight_scaling_omega": "mapping.weight_scaling_omega",
    "weight_scaling_columnwise": "mapping.weight_scaling_columnwise", "digital_bias": "mapping.digital_bias",
    "learn_out_scaling": "mapping.learn_out_scaling", "out_scaling_columnwise": "mapping.out_scaling_columnwise",
    "inp_bound": "forward.inp_bound", "inp_res": "forward.inp_res", "out_bound": "forward.out_bound",
    "out_res": "forward.out_res", "out_noise": "forward.out_noise", "w_noise": "forward.w_noise",
    "w_noise_type": "forward.w_noise_type", "ir_drop": "forward.ir_drop", "ir_drop_g_ratio": "forward.ir_drop_g_ratio",
    "bound_management": "forward.bound_management", "noise_management": "forward.noise_management",
    "nm_thres": "forward.nm_thres", "input_range": "pre_post.input_range.enable",
    **{k: f"pre_post.input_range.{k}" for k in ("learn_input_range", "init_value", "init_from_data", "init_std_alpha",
                                                 "decay", "input_min_percentage", "manage_output_clipping",
                                                 "output_min_percentage", "gradient_scale", "gradient_relative")},
    "clip_type": "clip.type", "clip_fixed_value": "clip.fixed_value", "clip_sigma": "clip.sigma",
    "remap_type": "remap.type", "remapped_wmax": "remap.remapped_wmax", "noise_model": "noise_model",
    "g_max": "noise_model.g_max", "prog_noise_scale": "noise_model.prog_noise_scale",
    "read_noise_scale": "noise_model.read_noise_scale", "drift_scale": "noise_model.drift_scale",
    "drift_compensation": "drift_compensation",
}
WORDS = {"PCMRead": "pcm_read", "None": "none", "Constant": "constant", "FixedValue": "fixed",
         "LayerGaussian": "gaussian", "ChannelwiseSymmetric": "channel", "LayerwiseSymmetric": "layer",
         "PCMLikeNoiseModel": "pcm", "GlobalDriftCompensation": "global", "PerColumnDriftCompensation": "column"}
OFF = {"forward.is_perfect": False, "forward.mv_type": "OnePass", "forward.inp_noise": 0.0,
       "forward.inp_sto_round": False, "forward.inp_asymmetry": 0.0, "forward.out_sto_round": False,
       "forward.out_asymmetry": 0.0, "forward.out_noise_std": 0.0, "forward.out_scale": 1.0,
       "forward.out_nonlinearity": 0.0, "forward.slope_calibration": 0.0, "forward.v_offset_std": 0.0,
       "forward.r_series": 0.0, "forward.w_read_asymmetry_dtod": 0.0, "modifier.type": "none",
       "noise_model.t_0": physics.PCM_T0, "noise_model.t_read": physics.PCM_T_READ,
       "noise_model.prog_coeff": [0.26348, 1.9650, -1.1731]}


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    if hasattr(obj, "value") and not isinstance(obj, (int, float)):
        obj = obj.value
    if not isinstance(obj, (int, float, str, bool, list)):
        obj = type(obj).__name__
    return WORDS.get(obj, obj) if isinstance(obj, str) else obj


def fields() -> dict:
    preset = StandardHWATrainingPreset()
    chip = PRESETS["aihwkit-inference"]
    rows = []
    for name, path in PATHS.items():
        theirs, ours = _get(preset, path), getattr(chip, name)
        rows.append({"field": name, "aihwkit": path, "aihwkit_value": theirs, "ftcompile_value": ours,
                     "equal": bool(theirs == ours)})
    off = [{"aihwkit": path, "value": _get(preset, path), "expected": want, "equal": _get(preset, path) == want}
           for path, want in OFF.items()]
    return {"fields": rows, "off_in_preset": off, "all_equal": all(r["equal"] for r in rows + off)}


def _quiet_preset(**forward):
    rc = StandardHWATrainingPreset()
    for key, value in forward.items():
        setattr(rc.forward, key, value)
    return rc


def _session(model):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def gemm_case(rng):
    w = (rng.standard_normal((10, 1100)) * 0.05).astype(np.float32)
    b = rng.standard_normal(10).astype(np.float32)
    x = rng.standard_normal((256, 1100)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1100])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def analog(rc):
        layer = AnalogLinear(1100, 10, bias=True, rpu_config=rc)
        layer.set_weights(torch.from_numpy(w), torch.from_numpy(b))
        return layer

    return "fc", model, x, analog


def conv_case(rng):
    w = (rng.standard_normal((16, 64, 3, 3)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(16) * 0.1).astype(np.float32)
    x = np.maximum(rng.standard_normal((32, 64, 8, 8)), 0).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 8, 8])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    def analog(rc):
        layer = AnalogConv2d(64, 16, 3, padding=1, bias=True, rpu_config=rc)
        layer.set_weights(torch.from_numpy(w), torch.from_numpy(b))
        return layer

    return "conv", model, x, analog


def _aihwkit_out(analog, rc, ranges, key, x):
    layer = analog(rc)
    tiles = list(layer.analog_tiles())
    for t, tile in enumerate(tiles):
        tile.set_input_range(ranges[f"{key}#{t}.0:in"][1])
    layer.eval()
    with torch.no_grad():
        return layer(torch.from_numpy(x)).numpy()


def forward(rng) -> list[dict]:
    out = []
    for case in (gemm_case, conv_case):
        key, model, x, analog = case(rng)
        for label, extra, forward_args in (("no IR drop", ",ir_drop=0", {"ir_drop": 0.0}), ("with IR drop", "", {})):
            chip = parse_chip("aihwkit-inference,out_noise=0,w_noise=0" + extra)
            ranges = calibrate_chip(model, [{"x": x}], chip)
            ours = _session(insert_chip(model, ranges, chip)).run(None, {"x": x})[0]
            theirs = _aihwkit_out(analog, _quiet_preset(out_noise=0.0, w_noise=0.0, **forward_args), ranges, key, x)
            digital = _session(model).run(None, {"x": x})[0]
            out.append({"layer": key, "case": label, "tiles": len(ranges),
                        "max_abs_difference": float(np.abs(ours - theirs).max()),
                        "share_within_1e-4": float(np.isclose(ours, theirs, atol=1e-4).mean()),
                        "max_abs_output": float(np.abs(theirs).max()),
                        "max_abs_converter_error": float(np.abs(theirs - digital).max())})
    return out


def noise(rng, repeats: int = 200) -> list[dict]:
    """Spread (std over repeated reads) of each output, averaged over outputs and examples: aihwkit's
    analog forward against the twin with its noise drawn in the graph, on the Gemm case."""
    key, model, x, analog = gemm_case(rng)
    x = x[:64]
    out = []
    for label, extra, args in (("out_noise 0.04", ",w_noise=0", {"w_noise": 0.0}),
                               ("w_noise 0.0175 (pcm_read)", ",out_noise=0", {"out_noise": 0.0})):
        base = "aihwkit-inference,ir_drop=0,inp_res=0,out_res=0"
        chip = parse_chip(base + extra)
        ranges = calibrate_chip(model, [{"x": x}], chip)
        session = _session(insert_chip(model, ranges, chip))
        ours = np.stack([session.run(None, {"x": x})[0] for _ in range(repeats)])
        rc = _quiet_preset(ir_drop=0.0, inp_res=-1, out_res=-1, **args)
        layer = analog(rc)
        for t, tile in enumerate(layer.analog_tiles()):
            tile.set_input_range(ranges[f"{key}#{t}.0:in"][1])
        layer.eval()
        with torch.no_grad():
            theirs = np.stack([layer(torch.from_numpy(x)).numpy() for _ in range(repeats)])
        s_ours, s_theirs = (ours - ours.mean(0)).std(0), (theirs - theirs.mean(0)).std(0)
        # the ratio of the mean spreads (a mean of per-output ratios is biased up by about 1 / (2 reads))
        ratio = s_ours.mean() / s_theirs.mean()
        se = ratio * np.sqrt(s_ours.var() / s_ours.mean() ** 2 + s_theirs.var() / s_theirs.mean() ** 2) / np.sqrt(
            s_ours.size)
        out.append({"noise": label, "reads": repeats, "mean_std_ftcompile": float(s_ours.mean()),
                    "mean_std_aihwkit": float(s_theirs.mean()), "ratio_mean": float(ratio), "ratio_se": float(se)})
    return out


def main() -> None:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    result = {"aihwkit": aihwkit.__version__, "torch": torch.__version__, "fields": fields(), "forward": forward(rng),
              "noise": noise(rng), "seconds": time.perf_counter() - t0}
    path = ROOT / "benchmarks" / "results" / "chip_vs_aihwkit.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    bad = [r["field"] for r in result["fields"]["fields"] if not r["equal"]]
    print(f"fields equal: {result['fields']['all_equal']} {bad}")
    for r in result["forward"]:
        print(f"{r['layer']:5s} {r['case']:13s} tiles {r['tiles']}: max |ftcompile - aihwkit| "
              f"{r['max_abs_difference']:.2e} (outputs up to {r['max_abs_output']:.2f}, converters move them up to "
              f"{r['max_abs_converter_error']:.3f})")
    for r in result["noise"]:
        print(f"{r['noise']}: std ratio ftcompile/aihwkit {r['ratio_mean']:.3f} +- {r['ratio_se']:.3f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
