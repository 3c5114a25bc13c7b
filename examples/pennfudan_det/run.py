"""PennFudan detector under drift: ERM against hardened detectors, mAP@0.5 on the 25 test images (the paper's
Figure 3j task, with a compact one-stage detector instead of Mask R-CNN).

1. Export the ERM detector (``detector:erm``, trained by prepare.py) to work/detector.onnx and sweep it over sigma;
   the harden sigma is the smallest where ERM keeps at most half its clean mAP (the issue's "loses half").
2. `ftcompile harden examples.pennfudan_det.detector:erm` (CLI, subprocess: the module-factory path) with each
   --methods entry at that sigma, the sign-off on the test split.
3. Sweep every model over sigma (K samples each), plot the curves, write benchmarks/results/pennfudan_det.json,
   and draw one test image's detections before and after drift (the paper's Figure 4) into work/ only: the
   photograph's copyright is its authors' (docs/data.md).
Usage: python examples/pennfudan_det/run.py [--methods auto,bayesft,bayesft+noise] [--samples 50]
       python examples/pennfudan_det/run.py --methods auto --flags "--final-epochs 30" --no-sweep  (kept beside)
       python examples/pennfudan_det/run.py --compensation global  (a chip with global drift compensation:
       every sweep, harden and figure under lognormal:S,comp=global; results in pennfudan_det.comp-global.json)
"""
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "benchmarks" / "results" / "pennfudan_det.json"
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from harden_runs import half_loss_arguments, half_loss_study  # noqa: E402
SIGMAS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
FACTORY = "examples.pennfudan_det.detector:erm"


def figure(models: dict, work: Path, sigma: float, path: Path, min_score: float = 0.3, comp: str = "none") -> None:
    """Test image 0 with its true boxes (green) and each model's boxes scoring >= ``min_score`` (red), clean and
    under one drift draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ftcompile.runtime.drift import LogNormalDrift, draw_sample
    from ftcompile.runtime.session import DriftSession
    from ftcompile.runtime.tasks import detections

    test = np.load(work / "test.npz")
    x, truth = test["x"][:1], test["boxes"][0, :test["count"][0]]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    image = np.clip(x[0].transpose(1, 2, 0) * std + mean, 0, 1)
    fig, axes = plt.subplots(len(models), 2, figsize=(4.4, 2.3 * len(models)), dpi=110, squeeze=False)
    for row, (name, model) in zip(axes, models.items()):
        s = DriftSession(model, task="detection")
        for ax, (weights, title) in zip(row, [(s.weights, f"{name}: clean"),
                                              (draw_sample(LogNormalDrift(sigma, comp), s.weights, 0, 0),
                                               f"{name}: sigma {sigma:g}")]):
            boxes, scores, _ = detections(s.run_all({"x": x}, weights))
            ax.imshow(image)
            for (x1, y1, x2, y2), color in ([(b, "lime") for b in truth]
                                            + [(b, "red") for b in boxes[scores >= min_score]]):
                ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=color, lw=1.2))
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    args = half_loss_arguments("auto,bayesft,bayesft+noise").parse_args()
    args.work = args.work or HERE / "work"
    os.environ["PENNFUDAN_DET_WORK"] = str(args.work)  # the factory (here and in the harden subprocesses) reads it
    import torch

    from ftcompile.export import save_onnx
    from ftcompile.frontend.torch_import import detector_to_onnx, load_factory

    if not (args.work / "detector.pt").exists():
        sys.exit("error: run examples/pennfudan_det/prepare.py [--data DIR] first.")
    comp = args.compensation
    out = args.out or (OUT.with_name(f"pennfudan_det.comp-{comp}.json") if comp else OUT)
    example = torch.from_numpy(np.load(args.work / "test.npz")["x"][:1])
    erm = save_onnx(detector_to_onnx(load_factory(FACTORY), example), args.work / "detector.onnx")
    half_loss_study(erm, FACTORY, "detector", out, SIGMAS, "map50", "PennFudan detector (25 test images): mAP@0.5 "
                    "under lognormal drift", figure, "boxes", args)


if __name__ == "__main__":
    main()
