"""Start-up time of the CLI, the cost a CI gate pays once per job (issue 30: under 0.4 s for `ftcompile --help` and
the start of a small `validate`).

Each measurement runs in a fresh process, `--reps` times (the median and the minimum are kept):
- python: `python -c pass`, the interpreter's own start (the floor);
- import: `python -X importtime -c "import ftcompile.cli"`: its wall time, the summed import time, and the
  import time per top-level package (the sum of its modules' own times);
- help: `ftcompile --help` (what the console script runs);
- validate: `ftcompile validate` of a tiny MLP (16-32-4, 400 examples, 3 drift samples) under `-X importtime`: its
  wall time and the import time inside it, which is the start a gate pays before any inference.
`--source DIR` measures the package found in DIR instead (a checkout of another commit), under `--label`; the
results file keeps every label, so before and after sit side by side.
Usage: python benchmarks/bench_startup.py [--reps 7] [--label current] [--source DIR] [--out results/startup.json]
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from tests.helpers import teacher_files  # noqa: E402

# "import time:       123 |        456 |   package.module" (microseconds; the indent shows nesting)
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def run(cmd: list, env: dict, cwd: Path) -> tuple[float, str]:
    """Wall seconds and stderr of one fresh process (stdout dropped). ``cwd`` holds no package: `python -c` puts
    the working directory first on the path, before PYTHONPATH."""
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    if done.returncode not in (0, 1):
        sys.exit(f"error: {' '.join(map(str, cmd))} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds, done.stderr


def import_costs(stderr: str) -> tuple[float, dict]:
    """Summed import seconds, and seconds per top-level package (the sum of its modules' self times)."""
    per = defaultdict(float)
    for self_us, _, _, name in LINE.findall(stderr):
        per[name.split(".")[0]] += int(self_us) / 1e6
    return sum(per.values()), dict(per)


def summary(values: list) -> dict:
    return {"median_s": round(statistics.median(values), 4), "min_s": round(min(values), 4)}


def measure(reps: int, env: dict, work: Path) -> dict:
    py = sys.executable
    model, data = teacher_files(work)
    # what the console script runs (and works on checkouts from before python -m ftcompile)
    cli = ["-c", "from ftcompile.cli import main; main()"]
    validate = [*cli, "validate", str(model), "--data", str(data), "--drift", "lognormal:0.3", "--samples", "3"]
    commands = {"python": ([py, "-c", "pass"], False),
                "import ftcompile.cli": ([py, "-X", "importtime", "-c", "import ftcompile.cli"], True),
                "ftcompile --help": ([py, *cli, "--help"], False),
                "ftcompile validate (tiny MLP, 3 samples)": ([py, "-X", "importtime", *validate], True)}
    walls, imports, packages = defaultdict(list), defaultdict(list), defaultdict(lambda: defaultdict(list))
    for rep in range(reps + 1):  # round 0 warms the caches (and writes the .pyc files); it is not kept
        for what, (cmd, importtime) in commands.items():
            seconds, err = run(cmd, env, work)
            if rep == 0:
                continue
            walls[what].append(seconds)
            if importtime:
                total, per = import_costs(err)
                imports[what].append(total)
                for name, s in per.items():
                    packages[what][name].append(s)
    top = {what: {name: round(statistics.median(v + [0.0] * (reps - len(v))), 4)
                  for name, v in sorted(per.items(), key=lambda kv: -statistics.median(kv[1]))[:12]}
           for what, per in packages.items()}
    return {"wall": {k: summary(v) for k, v in walls.items()},
            "import_total": {k: summary(v) for k, v in imports.items()},
            "import_by_package_median_s": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--label", default="current")
    ap.add_argument("--source", type=Path, default=ROOT, help="the folder holding the ftcompile package to time")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "startup.json")
    args = ap.parse_args()
    # one thread, as a CI runner's share of a machine; the measured package first on the path; byte-code cached as
    # an installed package has it (PYTHONDONTWRITEBYTECODE would recompile every module in every process)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(args.source.resolve())}
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.reps, env, Path(tmp))
    result.update(reps=args.reps, python=platform.python_version(), cpus=os.cpu_count(),
                  source=str(args.source.resolve()))
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[args.label] = result
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{args.label}: median (min) of {args.reps} fresh processes")
    for what, s in result["wall"].items():
        imp = result["import_total"].get(what)
        extra = f"   imports {imp['median_s']:.3f} s" if imp else ""
        print(f"  {what:42s} {s['median_s']:.3f} s ({s['min_s']:.3f}){extra}")
    for what, per in result["import_by_package_median_s"].items():
        print(f"  top imports of {what}: " + ", ".join(f"{k} {v:.3f}" for k, v in list(per.items())[:8]))


if __name__ == "__main__":
    main()
