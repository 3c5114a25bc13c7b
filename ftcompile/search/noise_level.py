"""The training-noise level of the +noise methods, chosen by a short grid (``--train-sigma auto``, the default).

Noise injection trains under lognormal drift; the best sigma to train under is not always the sigma the model
is signed off at. Measured (README, "Training noise"): the 160-epoch ResNet-20 hardened at 0.3 kept 73.4%
under drift trained at 0.15 against 68.8% trained at 0.3 (and 83.2% clean against 76.6%), while the MNIST
LeNet at 0.6 did best trained at 0.6 (93.45% against 92.36% at 0.45 and 91.07% at 0.3). No one ratio serves
both, so each harden tries a few with short fine-tunes (``--epochs`` on ``--trial-fraction`` of the training
set, like a rate trial, on the final fit's learning-rate schedule) and keeps the one the search's own objective
(the score under the target drift on the validation set) ranks first. Measured since: it chose the level the
long fits put first on LeNet (0.6) and ResNet-20 (0.15; 74% of the loss back, clean -1.5), lifted the PennFudan
U-Net, and chose by noise on the PennFudan detector (12-step trials, 25 validation images; README). The grid
stops at the harden sigma, and the detector did best trained above it (0.35 for 0.25, README "PennFudan
detector trained above its harden sigma"): not added to the grid, which would change every other network's
choice for one tiny task's measurement.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

from ftcompile.search.executor import Executor, TrialTask, retried
from ftcompile.search.journal import NOISE_GRID, Journal, TrialRecord, trial_record

# shares of the harden sigma tried: the two levels measured best above and one between them
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
            on_trial(record, _best(journal) or record)
    best = _best(journal)
    return grid[0] if best is None else best.train_sigma


def _best(journal: Journal) -> TrialRecord | None:
    ok = [t for t in journal.trials if t.stage == NOISE_GRID and t.status == "ok"]
    return max(ok, key=lambda t: t.objective) if ok else None
