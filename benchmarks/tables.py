"""Markdown tables for README from the committed results JSON (so README's numbers are the measured ones).
Usage: python benchmarks/tables.py
"""
import json
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


if __name__ == "__main__":
    for name, fn in (("methods", methods), ("ablation", ablation), ("search", search)):
        if (RESULTS / f"{'harden' if name == 'search' else name}.json").exists():
            print(f"<!-- {name} -->\n{fn()}\n")
    for task in ("resnet20", "gtsrb_stn"):
        if "figure3" in json.loads((RESULTS / f"{task}.json").read_text()):
            print(f"<!-- figure3 {task} -->\n{figure3(task)}\n")
