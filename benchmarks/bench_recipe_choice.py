"""The recipe search's choice replayed on its own journals, under the GP's two noise models: learned homoskedastic
noise (what the choice read before) and each trial's measured Monte-Carlo error taken as known (``train_Yvar``,
what it reads now; search/controller.py).

For every `--recipe bo` run in benchmarks/results/recipe.json whose journal is still in its example's work folder,
the recipe trials' points, objectives and standard errors are read back; the GP is fitted both ways on them and the
one-standard-error rule (search/recipe.py ``choose``) applied to each posterior. No training, no test data: the
journals hold validation objectives only. Prints and writes, per run: the range of the trials' own standard errors,
of the posterior standard deviations under each noise model, the trial an argmax of the objectives would keep and
the trial each rule keeps. Results: benchmarks/results/recipe_choice.json.
Usage: python benchmarks/bench_recipe_choice.py
"""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ftcompile.search.controller import Controller  # noqa: E402
from ftcompile.search.harden import journal_path_for  # noqa: E402
from ftcompile.search.journal import RECIPE  # noqa: E402
from ftcompile.search.recipe import Recipe, choose  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def replay(journal: Path, sigma: float) -> dict:
    rows = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    trials = [r for r in rows if r.get("stage") == RECIPE and r.get("status", "ok") == "ok"]
    X = torch.tensor([t["point"] for t in trials], dtype=torch.double)
    Y = torch.tensor([t["objective"] for t in trials], dtype=torch.double)
    se = torch.tensor([t["stderr"] for t in trials], dtype=torch.double)
    recipes = [Recipe(t["train_sigma"] / sigma, tuple(t["rates"]), t["lr_scale"]) for t in trials]
    controller = Controller(X.shape[1], max_rate=1.0, trials=len(trials))
    out = {"trials": len(trials), "trial_se": [round(float(se.min()), 4), round(float(se.max()), 4)],
           "argmax": trials[int(Y.argmax())]["trial"]}
    for noise, yvar in (("learned", None), ("measured", se ** 2)):
        means, stds = controller.posterior(X, Y, yvar)
        kept = trials[choose(recipes, means, stds)]
        out[noise] = {"posterior_std": [round(min(stds), 4), round(max(stds), 4)], "kept": kept["trial"],
                      "kept_objective": round(kept["objective"], 4), "kept_train_sigma": kept["train_sigma"],
                      "kept_lr_scale": round(kept["lr_scale"], 3)}
    return out


def _here(path: Path) -> Path:
    """``path`` under this checkout's examples/ (a run may have written it from another worktree)."""
    parts = path.parts
    return ROOT.joinpath(*parts[len(parts) - parts[::-1].index("examples") - 1:])


def main() -> None:
    runs = json.loads((RESULTS / "recipe.json").read_text())
    results = {}
    for task, entry in sorted(runs.items()):
        for key, run in sorted(entry["runs"].items()):
            journal = _here(journal_path_for(Path(run["out"])))
            if run.get("recipe") != "bo" or not journal.exists():
                continue
            results.setdefault(task, {})[key] = r = {"journal": journal.name, **replay(journal, run["sigma"])}
            print(f"{task} {key}: trial s.e. {r['trial_se']}, posterior std learned {r['learned']['posterior_std']} "
                  f"measured {r['measured']['posterior_std']}; kept: argmax {r['argmax']}, learned "
                  f"{r['learned']['kept']}, measured {r['measured']['kept']}", flush=True)
    (RESULTS / "recipe_choice.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
