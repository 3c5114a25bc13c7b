"""How a layer sits on a chip's tiles, and the drift of a tiled layer: per tile its own devices, column scales,
drift compensation and random stream.

A crossbar layer's weight (in its ONNX layout) has an output axis and an input axis; a convolution adds a kernel
window of ``kernel`` rows per input channel. In canonical layout (``out x in x kernel...``) tile ``(i, j)`` holds
output columns ``cols[j]`` and input channels ``rows[i]`` (whole channels: ``chip.channel_split``). Its key,
``"<layer>#<i>.<j>"``, names its converter range, its output-noise streams and its compensation input.

``ChipDrift`` applies a drift model tile by tile: tile ``t`` of tensor ``name`` in Monte-Carlo sample ``k`` of seed
``s`` draws from ``drift.tensor_rng(s, k, name, t)`` (a layer on one tile draws exactly what the untiled runtime
draws), maps its own column scales (the device's ``per_channel``) and computes its own compensation factor. The
factor is not folded into the weights: a chip applies it digitally after the tile's ADC, so the ADC and the output
noise see the drifted (shrunken) signal, as in aihwkit (``InferenceTile.post_forward``: ``x_output * alpha``). The
factors go to the twin as inputs ``COMP_PREFIX + key`` (one value per column of the tile).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from array_api_compat import array_namespace

COMP_PREFIX = "ftcompile_comp:"  # + tile key: that tile's drift-compensation factors, one per column (1-D)


@dataclass(frozen=True)
class Tile:
    key: str
    i: int
    j: int
    chans: slice   # input channels (canonical axis 1)
    cols: slice    # output columns (canonical axis 0)
    rows: int      # crossbar rows in use: channels x kernel


@dataclass(frozen=True)
class LayerTiles:
    """Layer ``layer`` (its weight initializer ``weight``, of ``shape``, ``op``) on row tiles of ``rows`` input
    channels each and column tiles of ``cols`` outputs each; ``out_axis``/``in_axis``: where outputs and inputs sit
    in the weight as stored; ``kernel``: rows per input channel."""

    layer: str
    weight: str
    op: str
    shape: tuple
    out_axis: int
    in_axis: int
    rows: tuple
    cols: tuple
    kernel: int = 1

    @property
    def tiles(self) -> list[Tile]:
        out, c0 = [], 0
        for i, nc in enumerate(self.rows):
            o0 = 0
            for j, no in enumerate(self.cols):
                out.append(Tile(f"{self.layer}#{i}.{j}", i, j, slice(c0, c0 + nc), slice(o0, o0 + no),
                                nc * self.kernel))
                o0 += no
            c0 += nc
        return out

    def _order(self, ndim: int) -> list[int]:
        rest = [a for a in range(ndim) if a not in (self.out_axis, self.in_axis)]
        return [self.out_axis, self.in_axis, *rest]

    def canonical(self, w):
        """``w`` (as stored) as ``out x in x kernel...`` (any array namespace)."""
        order = self._order(len(w.shape))
        return w if order == list(range(len(order))) else array_namespace(w).permute_dims(w, tuple(order))

    def from_canonical(self, c):
        order = self._order(len(c.shape))
        if order == list(range(len(order))):
            return c
        return array_namespace(c).permute_dims(c, tuple(int(a) for a in np.argsort(order)))


def split_apply(drift, w: np.ndarray, rng: np.random.Generator):
    """``drift`` on ``w``: the read-back weights before compensation and the compensation factor (None: none, or
    folded into the weights by a model that cannot separate it)."""
    if hasattr(drift, "apply_split"):
        return drift.apply_split(w, rng)
    return drift.apply(w, rng), None


@dataclass(frozen=True)
class ChipDrift:
    """``inner`` applied per tile of the ``layers`` (see module doc); tensors of no tiled layer drift as usual.
    ``compensation(seed, k)``: the factors of the last samples drawn (the torch twin reads them)."""

    inner: object
    layers: tuple
    _by_weight: dict = field(init=False, repr=False, compare=False)
    _factors: OrderedDict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_weight", {layer.weight: layer for layer in self.layers})
        object.__setattr__(self, "_factors", OrderedDict())

    elementwise = False

    def spec(self) -> str:
        return self.inner.spec()

    def apply(self, w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.inner.apply(w, rng)

    def draw_sample(self, weights: dict, seed: int, sample: int, only=None) -> dict:
        """Drifted copies of ``weights`` for one sample, and every tiled layer's compensation inputs."""
        from ftcompile.runtime.drift import drift_tensor

        out, factors = {}, {}
        for name, w in weights.items():
            if name.startswith(COMP_PREFIX):  # a layer not drawn here keeps the factors it was given
                out[name] = w
                continue
            layer = self._by_weight.get(name)
            if only is not None and name not in only:
                out[name] = w
            elif layer is None:
                out[name] = drift_tensor(self.inner, w, seed, sample, name)
            else:
                out[name], tiles = self._tiled(layer, w, seed, sample)
                factors.update(tiles)
            if layer is not None:
                for tile in layer.tiles:
                    factors.setdefault(tile.key, np.ones(tile.cols.stop - tile.cols.start, np.float32))
        self._factors[(int(seed), int(sample))] = factors
        while len(self._factors) > 4:
            self._factors.popitem(last=False)
        out.update({COMP_PREFIX + key: v for key, v in factors.items()})
        return out

    def compensation(self, seed: int, sample: int) -> dict | None:
        return self._factors.get((int(seed), int(sample)))

    def _tiled(self, layer: LayerTiles, w: np.ndarray, seed: int, sample: int):
        from ftcompile.runtime.drift import tensor_rng

        c = layer.canonical(w)
        out = np.empty(c.shape, w.dtype)
        factors = {}
        for t, tile in enumerate(layer.tiles):
            block = np.ascontiguousarray(c[tile.cols, tile.chans])
            drifted, factor = split_apply(self.inner, block, tensor_rng(seed, sample, layer.weight, t))
            out[tile.cols, tile.chans] = drifted
            n = tile.cols.stop - tile.cols.start
            factors[tile.key] = (np.ones(n, np.float32) if factor is None else
                                 np.broadcast_to(np.asarray(factor, np.float32).reshape(-1), (n,)).copy())
        return np.ascontiguousarray(layer.from_canonical(out)), factors

    def apply_torch_named(self, w, gen, name: str):
        """Training noise: the same physics per tile on a torch tensor (as the runtime lays it out), differentiable;
        the compensation is folded into the weights (the training forward has no per-sample factors)."""
        import torch

        layer = self._by_weight.get(name)
        if layer is None:
            return self.inner.apply_torch(w, gen)
        c = layer.canonical(w)
        rows = []
        for i in range(len(layer.rows)):
            blocks = [self.inner.apply_torch(c[t.cols, t.chans], gen) for t in layer.tiles if t.i == i]
            rows.append(torch.cat(blocks, 0))
        return layer.from_canonical(torch.cat(rows, 1))

    def apply_torch(self, w, gen):
        return self.inner.apply_torch(w, gen)
