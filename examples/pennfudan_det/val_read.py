"""The runtime's read of the PennFudan detectors on the validation images, beside the harden's torch objective.

The harden scores its trials with the torch module under drift on the validation images; the sign-off drifts the
exported ONNX, where BatchNorm is folded into the convolutions and its shifts drift as the folded biases. This
validates the ERM detector and every hardened one in the work folder whose name matches ``--glob`` on
``work/val.npz`` at ``--sigma`` (K = ``--samples``, as the sign-off drifts), ERM also with no bias drifting
(``--targets crossbar``), and writes each next to the torch objective its harden report recorded (and ERM's, the
report's "before").
Usage: python examples/pennfudan_det/val_read.py [--glob 'detector--train-sigma-0-3*final-epochs-30*.auto.onnx']
Output: benchmarks/results/pennfudan_det.valread.json (README, "Detectors enter as modules").
"""
import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

import ftcompile  # noqa: E402
from ftcompile.fileio import write_text_atomic  # noqa: E402


def read(model: Path, data: Path, sigma: float, samples: int, targets: str = "params") -> dict:
    r = ftcompile.validate(model, data, sigma=sigma, samples=samples, task="detection", targets=targets)
    return {"clean": round(r.clean, 4), "mean": round(r.stats.mean, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--glob", default="detector--train-sigma-0-3*final-epochs-30---seed-?.auto.onnx")
    ap.add_argument("--sigma", type=float, default=0.25)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pennfudan_det.valread.json")
    args = ap.parse_args()
    data, erm = args.work / "val.npz", args.work / "detector.onnx"
    if not data.exists() or not erm.exists():
        sys.exit(f"error: {data} or {erm} is missing; run examples/pennfudan_det/prepare.py first.")
    models = sorted(args.work.glob(args.glob))
    if not models:
        sys.exit(f"error: no model in {args.work} matches {args.glob!r}; run run.py --at crossing first.")
    results = {"sigma": args.sigma, "samples": args.samples, "data": "val",
               "erm": {"runtime": read(erm, data, args.sigma, args.samples),
                       "runtime_no_bias_drift": read(erm, data, args.sigma, args.samples, "crossbar")},
               "models": {}}
    for model in models:
        report = json.loads(model.with_suffix(".report.json").read_text())
        # the objective's draws follow the harden's seed, so ERM's torch read ("before") is kept per run
        results["models"][model.stem] = {"runtime": read(model, data, args.sigma, args.samples),
                                         "torch_objective": round(report["torch_objective"]["after"], 4),
                                         "erm_torch_objective": round(report["torch_objective"]["before"], 4),
                                         "torch_objective_samples": report["config"]["samples"]}
        print(model.stem, json.dumps(results["models"][model.stem]), flush=True)
    print("erm", json.dumps(results["erm"]))
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
