"""Device statistics side by side with IBM's aihwkit (the reference simulator), run here from its own source build.

For each device model, target conductance level and time, the mean and std of what a read returns, from
aihwkit's noise model and from ftcompile's physics (``ftcompile/runtime/devices/physics.py``), each on its own
random draws, with standard errors and the difference in standard errors (z; |z| > 4 is a difference, not noise):
- PCM (aihwkit ``PCMLikeNoiseModel``; Nandakumar et al. 2019), per device: the programmed conductance, the drift
  exponent, and the read at 1 s, 1 h, 1 d, 1 y (programming noise, drift, 1/f read noise; no compensation); at
  g_max 25 uS (the fit's) and 50 uS.
- ReRAM (aihwkit ``ReRamWan2022NoiseModel``; Wan et al. 2022), per device, at its fitted times 1 s, 1 d, 2 d;
  at g_max 40 uS (the fit's) and 80 uS.
- Both again per weight of a differential pair, each tool's whole weight path (aihwkit ``apply_programming_noise``
  then ``apply_drift_noise`` with its ``SinglePairConductanceConverter``; ftcompile ``PCMDrift.apply`` /
  ``ReRAMDrift.apply``), 11 weight levels in [-1, 1] spread over layers of 64 x 576 weights (ResNet-20's
  largest convolution), max|W| = 1 in every layer; and ftcompile's equations along aihwkit's weight path
  (``aihwkit_pair_path``), which tells whether that path is the cause of a pair-level difference.

aihwkit's numbers come from aihwkit, called here; nothing is typed in. Runs in aihwkit's environment with ftcompile
importable (it needs numpy, onnx, onnxruntime, onnx_graphsurgeon and array-api-compat there):
  PYTHONPATH=$PWD OMP_NUM_THREADS=1 /work/venvs/aihwkit/bin/python benchmarks/bench_aihwkit_devices.py
      [--devices 100000] [--seed 0] [--out benchmarks/results/aihwkit_devices.json]
"""
import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import aihwkit  # noqa: E402
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel  # noqa: E402
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel  # noqa: E402

from ftcompile.fileio import write_text_atomic  # noqa: E402
from ftcompile.runtime.devices import physics  # noqa: E402
from ftcompile.runtime.devices.models import PCMDrift, ReRAMDrift  # noqa: E402
from ftcompile.units import format_time, parse_time  # noqa: E402

PCM_TIMES = [parse_time(t) for t in ("1s", "1h", "1d", "1y")]
RERAM_TIMES = [parse_time(t) for t in ("1s", "1d", "2d")]
LEVELS = 11
LAYER = (64, 576)  # weights per layer in the pair comparison
Z_FLAG = 4.0


def moments(x, groups: list | None = None) -> dict:
    """Mean and std with their standard errors (the std's from the sample's fourth central moment). ``groups``
    (the values of each layer, when a layer-wide factor such as aihwkit's re-mapping scale is shared by them):
    each standard error is at least the spread of the per-layer values over sqrt(layers)."""
    x = np.asarray(x, np.float64).reshape(-1)
    n, mean, std = len(x), float(x.mean()), float(x.std())
    m4 = float(((x - mean) ** 4).mean())
    se_mean, se_std = std / math.sqrt(n), math.sqrt(max(m4 - std ** 4, 0.0) / (4 * std ** 2 * n)) if std > 0 else 0.0
    if groups is not None and len(groups) > 1:
        se_mean = max(se_mean, float(np.std([g.mean() for g in groups], ddof=1)) / math.sqrt(len(groups)))
        se_std = max(se_std, float(np.std([g.std() for g in groups], ddof=1)) / math.sqrt(len(groups)))
    return {"mean": mean, "se_mean": se_mean, "std": std, "se_std": se_std, "n": n}


def compare(a: dict, f: dict) -> dict:
    """aihwkit (``a``) and ftcompile (``f``) moments, and their differences in standard errors."""
    z = lambda k: (f[k] - a[k]) / max(math.hypot(a[f"se_{k}"], f[f"se_{k}"]), 1e-300)  # noqa: E731
    return {"aihwkit": a, "ftcompile": f, "z_mean": z("mean"), "z_std": z("std")}


def pcm_devices(g_max: float, n: int, rng: np.random.Generator) -> list:
    nm = PCMLikeNoiseModel(g_max=g_max)
    rows = []
    for g_t in np.linspace(0, g_max, LEVELS):
        gt_a = torch.full((n,), float(g_t))
        gp_a = nm.apply_programming_noise_to_conductance(gt_a.clone())
        nu_a = nm.generate_drift_coefficients(gt_a.clone())
        gt_f = np.full(n, g_t)
        gp_f = physics.pcm_program(gt_f, rng.standard_normal(n), g_max)
        nu_f = physics.pcm_drift_exponent(gt_f, rng.standard_normal(n), g_max)
        rows.append({"stage": "programmed", "g_target": g_t, **compare(moments(gp_a), moments(gp_f))})
        rows.append({"stage": "drift exponent", "g_target": g_t, **compare(moments(nu_a), moments(nu_f))})
        for t in PCM_TIMES:
            g_a = nm.apply_drift_noise_to_conductance(gp_a.clone(), nu_a, t)
            g_f = physics.pcm_read(physics.pcm_drifted(gp_f, nu_f, t), gp_f, rng.standard_normal(n), t, g_max)
            rows.append({"stage": "read", "t": format_time(t), "g_target": g_t, **compare(moments(g_a), moments(g_f))})
    return rows


def reram_devices(g_max: float, n: int, rng: np.random.Generator) -> list:
    nm = ReRamWan2022NoiseModel(g_max=g_max)
    rows = []
    for g_t in np.linspace(0, g_max, LEVELS):
        gt_a = torch.full((n,), float(g_t))
        gp_a = nm.apply_programming_noise_to_conductance(gt_a.clone())
        coeff_a = nm.generate_drift_coefficients(gt_a.clone())
        for t in RERAM_TIMES:
            g_a = nm.apply_drift_noise_to_conductance(gp_a.clone(), coeff_a, t)
            g_f = physics.reram_read(np.full(n, g_t), rng.standard_normal(n), physics.RERAM_WAN2022[t], g_max)
            rows.append({"stage": "read", "t": format_time(t), "g_target": g_t, **compare(moments(g_a), moments(g_f))})
    return rows


def layers(n: int) -> tuple[list, np.ndarray]:
    """Layers of ``LAYER`` weights holding the ``LEVELS`` weight levels in equal shares (about ``n`` each)."""
    levels = np.linspace(-1, 1, LEVELS)
    size = LAYER[0] * LAYER[1]
    count = -(-n * LEVELS // size)
    which = np.arange(size) % LEVELS
    return [levels[which].reshape(LAYER).astype(np.float32) for _ in range(count)], which.reshape(LAYER)


def aihwkit_pair_path(device: str, w: np.ndarray, t: float, g_max: float, rng: np.random.Generator) -> np.ndarray:
    """ftcompile's equations along aihwkit's weight path (to test that the path explains the pair differences):
    program both devices of each pair, read the programmed *weights* back, map those to a fresh pair with the
    layer's new max|W| (``BaseNoiseModel.apply_drift_noise`` -> ``SinglePairConductanceConverter``: one device
    of each pair at 0), then drift and read that pair with the exponents drawn at the original targets. ReRAM's
    read ignores the programmed pair and draws around the original targets, read back at the new scale."""
    scale = float(np.abs(w).max())
    targets = physics.differential_targets(w.astype(np.float64), scale, g_max)
    z = lambda: rng.standard_normal(w.shape)  # noqa: E731
    if device == "pcm":
        programmed = [physics.pcm_program(g, z(), g_max) for g in targets]
        nus = [physics.pcm_drift_exponent(g, z(), g_max) for g in targets]
    else:
        programmed = [physics.reram_read(g, z(), physics.RERAM_WAN2022[1.0], g_max) for g in targets]
    w_prog = physics.differential_weights(*programmed, scale, g_max)
    scale2 = float(np.abs(w_prog).max())
    if device == "pcm":
        resplit = physics.differential_targets(w_prog, scale2, g_max)
        reads = [physics.pcm_read(physics.pcm_drifted(g, nu, t), g, z(), t, g_max) for g, nu in zip(resplit, nus)]
    else:
        reads = [physics.reram_read(g, z(), physics.RERAM_WAN2022[t], g_max) for g in targets]
    return physics.differential_weights(*reads, scale2, g_max)


def pairs(device: str, g_max: float, times: list, n: int, rng: np.random.Generator) -> list:
    nm = PCMLikeNoiseModel(g_max=g_max) if device == "pcm" else ReRamWan2022NoiseModel(g_max=g_max)
    ws, which = layers(n)
    rows = []
    for t in times:
        out_a, out_f, out_e = [], [], []
        for w in ws:
            programmed, drift_params = nm.apply_programming_noise(torch.from_numpy(w))
            out_a.append(nm.apply_drift_noise(programmed, drift_params, t).numpy())
            model = PCMDrift(t, g_max=g_max) if device == "pcm" else ReRAMDrift(t, g_max=g_max)
            out_f.append(model.apply(w, rng))
            out_e.append(aihwkit_pair_path(device, w, t, g_max, rng))
        for j, level in enumerate(np.linspace(-1, 1, LEVELS)):
            a, f, e = (moments(np.concatenate(g), g) for g in ([o[which == j] for o in out]
                                                             for out in (out_a, out_f, out_e)))
            path = compare(a, e)
            rows.append({"stage": "weight", "t": format_time(t), "w": float(level), **compare(a, f),
                         "ftcompile_on_aihwkit_path": e, "z_mean_path": path["z_mean"], "z_std_path": path["z_std"]})
    return rows


def path_z(rows: list) -> str:
    if "z_mean_path" not in rows[0]:
        return "-"
    return f"{max(abs(r['z_mean_path']) for r in rows):.1f}, {max(abs(r['z_std_path']) for r in rows):.1f}"


def summary(results: dict) -> str:
    """Markdown: per section and time, the largest |z| over levels and the rows beyond ``Z_FLAG``."""
    lines = ["| section | g_max (uS) | stage | t | max abs z, mean | max abs z, std | largest std ratio "
             "ftcompile/aihwkit | max abs z on aihwkit's weight path (mean, std) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    flagged = []
    for name, section in results["sections"].items():
        groups = {}
        for row in section["rows"]:
            groups.setdefault((row["stage"], row.get("t", "")), []).append(row)
        for (stage, t), rows in groups.items():
            ratios = [r["ftcompile"]["std"] / r["aihwkit"]["std"] for r in rows if r["aihwkit"]["std"] > 0]
            worst = max(ratios, key=lambda v: abs(math.log(v))) if ratios else float("nan")
            lines.append(f"| {name} | {section['g_max']:g} | {stage} | {t or '-'} | "
                         f"{max(abs(r['z_mean']) for r in rows):.1f} | {max(abs(r['z_std']) for r in rows):.1f} | "
                         f"{worst:.3f} | {path_z(rows)} |")
            for r in rows:
                if abs(r["z_mean"]) > Z_FLAG or abs(r["z_std"]) > Z_FLAG:
                    level = f"g={r['g_target']:.4g} uS" if "g_target" in r else f"w={r['w']:.2f}"
                    a, f = r["aihwkit"], r["ftcompile"]
                    flagged.append(f"| {name} | {stage} | {t or '-'} | {level} | "
                                   f"{a['mean']:.4g} ± {a['se_mean']:.2g} | "
                                   f"{f['mean']:.4g} ± {f['se_mean']:.2g} | {r['z_mean']:.1f} | "
                                   f"{a['std']:.4g} ± {a['se_std']:.2g} | {f['std']:.4g} ± {f['se_std']:.2g} | "
                                   f"{r['z_std']:.1f} |")
    if flagged:
        lines += ["", f"Rows with |z| > {Z_FLAG:g} (mean ± standard error):", "",
                  "| section | stage | t | level | aihwkit mean | ftcompile mean | z | aihwkit std | ftcompile std "
                  "| z |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *flagged]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100_000, help="devices (or weights) per level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "aihwkit_devices.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)  # aihwkit draws from torch's global generator
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    sections = {}
    for g_max in (25.0, 50.0):
        sections[f"pcm device, g_max {g_max:g}"] = {"g_max": g_max, "rows": pcm_devices(g_max, args.devices, rng)}
    for g_max in (40.0, 80.0):
        sections[f"reram device, g_max {g_max:g}"] = {"g_max": g_max, "rows": reram_devices(g_max, args.devices, rng)}
    sections["pcm pair, g_max 25"] = {"g_max": 25.0, "rows": pairs("pcm", 25.0, PCM_TIMES, args.devices, rng)}
    sections["reram pair, g_max 40"] = {"g_max": 40.0, "rows": pairs("reram", 40.0, RERAM_TIMES, args.devices, rng)}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    results = {"aihwkit": aihwkit.__version__, "torch": torch.__version__, "python": platform.python_version(),
               "ftcompile_commit": commit, "devices_per_level": args.devices, "seed": args.seed,
               "z_flag": Z_FLAG, "seconds": None, "sections": sections}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["table"] = summary(results)
    write_text_atomic(args.out, json.dumps(results, indent=1) + "\n")
    print(results["table"])
    print(f"\nwrote {args.out} ({results['seconds']} s)")


if __name__ == "__main__":
    main()
