"""PennFudan U-Net under drift: ERM against hardened models, Dice on the 25 test images (the paper's Figure 3j task,
as segmentation).

1. Sweep the ERM U-Net (work/unet.onnx from prepare.py) over sigma; the harden sigma is the smallest where ERM
   keeps at most half its clean Dice (the issue's "loses half").
2. `ftcompile harden` (CLI, subprocess) with each --methods entry at that sigma, the sign-off on the test split.
3. Sweep every model over sigma (K samples each), plot the curves and a picture of one test image's masks
   before and after drift (the paper's Figure 4, for masks), write benchmarks/results/pennfudan_unet.json.
Usage: python examples/pennfudan_unet/run.py [--methods auto,bayesft,bayesft+noise] [--samples 50]
       python examples/pennfudan_unet/run.py --compensation global  (a chip with global drift compensation:
       every sweep, harden and figure under lognormal:S,comp=global; results in pennfudan_unet.comp-global.json)
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = ROOT / "benchmarks" / "results" / "pennfudan_unet.json"
sys.path.insert(0, str(ROOT / "benchmarks"))
from harden_runs import harden_cli  # noqa: E402
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--methods", default="auto,bayesft,bayesft+noise")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--flags", default="", help="extra harden flags (default: none, the defaults)")
    ap.add_argument("--compensation", default=None, help="drift compensation of the chip (global, column, mean)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default: by compensation, in benchmarks/results)")
    args = ap.parse_args()
    import ftcompile

    erm = args.work / "unet.onnx"
    if not erm.exists():
        sys.exit("error: run examples/pennfudan_unet/prepare.py first.")
    test = args.work / "test.npz"
    comp = args.compensation
    out = args.out or (OUT.with_name(f"pennfudan_unet.comp-{comp}.json") if comp else OUT)
    flags = f"--compensation {comp} {args.flags}".strip() if comp else args.flags
    curve = ftcompile.sweep([erm], test, sigmas=SIGMAS, samples=args.samples, compensation=comp).curves["unet"]
    clean = curve[0].mean
    sigma = next((p.sigma for p in curve if p.mean <= clean / 2), SIGMAS[-1])
    print("ERM Dice: " + ", ".join(f"{p.sigma:g}: {p.mean:.3f}" for p in curve) + f" -> harden at sigma {sigma:g}")
    results = {"sigma": sigma, "samples": args.samples, "test_images": 25, "compensation": comp or "none", "runs": {}}
    models = {"erm": erm}
    for method in args.methods.split(","):
        summary = harden_cli(erm, args.work, test, sigma, method, flags,
                             name="unet" + "".join(c if c.isalnum() else "-" for c in flags))
        if summary is None:
            continue
        results["runs"][method] = summary
        models[method] = Path(summary["out"])
        print(json.dumps({method: results["runs"][method]}), flush=True)
    curves = ftcompile.sweep(list(models.values()), test, sigmas=SIGMAS, samples=args.samples, compensation=comp).curves
    results["dice"] = {name: {f"{p.sigma:g}": round(p.mean, 4) for p in pts}
                       for name, pts in zip(models, curves.values())}
    for name, row in results["dice"].items():
        print(f"{name:15s} " + "  ".join(f"{s}:{v:.3f}" for s, v in row.items()))
    from ftcompile.runtime.plot import plot_curves

    plot_curves(list(zip(models, curves.values())), out.with_suffix(".png"),
                title="PennFudan U-Net (25 test images): Dice under lognormal drift"
                + (f", {comp} compensation" if comp else ""), xlabel="sigma", metric="dice")
    figure(models, args.work, sigma, out.with_name(out.stem + "_masks.png"), comp=comp or "none")
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
