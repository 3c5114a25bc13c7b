"""ResNet-20 on CIFAR-10 through the normal `ftcompile harden` path (benchmarks/harden_runs.py does the work).

The ERM model (benchmarks/models/resnet20_cifar10.onnx, from prepare.py) is swept over sigma on the sign-off
set unless --sigma is given; each --methods entry runs `ftcompile harden` with --flags ('' = the defaults).
Results go to benchmarks/results/resnet20.json (--model and --results name others, e.g. PreAct-ResNet-18).
Usage: python examples/cifar_resnet20/run.py [--methods auto,bayesft] [--test-size 2000] [--sigma 0.2]
       [--flags "--trials 8 --epochs 1 --trial-fraction 0.1 --final-epochs 10 --rate-space per-stage"]
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from harden_runs import arguments, run  # noqa: E402

MODEL = ROOT / "benchmarks" / "models" / "resnet20_cifar10.onnx"

if __name__ == "__main__":
    args = arguments("auto", "").parse_args()
    model = args.model or MODEL
    if not model.exists() or not (HERE / "work" / "train.npz").exists():
        sys.exit(f"error: run examples/cifar_resnet20/prepare.py [--data DIR] first ({model}, "
                 f"{HERE}/work/train.npz).")
    run(model, HERE / "work", args.results or ROOT / "benchmarks" / "results" / "resnet20.json", args)
