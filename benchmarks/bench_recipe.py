"""The default recipe side by side: the training-noise grid (`--recipe grid`, the default before) against one
BoTorch search over the recipe (`--recipe bo`: training-noise scale, dropout per stage, learning-rate scale; the
blend searched over [0, 0.9] after), each through the normal `ftcompile harden` CLI with default flags otherwise.

Every choice reads the validation data (val.npz; the target sigma of the PennFudan tasks too: `--sigma auto`);
the sign-off reads the held-out test data (test.npz), once per run. Each run is its own process with one torch
thread (OMP_NUM_THREADS=1), so two can share the 2 cores side by side; the report's seconds and the process's own
peak memory are kept. Results: benchmarks/results/recipe.json (re-read before each write: parallel invocations
on other tasks keep each other's runs).

Usage: python benchmarks/bench_recipe.py --tasks mnist-lenet --seeds 0,1,2 [--recipes grid,bo]
Tasks need their example's prepare.py first (see TASKS; --data DIR for the external data sets).
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from harden_runs import harden_cli, one_thread_env, save_run  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "recipe.json"
MODELS = ROOT / "benchmarks" / "models"
EX = ROOT / "examples"
# task -> the ERM model (a file or a module factory), its example's work folder, the target (sigma: a number the
# task is defined at, or auto: the validation half-loss sigma; or a --drift in flags), extra flags
TASKS = {
    "mnist-lenet": (EX / "mnist_lenet/work/lenet.onnx", EX / "mnist_lenet/work", "0.6", ""),
    "gtsrb-stn": (MODELS / "gtsrb_stn.onnx", EX / "gtsrb_stn/work", "0.3", ""),
    "cifar-cnn": (EX / "cifar_cnn/work/cnn.onnx", EX / "cifar_cnn/work", "0.6", ""),
    "resnet20": (MODELS / "resnet20_cifar10_e160_cutout.onnx", EX / "cifar_resnet20/work", "0.3", ""),
    "preact18w16": (MODELS / "preact18w16_cifar10_e160_cutout.onnx", EX / "cifar_resnet20/work", "0.2", ""),
    "pennfudan-unet": (EX / "pennfudan_unet/work/unet.onnx", EX / "pennfudan_unet/work", "auto", ""),
    "pennfudan-det": ("examples.pennfudan_det.detector:erm", EX / "pennfudan_det/work", "auto", ""),
    "resnet20-pcm1y-q8": (MODELS / "resnet20_cifar10_e160_cutout.onnx", EX / "cifar_resnet20/work", None,
                          "--drift pcm:1y,comp=global --dac-bits 8 --adc-bits 8"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", default="mnist-lenet")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--recipes", default="grid,bo")
    ap.add_argument("--flags", default="", help="more harden flags for every run")
    args = ap.parse_args()
    env = one_thread_env(ROOT)
    for task in args.tasks.split(","):
        model, work, sigma, flags = TASKS[task]
        if not (work / "test.npz").exists() or (isinstance(model, Path) and not model.exists()):
            sys.exit(f"error: {task} needs {work}/test.npz and {model}: run its example's prepare.py first.")
        for seed in args.seeds.split(","):
            for recipe in args.recipes.split(","):
                key = f"{recipe} {args.flags} seed {seed}" if args.flags else f"{recipe} seed {seed}"
                run_flags = f"--recipe {recipe} --seed {seed} {flags} {args.flags}"
                summary = harden_cli(model, work, work / "test.npz", sigma, "noise-injection", run_flags,
                                     name=f"{task}.{recipe}{''.join(c for c in args.flags if c.isalnum())}.s{seed}",
                                     env=env)
                if summary is not None:
                    save_run(OUT, (task, "runs", key), summary)
                    print(json.dumps({task: {key: summary}}), flush=True)


if __name__ == "__main__":
    main()
