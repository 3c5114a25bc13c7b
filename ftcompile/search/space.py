"""The search space: how a point the controller proposes becomes one dropout rate per site.

``per-layer`` is the paper's space (one rate per site). On deep networks that is 20-60 dimensions; two
structured spaces tie sites together so that a GP can learn from a CPU's budget of trials:

- ``per-stage``: consecutive sites that follow layers of the same width (output channels or features)
  share a rate. A ResNet-20's 19 sites become its 3 stages (16, 32, 64 channels); an MLP's layers of
  equal width share one.
- ``shared``: one rate for every site (the best of a 1-D search).

A point is ``d`` numbers in ``[0, max_rate]``; ``rates(point)`` spreads them over the sites.
"""
from __future__ import annotations

from dataclasses import dataclass

SPACES = ("per-layer", "per-stage", "shared")


@dataclass(frozen=True)
class RateSpace:
    """``groups[i]`` is the point coordinate that sets site ``i``'s rate."""

    kind: str
    groups: tuple

    @property
    def dim(self) -> int:
        return max(self.groups) + 1 if self.groups else 0

    def rates(self, point) -> list[float]:
        return [float(point[g]) for g in self.groups]


def site_widths(gm, sites) -> list[int]:
    """Output width of the layer each site follows (channels of a convolution, features of a linear)."""
    widths = []
    for layer in sites.layers:
        mod = gm.get_submodule(layer)
        widths.append(int(getattr(mod, "out_channels", getattr(mod, "out_features", 0))))
    return widths


def rate_space(kind: str, widths: list[int]) -> RateSpace:
    """The space of ``kind`` over sites whose layers have ``widths`` (in site order)."""
    if kind not in SPACES:
        raise ValueError(f"rate space must be one of {SPACES}")
    if kind == "per-layer" or not widths:
        return RateSpace(kind, tuple(range(len(widths))))
    if kind == "shared":
        return RateSpace(kind, (0,) * len(widths))
    groups, stage = [0], 0
    for prev, width in zip(widths, widths[1:]):
        stage += width != prev
        groups.append(stage)
    return RateSpace(kind, tuple(groups))
