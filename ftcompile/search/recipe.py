"""The hardening recipe the default search chooses: training-noise scale, dropout per stage, learning-rate scale.

A recipe is a point of a small continuous space, searched by the same BoTorch controller as the paper's rates
(``controller.py``), trial by trial (short fine-tunes, ``--epochs`` on ``--trial-fraction`` of the training set,
scored by the Monte-Carlo objective on the validation data), with the trial journal and ``--resume`` of the rate
search:

- ``noise_scale``: the lognormal sigma trained under, relative to the target sigma, from ``NOISE[0]`` (well below)
  to ``NOISE[1]`` (above it), on a log axis; searched when training samples lognormal noise and no
  ``--train-sigma`` is given (a device preset trains under its own physics);
- ``dropout``: one rate per stage (sites after layers of one width share it, ``space.rate_space``; more than
  ``MAX_STAGES`` such groups are merged into that many, in depth order, so that a few trials can learn the
  space), ``0`` to ``DROPOUT_MAX``: the paper's knob, where it helps;
- ``lr_scale``: the learning rate relative to ``--lr``, ``LR[0]`` to ``LR[1]`` on a log axis.

The controller works on the unit cube; ``RecipeSpace`` maps a point to a recipe. The first trial is always the
plain recipe (the target sigma, no dropout, the given learning rate): what a user gets without a search, and the
simplest candidate of the choice. The choice (``choose``) reads the GP's posterior mean at every finished trial and
keeps the simplest recipe within one standard error of the best (``selection.py``), simplicity being the distance
from the plain recipe (``Recipe.complexity``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

NOISE = (0.25, 1.5)     # training sigma / target sigma
DROPOUT_MAX = 0.5
LR = (1 / 3, 3.0)       # learning rate / --lr
RECIPE_TRIALS = 8       # --trials auto for the recipe search
MAX_STAGES = 3          # dropout coordinates at most: early, middle and late layers


@dataclass(frozen=True)
class Recipe:
    """What the final fine-tune is told: train under ``noise_scale`` x the target sigma (None: no lognormal noise
    searched), with ``rates`` per dropout site, at ``lr_scale`` x ``--lr``."""

    noise_scale: float | None = 1.0
    rates: tuple = ()
    lr_scale: float = 1.0

    def complexity(self) -> float:
        """Distance from the plain recipe: ``|log2 noise_scale| + sum of rates + |log2 lr_scale|`` (0 for plain)."""
        noise = abs(math.log2(self.noise_scale)) if self.noise_scale else 0.0
        return noise + sum(self.rates) + abs(math.log2(self.lr_scale))


@dataclass(frozen=True)
class RecipeSpace:
    """Coordinates of a unit-cube point: ``[noise]`` if ``noise``, one per dropout stage, ``[lr]`` if ``lr``.
    ``stages[i]`` is the stage of dropout site ``i``."""

    noise: bool
    stages: tuple
    lr: bool = True
    names: tuple = field(default=(), compare=False)

    @property
    def n_stages(self) -> int:
        return max(self.stages) + 1 if self.stages else 0

    @property
    def dim(self) -> int:
        return int(self.noise) + self.n_stages + int(self.lr)

    def recipe(self, point) -> Recipe:
        """The recipe at a point of ``[0, 1]^dim``."""
        p = [float(v) for v in point]
        noise = _log_lerp(NOISE, p.pop(0)) if self.noise else None
        stage = [DROPOUT_MAX * p.pop(0) for _ in range(self.n_stages)]
        lr = _log_lerp(LR, p.pop(0)) if self.lr else 1.0
        return Recipe(noise, tuple(stage[s] for s in self.stages), lr)

    def plain(self) -> tuple:
        """The point of the plain recipe (noise scale 1, no dropout, learning-rate scale 1)."""
        return tuple(([_unlerp(NOISE, 1.0)] if self.noise else []) + [0.0] * self.n_stages
                     + ([_unlerp(LR, 1.0)] if self.lr else []))


def _log_lerp(bounds: tuple, u: float) -> float:
    lo, hi = (math.log(b) for b in bounds)
    return math.exp(lo + u * (hi - lo))


def _unlerp(bounds: tuple, value: float) -> float:
    lo, hi = (math.log(b) for b in bounds)
    return (math.log(value) - lo) / (hi - lo)


def recipe_space(*, noise: bool, stages: tuple, lr: bool = True) -> RecipeSpace:
    """The space over dropout sites grouped in ``stages`` (``space.rate_space("per-stage")``'s groups), merged into
    at most ``MAX_STAGES`` in depth order."""
    n = max(stages) + 1 if stages else 0
    if n > MAX_STAGES:
        stages = tuple(g * MAX_STAGES // n for g in stages)
    return RecipeSpace(noise, tuple(stages), lr)


def choose(recipes: list[Recipe], means: list, stds: list) -> int:
    """Index of the recipe kept among finished trials: the simplest (``Recipe.complexity``) whose posterior mean is
    within one posterior standard error of the best (``selection.simplest_within_one_se``)."""
    from types import SimpleNamespace

    from ftcompile.search.selection import simplest_within_one_se

    order = sorted(range(len(recipes)), key=lambda i: recipes[i].complexity())
    scored = [SimpleNamespace(mean=means[i], stderr=stds[i]) for i in order]
    return order[simplest_within_one_se(scored)]
