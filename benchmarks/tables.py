"""Markdown tables for README from the committed results JSON (so README's numbers are the measured ones).
Usage: python benchmarks/tables.py
"""
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def methods() -> str:
    d = json.loads((RESULTS / "methods.json").read_text())
    sigmas = d["sigmas"]
    lines = []
    for task, r in d["tasks"].items():
        if "skipped" in r:
            lines.append(f"\n{task}: skipped ({r['skipped']})")
            continue
        lines += [f"\n**{task}** (hardened at sigma {r['target_sigma']:g}; K = {r.get('samples', d.get('samples'))})\n",
                  "| method | " + " | ".join(f"{s:g}" for s in sigmas) + " | harden s | peak MB |",
                  "| --- |" + " --- |" * (len(sigmas) + 2)]
        best = [max(row[i] for row in r["accuracy"].values()) for i in range(len(sigmas))]
        for m, row in r["accuracy"].items():
            cost = r.get("cost", {}).get(m, {})
            cells = [f"**{v:.2f}**" if v == best[i] else f"{v:.2f}" for i, v in enumerate(row)]
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {cost.get('seconds', '')} | {cost.get('peak_mb') or ''} |")
    return "\n".join(lines)


def ablation() -> str:
    d = json.loads((RESULTS / "ablation.json").read_text())
    sigmas = d["sigmas"]
    lines = ["| panel | variant | " + " | ".join(f"{s:g}" for s in sigmas) + " |", "| --- | --- |" + " --- |" * len(sigmas)]
    for panel, rows in d["panels"].items():
        for label, row in rows.items():
            lines.append(f"| {panel} | {label} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    return "\n".join(lines)


def search() -> str:
    d = json.loads((RESULTS / "harden.json").read_text())["search"]
    lines = ["| search | seed | best after 5 / 10 / 15 / 20 trials |", "| --- | --- | --- |"]
    for name, runs in d["best_so_far"].items():
        for seed, run in enumerate(runs):
            picks = [run[min(i, len(run)) - 1] for i in (5, 10, 15, 20)]
            lines.append(f"| {name} | {seed} | " + " / ".join(f"{100 * v:.2f}" for v in picks) + " |")
    lines.append(f"\nBO trials to reach random search's final best, per seed: {d['bo_trials_to_reach_random_best']}")
    return "\n".join(lines)


def figure3(task: str) -> str:
    """The Figure 3 sweep of one task's results file (benchmarks/harden_runs.py --sweep-samples)."""
    results = json.loads((RESULTS / f"{task}.json").read_text())
    d = results["figure3"]
    sigmas = list(next(iter(d["curves"].values())))
    best = {s: max(c[s] for c in d["curves"].values()) for s in sigmas}
    lines = [f"**{task}** ({d['images']} test images, K = {d['samples']}, hardened at sigma {results['sigma']:g})\n",
             "| model | " + " | ".join(sigmas) + " |", "| --- |" + " --- |" * len(sigmas)]
    for key, curve in d["curves"].items():
        lines.append(f"| {key} | " + " | ".join(f"**{v:.2f}**" if v == best[s] else f"{v:.2f}" for s, v in curve.items())
                     + " |")
    return "\n".join(lines)


def seeds(name: str) -> str:
    """One row per flag set of a crossing study (``run.py --at crossing``), one column per seed: clean / under drift,
    then the mean under drift and the shares of ERM's clean metric and of each run's own (mean, lowest-highest)."""
    runs = json.loads((RESULTS / f"{name}.json").read_text())["runs"]
    by_flags: dict = {}
    for run in runs.values():
        flags, seed = run["flags"].rsplit(" --seed ", 1)
        by_flags.setdefault(flags, {})[int(seed)] = run
    width = 1 + max(max(group) for group in by_flags.values())
    lines = ["| flags | " + " | ".join(f"seed {i}" for i in range(width))
             + " | mean under drift | of ERM's clean | of its own clean | harden |", "| --- |" + " --- |" * (width + 4)]

    def share(values):
        return f"{100 * statistics.mean(values):.1f}% ({100 * min(values):.1f}-{100 * max(values):.1f})"

    for flags, group in by_flags.items():
        cells = [f"{group[i]['after']['clean']:.3f} / {group[i]['after']['mean']:.3f}" if i in group else ""
                 for i in range(width)]
        done = list(group.values())
        seconds = [r["seconds"] for r in done]
        lines.append(f"| `{flags}` | " + " | ".join(cells)
                     + f" | {statistics.mean(r['after']['mean'] for r in done):.3f}"
                     + f" | {share([r['after']['mean'] / r['before']['clean'] for r in done])}"
                     + f" | {share([r['after']['mean'] / r['after']['clean'] for r in done])}"
                     + f" | {min(seconds)}-{max(seconds)} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    for name, fn in (("methods", methods), ("ablation", ablation), ("search", search)):
        if (RESULTS / f"{'harden' if name == 'search' else name}.json").exists():
            print(f"<!-- {name} -->\n{fn()}\n")
    for task in ("resnet20", "gtsrb_stn"):
        if "figure3" in json.loads((RESULTS / f"{task}.json").read_text()):
            print(f"<!-- figure3 {task} -->\n{figure3(task)}\n")
    if (RESULTS / "pennfudan_det.crossing.ts.json").exists():
        print(f"<!-- seeds pennfudan_det.crossing.ts -->\n{seeds('pennfudan_det.crossing.ts')}\n")
