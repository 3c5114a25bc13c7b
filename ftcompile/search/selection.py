"""The one rule every choice among candidates follows: the simplest candidate within one standard error of the best.

Candidates come ordered from the simplest (the default a user would get without a search: the target sigma as
training noise, no blend) to the most elaborate. Each has a score under drift (mean over the K common drift
samples of the objective) and its standard error. The rule keeps the simplest candidate whose mean is within one
standard error of the best mean (the one-standard-error rule: Breiman et al. 1984; Hastie et al., ESL 7.10): a
candidate must beat the simpler ones by more than the best score's own Monte-Carlo error to be chosen. A plain
argmax over noisy short trials picks by noise (on the PennFudan detector's 25 validation images it cost 0.13 mAP
over three seeds); this rule trades at most one standard error on the validation objective for a choice that
does not move with the noise.

Used by the training-noise grid (``noise_level.py``), the blend share (``blend.py``) and anything else that
chooses among scored candidates: one implementation, so every choice reads the same in the reports.
"""
from __future__ import annotations

from typing import Sequence


def simplest_within_one_se(scores: Sequence) -> int:
    """Index of the first (simplest) score whose mean is within one standard error of the best one.

    Args:
        scores: objects with ``mean`` and ``stderr`` (``objective.Score``), simplest first; at least one.
    Returns:
        The index of the chosen candidate.
    Example:
        >>> from types import SimpleNamespace as S
        >>> simplest_within_one_se([S(mean=0.80, stderr=0.01), S(mean=0.805, stderr=0.01)])
        0
        >>> simplest_within_one_se([S(mean=0.80, stderr=0.01), S(mean=0.83, stderr=0.01)])
        1
    """
    if not scores:
        raise ValueError("no candidates to choose from")
    best = max(scores, key=lambda s: s.mean)
    return next(i for i, s in enumerate(scores) if best.mean - s.mean <= best.stderr)
