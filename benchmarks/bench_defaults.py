"""Re-derive, on validation data only, the defaults that an earlier release chose by looking at test results:
the learning-rate schedule's cosine threshold (`--lr-schedule auto`: cosine from COSINE_FROM_STEPS optimizer steps
of the final fine-tune) and the final fine-tune's minimum of steps (`--final-epochs auto`: MIN_FINAL_STEPS).

Every run is `ftcompile harden` with default flags but the one compared, on seeds never reported before (10, 11,
12), WITHOUT --test: the sign-off is the share of val.npz harden holds out before any choice (validation data;
test.npz is never read). Rules fixed before the runs:
- schedule: if cosine is within one standard error of constant or better on every task, cosine always (the simpler
  rule); otherwise the threshold goes between the longest fine-tune where constant won and the shortest where
  cosine won, and if those overlap, constant always;
- minimum steps: kept if `auto` beats `--final-epochs 15` by more than one standard error on the mean of the
  PennFudan tasks' seeds, dropped otherwise.
Results: benchmarks/results/defaults.json (re-read before each write).

Usage: python benchmarks/bench_defaults.py --study schedule --tasks mnist-lenet --seeds 10,11,12
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_recipe import TASKS  # noqa: E402
from harden_runs import harden_cli, one_thread_env, save_run  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "defaults.json"
STUDIES = {
    "schedule": {"constant": "--lr-schedule constant", "cosine": "--lr-schedule cosine"},
    "final-steps": {"auto": "", "15 epochs": "--final-epochs 15"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--study", choices=sorted(STUDIES), required=True)
    ap.add_argument("--tasks", default="mnist-lenet")
    ap.add_argument("--seeds", default="10,11,12")
    args = ap.parse_args()
    env = one_thread_env(ROOT)
    for task in args.tasks.split(","):
        model, work, sigma, flags = TASKS[task]
        for seed in args.seeds.split(","):
            for variant, extra in STUDIES[args.study].items():
                key = f"{variant} seed {seed}"
                summary = harden_cli(model, work, None, sigma, "noise-injection", f"--seed {seed} {flags} {extra}",
                                     name=f"{task}.{args.study}.{variant.replace(' ', '')}.s{seed}", env=env)
                if summary is not None:
                    save_run(OUT, (args.study, task, key), summary)
                    print(json.dumps({task: {key: summary}}), flush=True)


if __name__ == "__main__":
    main()
