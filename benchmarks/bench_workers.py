"""Search wall time with trials in this process (torch's 2 threads) against `--workers 2` (two 1-thread processes).

Same LeNet, data, seed and budget (bayesft, 10 trials x 3 epochs, no final fine-tune), run side by side in one
invocation; prints the speed-up ratio and both searches' best objectives (they differ only by BO's proposals,
which depend on the order trials finish in).
Usage: python benchmarks/bench_workers.py [--trials 10] [--workers 2]
"""
import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "examples" / "mnist_lenet"))
from bench_harden import run_harden  # noqa: E402
from prepare import main as prepare_lenet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "workers.json")
    args = ap.parse_args()
    prepare_lenet(args.work)
    runs = {}
    for workers in (1, args.workers):
        r = run_harden(args.work, "lenet.onnx", f"workers{workers}.onnx", trials=args.trials, final_epochs=0,
                       validate_samples=5, workers=workers)
        runs[workers] = {"seconds": r["seconds"], "best": max(o for _, o in r["trials"] if o is not None)}
        print(f"workers {workers}: {r['seconds']:.0f} s, best objective {100 * runs[workers]['best']:.2f}%", flush=True)
    ratio = runs[1]["seconds"] / runs[args.workers]["seconds"]
    print(f"speed-up of --workers {args.workers} over in-process: {ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": args.trials, "runs": runs, "speedup": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
