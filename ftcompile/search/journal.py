"""The trial journal: one JSON line per finished trial, fsync'd, so a killed search resumes where it was."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ftcompile.errors import ConfigError, OutputError
from ftcompile.fileio import write_text_atomic


# the stages whose trials a journal holds: the paper's rate search, the training-noise grid, the recipe search
RATE_SEARCH, NOISE_GRID, RECIPE = "rates", "train-sigma", "recipe"


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial: the rates tried, the objective (mean, its standard error), time and seed."""

    trial: int
    rates: list
    objective: float
    stderr: float
    seconds: float
    seed: int
    status: str = "ok"          # "failed": the trial raised twice (or its worker died); the GP sees it as the worst
    error: str = ""
    origin: str = ""            # where the point came from: design, bo, random, grid, or retry (second attempt)
    point: list | None = None   # the controller's point when sites share rates (None: the rates themselves)
    stage: str = RATE_SEARCH    # RATE_SEARCH, or NOISE_GRID (the training-noise grid, noise_level.py)
    train_sigma: float | None = None  # the lognormal sigma the trial trained under (+noise methods)
    lr_scale: float | None = None     # the recipe's learning rate relative to --lr
    fidelity: float = 1.0             # the share of the trial subset it fine-tuned on (--low-fidelity, fidelity.py)

    @property
    def mean(self) -> float:
        """The objective's mean (what ``selection.simplest_within_one_se`` compares)."""
        return self.objective

    @property
    def x(self) -> list:
        """The point in the search space (what the GP learns from)."""
        return self.rates if self.point is None else self.point

    @property
    def tried(self) -> str:
        """What the trial tried, for tables: its rates (or shared point), or its training sigma."""
        if self.stage == NOISE_GRID:
            return f"train sigma {self.train_sigma:g}"
        if self.stage == RECIPE:
            noise = f"train sigma {self.train_sigma:.3g}, " if self.train_sigma is not None else ""
            rates = sorted(set(round(r, 2) for r in self.rates))
            low = f", on {self.fidelity:.0%} of the trial data" if self.fidelity < 1 else ""
            return f"{noise}dropout {', '.join(f'{r:.2f}' for r in rates) or 'none'}, lr x{self.lr_scale:.2f}{low}"
        return ", ".join(f"{r:.2f}" for r in self.x)


def trial_record(done, point: list | None = None, **extra) -> TrialRecord:
    """The journal line of a finished attempt (``executor.Done``): its score, or the error that ended it."""
    task = done.task
    common = dict(seconds=done.seconds, seed=task.seed, origin=task.origin, point=point, **extra)
    if done.failed:
        return TrialRecord(task.trial, list(task.rates), float("nan"), float("nan"), status="failed",
                           error=f"{type(done.result).__name__}: {done.result}"[:300], **common)
    return TrialRecord(task.trial, list(task.rates), done.result.mean, done.result.stderr, **common)


class Journal:
    """Append-only JSONL; the first line pins the search config so ``--resume`` cannot mix runs.

    Opening checks a journal to resume at once (before any long work); nothing is written until the
    first trial finishes, so a run that stops on bad input leaves no journal behind.
    """

    def __init__(self, path: Path, config: dict, *, resume: bool):
        self.path = Path(path)
        self.config = config
        self.key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
        self.trials: list[TrialRecord] = []
        self._started = resume and self.path.exists()
        if self._started:
            self._load()
        elif not resume:
            self.path.unlink(missing_ok=True)  # an old run's journal must not pass for this run's

    def _load(self) -> None:
        text = self.path.read_text()
        lines = text.splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
        except ValueError:
            header = {}
        if header.get("config_key") != self.key:
            raise ConfigError(f"{self.path}: journal was written by a run with other settings; "
                              "drop --resume to start over, or rerun with the same flags.")
        kept = [lines[0]]
        for line in lines[1:]:
            try:
                row = json.loads(line)
                if row.get("kind") == "trial":
                    row.pop("kind")
                    self.trials.append(TrialRecord(**row))
                kept.append(line)
            except (ValueError, TypeError):  # a line cut by a crash: the trial it described is redone
                break
        if len(kept) < len(lines) or not text.endswith("\n"):
            # drop the cut tail so that the next append starts on a line of its own
            write_text_atomic(self.path, "\n".join(kept) + "\n")

    def append(self, record: TrialRecord) -> None:
        if not self._started:
            self._write({"kind": "header", "config_key": self.key, "config": self.config})
            self._started = True
        self.trials.append(record)
        self._write({"kind": "trial", **asdict(record)})

    def _write(self, row: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a cut line is dropped on --resume: the journal stays consistent
            raise OutputError(f"{self.path}: cannot append to the journal ({exc.strerror or exc}); free some space, "
                              "then rerun with --resume (finished trials are kept).") from None
