"""Multi-fidelity trials of the recipe search (``--low-fidelity F``): cheap, correlated trials beside full ones.

A trial's fidelity is the share of the trial's training subset it fine-tunes on: 1 is today's trial, ``F`` fine-tunes
on the first ``F`` of the same fixed random subset (nested, so the two fidelities see the same examples as far as the
smaller goes, and their scores correlate). Scoring is the same at both: the full validation data, K drift samples.

What BoTorch offers for this (Wu et al. 2019, "Practical multi-fidelity Bayesian optimization for hyperparameter
tuning"): a ``SingleTaskMultiFidelityGP`` over the recipe plus a fidelity column, whose kernel learns how far the
cheap trials stand from full ones, and a cost-aware acquisition that picks the point and its fidelity by the
information per unit of cost (``InverseCostWeightedUtility`` over an ``AffineFidelityCostModel``). Of the two
acquisitions BoTorch offers for it, multi-fidelity knowledge gradient took 18-26 s per proposal in a one-off timing
(a 4-D recipe, 10 trials, one CPU thread; not a committed benchmark), multi-fidelity max-value entropy 4 s: trials
of the small models here take seconds, so the search uses max-value entropy (``qMultiFidelityMaxValueEntropy``,
Takeno et al. 2020).

The budget stays ``--trials`` full trials' worth: each trial spends its ``cost`` in full-trial units, so a search that
picks cheap trials runs more of them in the same time. The cost is counted, not timed, so a search is reproducible:
a trial does ``3 x epochs x examples`` forward-equivalents of training (a backward pass counted as two forwards) and
``samples x validation examples`` forwards of scoring, the scoring the same at every fidelity.
"""
from __future__ import annotations

from dataclasses import dataclass

TARGET = 1.0  # the fidelity the choice is made at: a full trial


@dataclass(frozen=True)
class Fidelity:
    """Trials at ``low`` (a share of the trial subset) or at ``TARGET``; ``fixed``: the share of a full trial's cost
    that does not shrink with its data (the scoring)."""

    low: float
    fixed: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.low < TARGET:
            raise ValueError(f"the low fidelity must be in (0, {TARGET}), not {self.low}")
        if not 0 <= self.fixed < 1:
            raise ValueError(f"the fixed share of a trial's cost must be in [0, 1), not {self.fixed}")

    @property
    def levels(self) -> tuple[float, float]:
        return (self.low, TARGET)

    def cost(self, fidelity: float) -> float:
        """A trial's cost in full trials: ``fixed + (1 - fixed) x fidelity``."""
        return self.fixed + (1 - self.fixed) * fidelity


def fixed_share(*, epochs: int, train_examples: int, samples: int, val_examples: int) -> float:
    """The share of a full trial's work spent scoring: ``samples x val / (samples x val + 3 x epochs x train)``."""
    score = samples * val_examples
    return score / (score + 3 * epochs * train_examples)


def cost_model(fidelity: Fidelity, column: int):
    """BoTorch's affine cost over the fidelity ``column``, in full-trial units, weighted into the utility."""
    from botorch.acquisition.cost_aware import InverseCostWeightedUtility
    from botorch.models.cost import AffineFidelityCostModel

    costs = AffineFidelityCostModel(fidelity_weights={column: 1 - fidelity.fixed}, fixed_cost=fidelity.fixed)
    return InverseCostWeightedUtility(cost_model=costs)


def at_target(X, column: int):
    """``X`` with its fidelity ``column`` set to ``TARGET``: where the choice and the max values are read."""
    from botorch.acquisition.utils import project_to_target_fidelity

    return project_to_target_fidelity(X, {column: TARGET}, d=X.shape[-1])
