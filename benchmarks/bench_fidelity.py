"""What cheap trials cost and what they lose: BayesFT's search at full fidelity against trials on a fraction of
the training set (`--trial-fraction`), on the same model, seeds and trial budget, side by side.

MNIST LeNet-5 (benchmarks/work, as bench_harden.py prepares it: 3,500 train / 500 val / 1,000 test), hardened
with `--method bayesft` at sigma 0.6, default flags (20 trials x 3 epochs, 15 final epochs on all the data)
except `--trial-fraction F`. Per run: the search's seconds (sum of trial times), the whole harden's seconds,
the best trial's objective, and the sign-off (onnxruntime, K samples, the 1,000 test images) of the final
model. Each run is a fresh process with one torch thread.
Usage: python benchmarks/bench_fidelity.py [--fractions 1,0.25,0.1] [--seeds 3] [--parallel 1]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples" / "mnist_lenet"))
from prepare import main as prepare_lenet  # noqa: E402

OUT = HERE / "results" / "fidelity_lenet.json"
RUNNER = """
import json, sys, time, torch
torch.set_num_threads(1)
import ftcompile
from ftcompile.resources import peak_rss_mb
from ftcompile.search.harden import HardenConfig
a = json.loads(sys.argv[1])
t = time.perf_counter()
r = ftcompile.harden(a.pop("model"), a.pop("train"), a.pop("val"), test=a.pop("test"), out=a.pop("out"),
                     validate_samples=a.pop("validate_samples"), plot=False, config=HardenConfig(**a))
print(json.dumps({"seconds": time.perf_counter() - t, "search_seconds": sum(t.seconds for t in r.trials),
                  "peak_mb": peak_rss_mb(), "rates": r.rates, "best_objective": max(t.objective for t in r.trials),
                  "clean": r.after.clean, "mean": r.after.stats.mean}))
"""


def run(work: Path, fraction: float, seed: int, samples: int) -> dict:
    cfg = dict(model=str(work / "lenet.onnx"), train=str(work / "train.npz"), val=str(work / "val.npz"),
               test=str(work / "test.npz"), out=str(work / f"fidelity.{fraction:g}.{seed}.onnx"),
               validate_samples=samples, method="bayesft", sigma=0.6, trial_fraction=fraction, seed=seed)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if res.returncode not in (0, 1):
        raise RuntimeError(f"fraction {fraction} seed {seed}: {res.stderr[-1500:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def summarize(runs: dict) -> dict:
    out = {}
    for fraction in sorted({k.split("/")[0] for k in runs}, key=float, reverse=True):
        rows = [r for k, r in runs.items() if k.split("/")[0] == fraction]
        mean = lambda key: round(float(np.mean([r[key] for r in rows])), 4)  # noqa: E731
        se = lambda key: (round(float(np.std([r[key] for r in rows], ddof=1) / np.sqrt(len(rows))), 4)  # noqa: E731
                          if len(rows) > 1 else None)
        out[fraction] = {"runs": len(rows), "search_seconds": mean("search_seconds"), "seconds": mean("seconds"),
                         "mean": mean("mean"), "mean_se": se("mean"), "clean": mean("clean"),
                         "best_objective": mean("best_objective")}
    full = out.get("1")
    for row in out.values():
        if full:
            row["search_speedup"] = round(full["search_seconds"] / row["search_seconds"], 2)
            row["mean_minus_full"] = round(row["mean"] - full["mean"], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fractions", default="1,0.25,0.1")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    prepare_lenet(args.work)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.update(model="mnist lenet", method="bayesft", sigma=0.6, samples=args.samples, flags="defaults")
    runs = results.setdefault("runs", {})
    todo = [(float(f), s) for s in range(args.seeds) for f in args.fractions.split(",")
            if f"{float(f):g}/{s}" not in runs]
    lock = threading.Lock()

    def one(job):
        fraction, seed = job
        r = run(args.work, fraction, seed, args.samples)
        with lock:
            runs[f"{fraction:g}/{seed}"] = r
            results["summary"] = summarize(runs)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"fraction {fraction:g} seed {seed}: search {r['search_seconds']:.0f} s, harden {r['seconds']:.0f} s, "
              f"sign-off {100 * r['mean']:.2f} (clean {100 * r['clean']:.2f})", flush=True)

    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(one, todo))
    print(json.dumps(results.get("summary", {}), indent=1))


if __name__ == "__main__":
    main()
