"""The GTSRB spatial-transformer network through the normal `ftcompile harden` path (benchmarks/harden_runs.py).

The ERM model (benchmarks/models/gtsrb_stn.onnx from prepare.py) is swept over sigma on the test images unless --sigma
is given; each --methods entry runs `ftcompile harden` with --flags ('' = the defaults).
Results go to benchmarks/results/gtsrb_stn.json.
Usage: python examples/gtsrb_stn/run.py [--methods auto,bayesft] [--test-size 0] [--sigma S] [--flags "..."]
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from harden_runs import arguments, run  # noqa: E402

if __name__ == "__main__":
    args = arguments("auto", "").parse_args()
    model = args.model or ROOT / "benchmarks" / "models" / "gtsrb_stn.onnx"
    if not model.exists() or not (HERE / "work" / "train.npz").exists():
        sys.exit(f"error: run examples/gtsrb_stn/prepare.py [--data DIR] first ({model} and {HERE}/work/train.npz).")
    run(model, HERE / "work", args.results or ROOT / "benchmarks" / "results" / "gtsrb_stn.json", args)
