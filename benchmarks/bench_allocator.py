"""The drift objective with glibc's default allocator against ``keep_large_allocations`` (resources.py).

ResNet-20 (benchmarks/models), 10 lognormal samples at sigma 0.2 over the 2,000 validation images of
examples/cifar_resnet20 (or random inputs when that example is not prepared), one torch thread, each
setting in a fresh process, interleaved rounds. Prints wall, user and system seconds and the ratio.
Usage: python benchmarks/bench_allocator.py [--rounds 2]
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from ftcompile.resources import keep_large_allocations, peak_rss_mb
applied = keep_large_allocations() if sys.argv[1] == "keep" else False
from ftcompile.frontend import load_model
from ftcompile.runtime.drift import LogNormalDrift
from ftcompile.search.objective import DriftObjective
module = load_model(sys.argv[2]).module
val = sys.argv[3]
if val:
    d = np.load(val); x, y = torch.from_numpy(d["x"]), torch.from_numpy(d["y"])
else:
    x, y = torch.randn(2000, 3, 32, 32), torch.randint(0, 10, (2000,))
objective = DriftObjective(module, x, y, drift=LogNormalDrift(0.2), samples=10)
r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
objective(module)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - t, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                  "peak_mb": peak_rss_mb(), "applied": applied}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "allocator.json")
    args = ap.parse_args()
    model = ROOT / "benchmarks" / "models" / "resnet20_cifar10.onnx"
    val = ROOT / "examples" / "cifar_resnet20" / "work" / "val.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    runs = {"default": [], "keep": []}
    for _ in range(args.rounds):
        for mode in runs:
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(model), str(val) if val.exists() else ""],
                                 capture_output=True, text=True, check=True, env=env).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    best = {m: min(r, key=lambda v: v["wall"]) for m, r in runs.items()}
    result = {"data": "cifar val (2,000)" if val.exists() else "random (2,000)", "runs": runs,
              "ratio_default_over_keep": round(best["default"]["wall"] / best["keep"]["wall"], 2)}
    print(f"objective wall: default {best['default']['wall']:.1f} s, "
          f"keep_large_allocations {best['keep']['wall']:.1f} s: {result['ratio_default_over_keep']}x")
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
