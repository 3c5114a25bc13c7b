"""The search on a deep network: ResNet-20 (19 dropout sites) on CIFAR-10 at sigma 0.2 (where ERM loses 20 points).

Two questions of the issue "BayesFT at real depth and real cost", on equal trial budgets, several seeds:
1. BO against random search on the 19-site per-layer space: how many BO trials reach random's final best?
2. Per-layer rates (19-D BO) against one shared rate (1-D BO): which finds the better objective, with standard errors
   over seeds?
3. The SAAS GP (`--kernel saas`, config `bo-saas/per-layer`) against the Matern GP on the same 19-D space.
Each run is `ftcompile.harden` with method bayesft and no final fine-tune (the search alone), in its own
process with one torch thread, two at a time on 2 cores. Runs already in the results file are kept
(the script resumes). Needs examples/cifar_resnet20/prepare.py to have run.
Usage: python benchmarks/bench_search.py [--seeds 3] [--trials 16] [--parallel 2]
"""
import argparse
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plots import plot_best_so_far  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "benchmarks" / "models" / "resnet20_cifar10.onnx"
WORK = ROOT / "examples" / "cifar_resnet20" / "work"
OUT = HERE / "results" / "search_resnet20.json"
CONFIGS = [("bo", "per-layer"), ("random", "per-layer"), ("bo", "shared"), ("bo-saas", "per-layer")]
RUNNER = """
import json, sys, time, torch
torch.set_num_threads(1)
import ftcompile
from ftcompile.resources import peak_rss_mb
from ftcompile.search.harden import HardenConfig
a = json.loads(sys.argv[1])
t = time.perf_counter()
r = ftcompile.harden(a.pop("model"), a.pop("train"), a.pop("val"), test=a.pop("test"), out=a.pop("out"),
                     validate_samples=2, plot=False, config=HardenConfig(**a))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": peak_rss_mb(), "rates": r.rates,
                  "trials": [[t.trial, t.origin, t.objective, t.stderr] for t in r.trials]}))
"""


def run(search: str, rates: str, seed: int, args) -> dict:
    name = f"search.{search}.{rates}.{seed}"
    cfg = dict(model=str(MODEL), train=str(WORK / "train.npz"), val=str(WORK / f"val{args.val_size}.npz"),
               test=str(WORK / "test500.npz"), out=str(WORK / f"{name}.onnx"), method="bayesft", sigma=args.sigma,
               search=search.split("-")[0], kernel="saas" if search == "bo-saas" else "matern52", rates=rates,
               seed=seed, trials=args.trials, epochs=1, trial_fraction=args.trial_fraction, final_epochs=0,
               samples=args.samples, lr=5e-4)
    journal = WORK / f"{name}.journal.jsonl"
    journal.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if res.returncode not in (0, 1):
        raise RuntimeError(f"{name}: {res.stderr[-1500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def best_so_far(trials: list) -> list[float]:
    return np.maximum.accumulate([o for _, _, o, _ in sorted(trials)]).tolist()


def summarize(results: dict) -> dict:
    runs = results["runs"]
    summary = {}
    for search, rates in CONFIGS:
        key = f"{search}/{rates}"
        finals = [100 * best_so_far(r["trials"])[-1] for name, r in runs.items() if name.startswith(key + "/")]
        if finals:
            se = float(np.std(finals, ddof=1) / np.sqrt(len(finals))) if len(finals) > 1 else float("nan")
            summary[key] = {"best_mean": round(float(np.mean(finals)), 2), "best_se": round(se, 2),
                            "per_seed": [round(f, 2) for f in finals]}
    for bo_name in ("bo", "bo-saas"):
        reach = []
        for seed in range(results["seeds"]):
            bo, rnd = runs.get(f"{bo_name}/per-layer/{seed}"), runs.get(f"random/per-layer/{seed}")
            if bo and rnd:
                target = best_so_far(rnd["trials"])[-1]
                reach.append(next((i + 1 for i, v in enumerate(best_so_far(bo["trials"])) if v >= target), None))
        summary[f"{bo_name}_trials_to_reach_random_final_best"] = reach
    return summary


def plot(results: dict, path: Path) -> None:
    curves: dict = {}
    for name, r in sorted(results["runs"].items()):
        curves.setdefault(name.rsplit("/", 1)[0], []).append(best_so_far(r["trials"]))
    plot_best_so_far(curves, path, f"ResNet-20 CIFAR-10, sigma {results['sigma']:g}: search (one line per seed)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--trial-fraction", type=float, default=0.1)
    ap.add_argument("--sigma", type=float, default=0.2)
    ap.add_argument("--val-size", type=int, default=1000, help="validation images the objective scores on")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--configs", default=",".join(f"{s}/{r}" for s, r in CONFIGS))
    args = ap.parse_args()
    if not MODEL.exists() or not (WORK / "train.npz").exists():
        sys.exit("error: run examples/cifar_resnet20/prepare.py first.")
    if not (WORK / "test500.npz").exists():
        test = np.load(WORK / "test.npz")
        np.savez(WORK / "test500.npz", x=test["x"][:500], y=test["y"][:500])
    if not (WORK / f"val{args.val_size}.npz").exists():
        val = np.load(WORK / "val.npz")
        np.savez(WORK / f"val{args.val_size}.npz", x=val["x"][:args.val_size], y=val["y"][:args.val_size])
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(sigma=args.sigma, seeds=args.seeds, trials=args.trials, samples=args.samples,
                   trial_fraction=args.trial_fraction, epochs_per_trial=1, val_size=args.val_size)
    runs = results.setdefault("runs", {})
    done = {k for k, r in runs.items() if len(r["trials"]) == args.trials}  # a run at another budget is redone
    todo = [(s, r, seed) for seed in range(args.seeds) for s, r in CONFIGS
            if f"{s}/{r}" in args.configs.split(",") and f"{s}/{r}/{seed}" not in done]

    lock = threading.Lock()

    def one(job):
        search, rates, seed = job
        r = run(search, rates, seed, args)
        with lock:
            runs[f"{search}/{rates}/{seed}"] = r
            results["summary"] = summarize(results)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"{search}/{rates} seed {seed}: best {100 * best_so_far(r['trials'])[-1]:.2f}% "
              f"({r['seconds']:.0f} s, {r['peak_mb']:.0f} MB)", flush=True)
        results["summary"] = summarize(results)
        OUT.write_text(json.dumps(results, indent=2) + "\n")

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(one, todo))
    results["summary"] = summarize(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(results["summary"], indent=1))


if __name__ == "__main__":
    main()
