"""The training-noise level of the +noise methods, chosen by a short grid (``--train-sigma auto``, the default).

Noise injection trains under lognormal drift; the best sigma to train under is not always the sigma the model
is signed off at (a deep network can do better trained below it, where the fine-tune still learns). So each
harden tries a few levels, ``SHARES`` of the harden sigma, with short fine-tunes (``--epochs`` on
``--trial-fraction`` of the training set, like a rate trial, on the final fit's learning-rate schedule), scores
each with the search's own objective (the metric under the target drift on the validation data) and keeps the
simplest level, the harden sigma itself first, within one standard error of the best (``selection.py``): a level
further from the target must win by more than the Monte-Carlo error to be chosen.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from ftcompile.search.executor import Executor, TrialTask, retried
from ftcompile.search.journal import NOISE_GRID, Journal, TrialRecord, trial_record
from ftcompile.search.selection import simplest_within_one_se

# shares of the harden sigma tried, simplest (the target itself) first
SHARES = (1.0, 0.75, 0.5)


def train_sigma_grid(sigma: float) -> tuple[float, ...]:
    return tuple(round(share * sigma, 6) for share in SHARES)


def choose_train_sigma(executor: Executor, journal: Journal, grid: tuple[float, ...], rates: list, seed: int,
                       on_trial: Callable[[TrialRecord, TrialRecord], None] | None = None,
                       retries: int = 1) -> float:
    """Run one short trial per sigma of ``grid`` (those the journal lacks), journal each, return the sigma of
    the best finished one, or the harden sigma (``grid[0]``) when every trial failed: the final fit then
    fails, or works, on its own."""
    done = {t.train_sigma for t in journal.trials if t.stage == NOISE_GRID}
    attempts: Counter = Counter()
    in_flight = 0
    for i, sigma in enumerate(grid):
        if sigma not in done:
            executor.submit(TrialTask(i, tuple(rates), seed + 2000 + i, (sigma,), "grid", train_sigma=sigma))
            in_flight += 1
    while in_flight:
        result = executor.next_done()
        if retried(executor, result, attempts, retries) is not None:
            continue
        task = result.task
        in_flight -= 1
        record = trial_record(result, list(task.point), stage=NOISE_GRID, train_sigma=task.train_sigma)
        journal.append(record)
        if on_trial is not None:
            on_trial(record, chosen(journal, grid) or record)
    best = chosen(journal, grid)
    return grid[0] if best is None else best.train_sigma


def chosen(journal: Journal, grid: tuple[float, ...]) -> TrialRecord | None:
    """The grid's choice among its finished trials: the simplest level (closest to the harden sigma, ``grid``'s
    order) within one standard error of the best (``selection.simplest_within_one_se``); None if none finished."""
    ok = sorted((t for t in journal.trials if t.stage == NOISE_GRID and t.status == "ok" and t.train_sigma in grid),
                key=lambda t: grid.index(t.train_sigma))
    if not ok:
        return None
    return ok[simplest_within_one_se(ok)]
