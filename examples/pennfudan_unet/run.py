"""PennFudan U-Net under drift: ERM against hardened models, Dice on the 25 test images (the paper's Figure 3j task,
as segmentation).

1. Sweep the ERM U-Net (work/unet.onnx from prepare.py) over sigma; the harden sigma is the smallest where ERM
   keeps at most half its clean Dice (the issue's "loses half").
2. `ftcompile harden` (CLI, subprocess) with each --methods entry at that sigma, the sign-off on the test split.
3. Sweep every model over sigma (K samples each), plot the curves, write benchmarks/results/pennfudan_unet.json,
   and draw one test image's masks before and after drift (the paper's Figure 4, for masks) into work/ only: the
   photograph's copyright is its authors' (docs/data.md).
Usage: python examples/pennfudan_unet/run.py [--methods auto,bayesft,bayesft+noise] [--samples 50]
       python examples/pennfudan_unet/run.py --compensation global  (a chip with global drift compensation:
       every sweep, harden and figure under lognormal:S,comp=global; results in pennfudan_unet.comp-global.json)
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "benchmarks" / "results" / "pennfudan_unet.json"
sys.path.insert(0, str(ROOT / "benchmarks"))
from harden_runs import half_loss_arguments, half_loss_study  # noqa: E402
SIGMAS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5]


def figure(models: dict, work: Path, sigma: float, path: Path, comp: str = "none") -> None:
    """Test image 0: the image, its true mask, and each model's mask clean and under one drift draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ftcompile.runtime.drift import LogNormalDrift, draw_sample
    from ftcompile.runtime.session import DriftSession
    from ftcompile.runtime.tasks import segment

    test = np.load(work / "test.npz")
    x, truth = test["x"][:1], test["masks"][0]
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    image = np.clip(x[0].transpose(1, 2, 0) * std + mean, 0, 1)
    fig, axes = plt.subplots(len(models), 4, figsize=(8, 2.2 * len(models)), dpi=110, squeeze=False)
    for row, (name, model) in zip(axes, models.items()):
        s = DriftSession(model, task="segmentation")
        drifted = draw_sample(LogNormalDrift(sigma, comp), s.weights, 0, 0)
        panels = [(image, "image"), (truth, "truth"), (segment(s.run({"x": x}, s.weights))[0], f"{name}: clean"),
                  (segment(s.run({"x": x}, drifted))[0], f"{name}: sigma {sigma:g}")]
        for ax, (img, title) in zip(row, panels):
            ax.imshow(img, cmap=None if img.ndim == 3 else "gray")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    args = half_loss_arguments("auto,bayesft,bayesft+noise").parse_args()
    args.work = args.work or HERE / "work"
    erm = args.work / "unet.onnx"
    if not erm.exists():
        sys.exit("error: run examples/pennfudan_unet/prepare.py [--data DIR] first.")
    comp = args.compensation
    out = args.out or (OUT.with_name(f"pennfudan_unet.comp-{comp}.json") if comp else OUT)
    half_loss_study(erm, erm, "unet", out, SIGMAS, "dice", "PennFudan U-Net (25 test images): Dice under lognormal "
                    "drift", figure, "masks", args)


if __name__ == "__main__":
    main()
