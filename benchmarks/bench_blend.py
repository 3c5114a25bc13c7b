"""Blend a fine-tuned model with its source at several shares and measure each: the evidence for `--blend`.

Both ONNX files are imported (parity-checked); their parameters pair up in order (shapes checked), are mixed by
`ftcompile.search.blend.blend_state` (the implementation `harden` uses), written back into the source's graph,
and measured by the runtime (clean and at --sigma, K samples, the same keyed draws for every share).
Usage: python benchmarks/bench_blend.py --erm ERM.onnx --tuned TUNED.onnx --test test.npz --sigma 0.3
       [--shares 0,0.1,0.2,0.3,0.5,1] [--samples 20] --out benchmarks/results/blend/NAME.json
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ftcompile  # noqa: E402
from ftcompile.export import save_onnx, to_onnx  # noqa: E402
from ftcompile.fileio import write_text_atomic  # noqa: E402
from ftcompile.search.blend import blend_state  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--erm", type=Path, required=True)
    ap.add_argument("--tuned", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--sigma", type=float, required=True)
    ap.add_argument("--shares", default="0,0.1,0.2,0.3,0.5,1")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    erm, tuned = ftcompile.load_model(args.erm), ftcompile.load_model(args.tuned)
    names = [k for k in erm.module.state_dict() if k in erm.sources]
    theirs = [v for k, v in tuned.module.state_dict().items() if k in tuned.sources]
    source = {k: v.clone() for k, v in erm.module.state_dict().items()}
    if [tuple(source[k].shape) for k in names] != [tuple(v.shape) for v in theirs]:
        sys.exit("error: the two models' parameters do not pair up; give a model and its own fine-tune.")
    fine = {**source, **dict(zip(names, theirs))}
    shares = [float(s) for s in args.shares.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for share in shares:
            erm.module.load_state_dict(blend_state(fine, source, share))
            paths.append(save_onnx(to_onnx(erm), Path(tmp) / f"share{share:g}.onnx"))
        curves = ftcompile.sweep(paths, args.test, sigmas=[0.0, args.sigma], samples=args.samples).curves
    rows = {f"{s:g}": {"clean": round(100 * pts[0].mean, 2), "mean": round(100 * pts[1].mean, 2),
                       "stderr": round(100 * pts[1].std / args.samples ** 0.5, 2)}
            for s, pts in zip(shares, curves.values())}
    for share, row in rows.items():
        print(f"share {share:>4}: clean {row['clean']:.2f}  at {args.sigma:g} {row['mean']:.2f} +- {row['stderr']:.2f}")
    result = {"erm": str(args.erm), "tuned": str(args.tuned), "test": str(args.test), "sigma": args.sigma,
              "samples": args.samples, "shares": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
