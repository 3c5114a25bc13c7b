"""The drift objective under three allocator settings: glibc's default; ``keep``, ftcompile's
``keep_large_allocations`` (resources.py: large blocks kept in the heap, mmap and trim thresholds at 1 GiB); ``map``,
blocks of 4 MiB and up mapped (released when freed) with torch's transparent huge pages.

ResNet-20 (benchmarks/models), 10 lognormal samples at sigma 0.2 over the 2,000 validation images of
examples/cifar_resnet20 (or random inputs when that example is not prepared), one torch thread, each
setting in a fresh process, interleaved rounds. Each process scores the objective --calls times (every call's
wall, user and system seconds are kept); the peak is the process's after all of them; the ratios are of the faster
process's seconds over all its calls.
Usage: python benchmarks/bench_allocator.py [--rounds 2] [--calls 3]
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from harden_runs import MAP_ENV  # noqa: E402

CHILD = """
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from ftcompile.resources import keep_large_allocations, peak_rss_mb
from harden_runs import map_large_blocks
applied = {"default": lambda: False, "keep": keep_large_allocations, "map": map_large_blocks}[sys.argv[1]]()
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
calls = []
for _ in range(int(sys.argv[4])):  # a harden scores many times: the heap a call leaves is the next one's
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    objective(module)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    calls.append({"wall": time.perf_counter() - t, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime})
print(json.dumps({"calls": calls, "peak_mb": peak_rss_mb(), "applied": applied}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--calls", type=int, default=3, help="objective calls per process (the peak is after all)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "allocator.json")
    args = ap.parse_args()
    model = ROOT / "benchmarks" / "models" / "resnet20_cifar10.onnx"
    val = ROOT / "examples" / "cifar_resnet20" / "work" / "val.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    runs = {"default": [], "keep": [], "map": []}
    for _ in range(args.rounds):
        for mode in runs:
            child_env = {**env, **(MAP_ENV if mode == "map" else {})}
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(model), str(val) if val.exists() else "",
                                  str(args.calls)],
                                 capture_output=True, text=True, check=True, env=child_env).stdout
            runs[mode].append(json.loads(out.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    # the faster process's seconds over all its calls
    best = {m: min(sum(c["wall"] for c in v["calls"]) for v in r) for m, r in runs.items()}
    result = {"data": "cifar val (2,000)" if val.exists() else "random (2,000)", "runs": runs,
              "ratio_default_over_keep": round(best["default"] / best["keep"], 2),
              "ratio_map_over_keep": round(best["map"] / best["keep"], 2)}
    print(f"objective wall: default {best['default']:.1f} s, keep {best['keep']:.1f} s, "
          f"map {best['map']:.1f} s: default/keep {result['ratio_default_over_keep']}x, "
          f"map/keep {result['ratio_map_over_keep']}x")
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
