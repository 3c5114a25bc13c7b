"""Constant against cosine learning rate in harden's fine-tune, on the MNIST LeNet of `make demo` (3 seeds).

The measurements behind `--lr-schedule auto` (trainer.COSINE_FROM_STEPS). This script reruns the cheap one: the
demo's harden at sigma 0.6 with each schedule and seeds 0-2, through the CLI; results/schedule_lenet.json.
The long fine-tunes were measured once each through the same CLI, their own harden reports are kept in
results/schedule/ (ResNet-20 and the GTSRB STN network with cosine; the constant runs are the rows of
resnet20.json and gtsrb_stn.json), with the PennFudan detector's flag runs.
Usage: python benchmarks/bench_schedule.py   (after `make demo` has built examples/mnist_lenet/work)
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harden_runs import harden_cli  # noqa: E402

WORK = HERE.parent / "examples" / "mnist_lenet" / "work"


def main() -> None:
    if not (WORK / "lenet.onnx").exists():
        sys.exit("error: run `make demo` first (it builds examples/mnist_lenet/work).")
    rows = {}
    for schedule in ("constant", "cosine"):
        for seed in (0, 1, 2):
            r = harden_cli(WORK / "lenet.onnx", WORK, WORK / "test.npz", 0.6, "noise-injection",
                           f"--lr-schedule {schedule} --seed {seed}", name=f"schedule-{schedule}-{seed}")
            rows.setdefault(schedule, []).append({"seed": seed, "clean": r["after"]["clean"],
                                                  "mean": r["after"]["mean"], "seconds": r["seconds"]})
            print(schedule, seed, json.dumps(rows[schedule][-1]), flush=True)
    means = {k: sum(r["mean"] for r in v) / len(v) for k, v in rows.items()}
    out = {"task": "MNIST LeNet, sigma 0.6, noise-injection, 825 steps", "runs": rows,
           "mean_under_drift": means, "cosine_minus_constant": means["cosine"] - means["constant"]}
    (HERE / "results" / "schedule_lenet.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["mean_under_drift"]), "cosine - constant:", round(100 * out["cosine_minus_constant"], 2))


if __name__ == "__main__":
    main()
