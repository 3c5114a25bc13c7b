"""The hardening line: import -> insert_dropout -> search (rates) x fine-tune (weights) -> export -> sign-off."""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ftcompile.errors import ConfigError, Interrupted
from ftcompile.search.controller import KERNELS, SEARCHES, Controller
from ftcompile.search.journal import Journal, TrialRecord
from ftcompile.search.objective import OBJECTIVES, DriftObjective, Score
from ftcompile.search.trainer import TrainConfig, fine_tune

METHODS = ("bayesft", "bayesft+noise", "erm", "fixed-dropout", "noise-injection")


@dataclass(frozen=True)
class HardenConfig:
    """Every knob of ``harden``; defaults are the measured ones (README)."""

    sigma: float = 0.6
    method: str = "bayesft"
    trials: int = 20
    epochs: int = 3
    final_epochs: int = 15
    samples: int = 20
    max_rate: float = 0.8
    rate: float = 0.3              # fixed-dropout's rate
    train_sigma: float | None = None  # drift sampled while training (+noise methods); default sigma
    search: str = "bo"
    kernel: str = "matern52"
    objective: str = "accuracy"
    lr: float = 1e-3
    batch_size: int = 64
    channel: bool = False
    seed: int = 0
    device: str = "cpu"
    time_budget: float | None = None  # seconds for the search; finished trials are kept

    def __post_init__(self) -> None:
        checks = [(self.method in METHODS, f"--method must be one of {', '.join(METHODS)}"),
                  (self.search in SEARCHES, f"--search must be one of {', '.join(SEARCHES)}"),
                  (self.kernel in KERNELS, f"--kernel must be one of {', '.join(KERNELS)}"),
                  (self.objective in OBJECTIVES, f"--objective must be one of {', '.join(OBJECTIVES)}"),
                  (self.sigma >= 0 and np.isfinite(self.sigma), "--sigma must be >= 0"),
                  (self.trials >= 1, "--trials must be >= 1"), (self.epochs >= 0, "--epochs must be >= 0"),
                  (self.final_epochs >= 0, "--final-epochs must be >= 0"), (self.samples >= 1, "--samples must be >= 1"),
                  (0 < self.max_rate < 1, "--max-rate must be in (0, 1)"), (0 <= self.rate < 1, "--rate must be in [0, 1)"),
                  (self.lr > 0, "--lr must be > 0"), (self.batch_size >= 1, "--batch-size must be >= 1"),
                  (self.device in ("cpu", "cuda") or self.device.startswith("cuda:"), "--device must be cpu or cuda"),
                  (self.time_budget is None or self.time_budget > 0, "--time-budget must be > 0")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message}.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is visible to torch; use --device cpu.")

    @property
    def searches(self) -> bool:
        return self.method in ("bayesft", "bayesft+noise")

    @property
    def noise(self) -> float:
        if self.method in ("bayesft+noise", "noise-injection"):
            return self.sigma if self.train_sigma is None else self.train_sigma
        return 0.0


@dataclass
class SearchOutcome:
    rates: list
    trials: list = field(default_factory=list)
    best_trial: int | None = None
    final_score: Score | None = None
    base_score: Score | None = None
    seconds: float = 0.0


def _tensors(dataset, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    (x,) = dataset.inputs.values()
    return torch.from_numpy(x).to(device), torch.from_numpy(dataset.labels).to(device)


def search(module: torch.nn.Module, sites, train, val, cfg: HardenConfig, *, journal: Journal,
           on_trial: Callable[[TrialRecord, TrialRecord], None] | None = None) -> SearchOutcome:
    """Run the method's search (if any) and the final fine-tune; ``module`` ends with the final weights."""
    t0 = time.perf_counter()
    x_tr, y_tr = _tensors(train, cfg.device)
    x_va, y_va = _tensors(val, cfg.device)
    module.to(cfg.device)
    objective = DriftObjective(module, x_va, y_va, sigma=cfg.sigma, samples=cfg.samples, seed=cfg.seed,
                               kind=cfg.objective, device=cfg.device)
    base_state = copy.deepcopy(module.state_dict())
    outcome = SearchOutcome(rates=[0.0] * len(sites), base_score=objective(module))

    def train_with(rates, epochs: int, seed: int) -> Score:
        module.load_state_dict(base_state)
        sites.set_rates(rates)
        fine_tune(module, x_tr, y_tr, TrainConfig(epochs=epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                                                   noise_sigma=cfg.noise, seed=seed), cfg.device)
        return objective(module)

    if cfg.searches and len(sites):
        controller = Controller(len(sites), max_rate=cfg.max_rate, search=cfg.search, kernel=cfg.kernel,
                                seed=cfg.seed, trials=cfg.trials)
        try:
            for i in range(len(journal.trials), cfg.trials):
                if cfg.time_budget is not None and time.perf_counter() - t0 > cfg.time_budget:
                    break
                X = torch.tensor([t.rates for t in journal.trials], dtype=torch.double).reshape(-1, len(sites))
                Y = torch.tensor([t.objective for t in journal.trials], dtype=torch.double)
                rates = [float(r) for r in controller.propose(X, Y)[0]]
                start = time.perf_counter()
                score = train_with(rates, cfg.epochs, cfg.seed + 1000 + i)
                record = TrialRecord(i, rates, score.mean, score.stderr, time.perf_counter() - start, cfg.seed + 1000 + i)
                journal.append(record)
                if on_trial is not None:
                    best = max(journal.trials, key=lambda t: t.objective)
                    on_trial(record, best)
        except KeyboardInterrupt:
            raise Interrupted(f"search interrupted after {len(journal.trials)} trials; the journal "
                              f"{journal.path} keeps them, rerun with --resume to continue.") from None
        outcome.trials = list(journal.trials)
        if outcome.trials:
            X = torch.tensor([t.rates for t in outcome.trials], dtype=torch.double)
            Y = torch.tensor([t.objective for t in outcome.trials], dtype=torch.double)
            outcome.best_trial = controller.best(X, Y)
            outcome.rates = list(outcome.trials[outcome.best_trial].rates)
    elif cfg.method == "fixed-dropout":
        outcome.rates = [cfg.rate] * len(sites)
    epochs = 0 if cfg.method == "erm" else cfg.final_epochs
    try:
        outcome.final_score = train_with(outcome.rates, epochs, cfg.seed)
    except KeyboardInterrupt:
        raise Interrupted("final fine-tuning interrupted; rerun with --resume to keep the search.") from None
    outcome.seconds = time.perf_counter() - t0
    return outcome


def config_dict(cfg: HardenConfig) -> dict:
    """The settings that define a search (what a resumed run must share)."""
    d = asdict(cfg)
    d.pop("time_budget")
    return d


def journal_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".journal.jsonl")
