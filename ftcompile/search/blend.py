"""Blend the fine-tuned weights with the source's: ``w = a * w_source + (1 - a) * w_tuned``.

Weight-space ensembling of a fine-tuned model with the model it started from (WiSE-FT, Wortsman et al.,
CVPR 2022) keeps what the fine-tune learned while giving back part of what it cost on clean inputs. Measured
on ResNet-20 at sigma 0.3 (README, "Blending with the source"): a = 0.1-0.2 gave back 0.9-1.1 points of clean
accuracy for no measurable loss under drift; a = 0.5 lost 4 points under drift.

The share is chosen by the project's one selection rule (``selection.py``): candidates from the simplest, the
fine-tuned model itself (a = 0), to the largest share; the simplest one within one standard error of the best
score under the objective is kept, so a blend is applied only when it scores better under drift, on the
validation data, by more than the Monte-Carlo error.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ftcompile.search.selection import simplest_within_one_se

GRID = (0.1, 0.2, 0.3, 0.4, 0.5)  # the grid recipe's walk; the fine-tuned model itself (a = 0) is always a candidate
SEARCH = tuple(round(0.1 * i, 1) for i in range(1, 10))  # the recipe search's shares: all of (0, 0.9], no walk


@dataclass(frozen=True)
class Blend:
    """The chosen share of the source's weights and every candidate scored: ``(a, mean, stderr)``."""

    alpha: float
    scores: tuple


def blend_state(tuned: dict, source: dict, alpha: float) -> dict:
    """The blended state dict; tensors that are not floating point, not in the source, or not finite (an attention
    mask's -inf fill, which a lerp turns into NaN) stay tuned."""
    out = {}
    for name, t in tuned.items():
        s = source.get(name)
        ok = (s is not None and t.is_floating_point() and s.shape == t.shape and bool(torch.isfinite(t).all())
              and bool(torch.isfinite(s).all()))
        out[name] = torch.lerp(t, s.to(t.device, t.dtype), alpha) if ok else t
    return out


def choose_blend(module: torch.nn.Module, source: dict, objective, tuned_score, grid=GRID, fixed: bool = False,
                 walk: bool = True):
    """Set ``module`` to the blend the one-standard-error rule picks; return ``(Blend, its Score)``.

    ``source``: the state dict the fine-tune started from; ``tuned_score``: the objective's score of
    ``module`` as it is (a = 0). Candidates are tried in increasing ``a``; with ``walk`` the walk stops at the first
    one clearly worse (by more than the best's standard error) than the best so far, otherwise every share of
    ``grid`` is scored (a one-dimensional search with no training: the objective only). ``fixed``: apply ``grid``'s
    only value, no choice (``--blend A``).
    """
    tuned = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if fixed:
        (alpha,) = grid
        module.load_state_dict(blend_state(tuned, source, alpha))
        score = objective(module)
        return Blend(alpha, ((0.0, tuned_score.mean, tuned_score.stderr), (alpha, score.mean, score.stderr))), score
    scored, best = [(0.0, tuned_score)], tuned_score
    for alpha in grid:
        module.load_state_dict(blend_state(tuned, source, alpha))
        score = objective(module)
        scored.append((alpha, score))
        best = max(best, score, key=lambda s: s.mean)
        if walk and best.mean - score.mean > best.stderr:
            break
    alpha, score = scored[simplest_within_one_se([s for _, s in scored])]
    module.load_state_dict(blend_state(tuned, source, alpha))
    return Blend(alpha, tuple((a, s.mean, s.stderr) for a, s in scored)), score
