"""The harden process's own peak memory, run to run: the same `ftcompile harden` command several times, each in a
fresh process with one torch thread (but keep-threads), under each allocator setting, the runs interleaved so that
load falls alike (--jobs 2: two at a time).

Settings (the process's glibc allocator; resources.py):
- keep: ftcompile's default, ``keep_large_allocations`` (mmap and trim thresholds at 1 GiB: large blocks served from
  the heap and kept for reuse, which halved the drift objective's time on ResNet-20, allocator.json);
- map: blocks of 4 MiB and up get their own mapping, released when freed, with torch's transparent huge pages
  (``THP_MEM_ALLOC_ENABLE=1``); the heap for smaller blocks, never trimmed: no freed large block can leave a hole;
- glibc: glibc's own defaults (ftcompile's setting made a no-op in the child);
- keep-fixed: as keep, with address-space randomization off (``setarch -R``) and ``PYTHONHASHSEED=0``: whether what
  varies run to run is the layout of the address space and of Python's hashes rather than the work;
- keep-trim: as keep, with glibc's ``malloc_trim(0)`` after every score of the search's objective (free pages handed
  back between the objective's large forwards and the training that follows);
- keep-threads: as keep, with torch's own thread count (every core: what a new user runs) instead of one thread;
- keep-gc: as keep, with Python's cyclic garbage collector run only before each score of the objective (not
  whenever a thread's allocations cross its threshold): whether the variation follows when cycles are freed.
Each run records the report's ``peak_mb`` (VmHWM of the harden process: resources.peak_rss_mb), its seconds and its
sign-off numbers (identical numbers say the runs did identical work). Results: benchmarks/results/memory.json.

Usage: python benchmarks/bench_memory.py [--task cifar-cnn] [--rounds 3] [--settings keep,glibc,keep-fixed]
       [--flags "--final-epochs 3"]
The task's example must be prepared (examples/<task>/prepare.py).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from harden_runs import MAP_ENV, code_commit, one_thread_env  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "memory.json"
EX = ROOT / "examples"
# task -> its example's work folder, the model there, the target sigma (auto: the validation half-loss sigma)
TASKS = {"cifar-cnn": (EX / "cifar_cnn/work", "cnn.onnx", "0.6"),
         "pennfudan-unet": (EX / "pennfudan_unet/work", "unet.onnx", "auto")}
CHILD = """
import sys
mode = sys.argv[1]
if mode in ("glibc", "map"):
    import ftcompile.search.harden
    from harden_runs import map_large_blocks
    ftcompile.search.harden.keep_large_allocations = map_large_blocks if mode == "map" else (lambda: False)
if mode in ("keep-trim", "keep-gc"):  # something before or after every score of the search's objective
    import ctypes, ctypes.util, gc
    from ftcompile.search.objective import DriftObjective
    score = DriftObjective.__call__
    if mode == "keep-gc":
        gc.disable()
    before = gc.collect if mode == "keep-gc" else lambda: None
    after = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim if mode == "keep-trim" else lambda _: None
    def wrapped(self, module):
        before()
        try:
            return score(self, module)
        finally:
            after(0)
    DriftObjective.__call__ = wrapped
sys.argv = ["ftcompile", *sys.argv[2:]]
from ftcompile.cli import main
main()
"""
SETTINGS = ("keep", "map", "glibc", "keep-fixed", "keep-trim", "keep-threads", "keep-gc")


def one_run(setting: str, work: Path, model: str, sigma: str, flags: list[str], tmp: Path) -> dict:
    env = {**one_thread_env(ROOT), **(MAP_ENV if setting == "map" else {})}
    env["PYTHONPATH"] += os.pathsep + str(ROOT / "benchmarks")  # the child's harden_runs
    if setting == "keep-threads":
        env = {k: v for k, v in env.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    prefix = []
    if setting == "keep-fixed":
        env["PYTHONHASHSEED"] = "0"
        prefix = ["setarch", "-R"] if shutil.which("setarch") else []
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / f"{setting}.onnx"
    cmd = [*prefix, sys.executable, "-c", CHILD, setting, "harden", str(work / model),
           "--train", str(work / "train.npz"), "--val", str(work / "val.npz"), "--test", str(work / "test.npz"),
           "--sigma", sigma, "--out", str(out), "--no-plot", "--json", *flags]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if res.returncode not in (0, 1):
        sys.exit(f"{setting}: harden exited {res.returncode}\n{res.stderr[-2000:]}")
    report = json.loads(res.stdout)
    return {"peak_mb": round(report["peak_mb"]), "seconds": round(report["seconds"]),
            "after_mean": report["after"]["mean"], "after_clean": report["after"]["clean"],
            "train_sigma": report.get("train_sigma"), "layout_fixed": bool(prefix) or None, "commit": code_commit(ROOT)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="cifar-cnn", choices=sorted(TASKS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--flags", default="", help="more harden flags for every run (e.g. --final-epochs 3)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (each has one torch thread)")
    args = ap.parse_args()
    work, model, sigma = TASKS[args.task]
    if not (work / "test.npz").exists():
        sys.exit(f"error: {args.task} needs {work}/test.npz: run its example's prepare.py first.")
    settings = args.settings.split(",")
    runs = {s: [] for s in settings}
    order = [(r, s) for r in range(args.rounds) for s in settings]  # interleaved: alike load for every setting
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(one_run, s, work, model, sigma, args.flags.split(), Path(tmp) / f"{r}") for r, s in order]
        for (_, s), job in zip(order, jobs):
            runs[s].append(job.result())
            print(s, json.dumps(runs[s][-1]), flush=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    entry = results.get(args.task, {})
    flags = args.flags or "defaults"
    if entry.get("flags") != flags:  # runs of other flags measured something else: start the task afresh
        entry = {"flags": flags, "runs": {}}
    entry["runs"].update(runs)  # a setting run again replaces its earlier runs; the other settings stay
    entry.pop("summary", None)  # what the runs say, written once (tables.py reads the runs)
    results[args.task] = entry
    OUT.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    for s, rs in entry["runs"].items():
        peaks = [r["peak_mb"] for r in rs]
        print(f"{s:10s} peak {peaks} MB (spread {max(peaks) - min(peaks)} MB), {[r['seconds'] for r in rs]} s")


if __name__ == "__main__":
    main()
