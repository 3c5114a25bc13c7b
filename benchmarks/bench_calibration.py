"""The calibration read of global drift compensation: one-hot inputs (the default) against one all-ones input.

Both reads are drift-spec options (`comp=global` with `read=onehot|ones`, `physics.global_compensation`); this
script validates the ERM models of the task examples under both (onnxruntime `validate`, K samples, the same
keyed draws for both reads): the PennFudan U-Net (Dice) and CenterNet (mAP@0.5) on their 25 test images, ResNet-20 on
500 CIFAR-10 test images (lognormal and PCM). Needs the examples' work folders (their prepare.py).
Usage: python benchmarks/bench_calibration.py [--samples 10] [--out benchmarks/results/calibration.json]
"""
import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import ftcompile  # noqa: E402
from ftcompile.fileio import write_text_atomic  # noqa: E402

EX = ROOT / "examples"
CASES = [  # name, model, data, task, drifts
    ("unet", EX / "pennfudan_unet/work/unet.onnx", EX / "pennfudan_unet/work/test.npz", "segmentation",
     ["lognormal:0.4", "lognormal:0.6"]),
    ("detector", EX / "pennfudan_det/work/detector.auto.source.onnx", EX / "pennfudan_det/work/test.npz",
     "detection", ["lognormal:0.3", "lognormal:0.4"]),
    ("resnet20", ROOT / "benchmarks/models/resnet20_cifar10.onnx", EX / "cifar_resnet20/work/test500.npz", None,
     ["lognormal:0.2", "lognormal:0.3", "pcm:1d", "pcm:1y"]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "calibration.json")
    args = ap.parse_args()
    results = {"samples": args.samples, "rows": []}
    for name, model, data, task, drifts in CASES:
        if not model.exists() or not data.exists():
            sys.exit(f"error: {model} or {data} is missing; run examples/*/prepare.py first.")
        for spec in drifts:
            row = {"model": name, "drift": spec}
            for label, comp in (("none", ""), ("ones", ",comp=global,read=ones"), ("onehot", ",comp=global")):
                r = ftcompile.validate(model, data, drift=spec + comp, samples=args.samples, task=task)
                row[label], row["clean"] = round(r.stats.mean, 4), round(r.clean, 4)
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
