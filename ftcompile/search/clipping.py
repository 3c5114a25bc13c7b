"""Weight clipping and remapping in hardware-aware training (aihwkit's ``WeightClipParameter`` and
``WeightRemapParameter``, applied by ``InferenceTile.post_update_step`` after every mini-batch).

aihwkit keeps a tile's weights normalized (``weights / scale``) and its scales digital. After each optimizer step
it clips the normalized weights, then (remap) divides each output channel (``channel``) or the whole tile
(``layer``) by its max ``|w|`` again and moves that factor into the scales. ftcompile trains the layer's weights in
their own units, where a remap changes nothing the network computes; what it changes is the reference of the clip.
So, per crossbar weight tensor (the drifting ones), after every step:

- ``clip=gaussian:K`` (``LAYER_GAUSSIAN``, aihwkit's ``sigma`` = 2.5): ``|w| <= K std(W)``; the remap plays no part.
- ``clip=fixed:V`` (``FIXED_VALUE``): ``|w_ij| <= V m``, the reference ``m`` set by the remap:
  ``channel`` (``CHANNELWISE_SYMMETRIC``) the max ``|w|`` of output channel ``j`` before this step (with ``V`` = 1,
  aihwkit's standard preset: no weight may grow past its channel's largest); ``layer`` (``LAYERWISE_SYMMETRIC``) the
  tensor's max before the step; ``none`` the max of channel ``j`` of the source model, fixed (aihwkit without remap:
  the scales of the conversion).

What aihwkit does beyond this and ftcompile does not: its learned out-scaling lets a channel's digital scale grow
while its normalized weights are held; here the weights are the product.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ftcompile.errors import ConfigError

CLIPS = ("none", "gaussian", "fixed")
REMAPS = ("none", "channel", "layer")


def parse_clip(spec: str | None) -> tuple[str, float]:
    """``none``, ``gaussian:K`` (K > 0) or ``fixed:V`` (V > 0) -> (kind, value)."""
    if spec in (None, "", "none"):
        return "none", 0.0
    kind, _, value = str(spec).partition(":")
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if kind not in CLIPS[1:] or not number > 0:
        raise ConfigError(f"--weight-clip {spec!r} must be none, gaussian:K (clip at K standard deviations of each "
                          "layer, e.g. gaussian:2.5) or fixed:V (V times the remap's reference max, e.g. fixed:1).")
    return kind, number


def check_remap(remap: str | None) -> str:
    remap = "none" if remap in (None, "") else remap
    if remap not in REMAPS:
        raise ConfigError(f"--weight-remap {remap!r} must be one of {', '.join(REMAPS)}.")
    return remap


def _out_axis(module: torch.nn.Module, name: str) -> int:
    owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
    return 1 if isinstance(owner, torch.nn.modules.conv._ConvTransposeNd) else 0


def _channel_max(w: torch.Tensor, axis: int) -> torch.Tensor:
    """Max ``|w|`` per output channel, shaped to broadcast over ``w``."""
    a = w.detach().abs().movedim(axis, 0)
    m = a.reshape(a.shape[0], -1).amax(1)
    shape = [1] * w.dim()
    shape[axis] = -1
    return m.reshape(shape)


@dataclass
class WeightClip:
    """The clip (and remap) of the crossbar weights ``names`` of a module, after every optimizer step."""

    kind: str
    value: float
    remap: str
    names: tuple

    def start(self, module: torch.nn.Module) -> None:
        """Before a fine-tune: the references from the weights it starts from."""
        params = dict(module.named_parameters())
        self._axes = {n: _out_axis(module, n) for n in self.names}
        self._ref = {n: self._reference(params[n], n) for n in self.names}

    def _reference(self, w: torch.Tensor, name: str) -> torch.Tensor:
        if self.remap == "layer":
            return w.detach().abs().max().clone()
        return _channel_max(w, self._axes[name]).clone()

    @torch.no_grad()
    def step(self, module: torch.nn.Module) -> None:
        params = dict(module.named_parameters())
        for n in self.names:
            w = params[n]
            if self.kind == "gaussian":
                bound = self.value * w.std()
            else:
                bound = self.value * self._ref[n]
            w.copy_(torch.maximum(torch.minimum(w, bound), -bound))
            if self.kind == "fixed" and self.remap != "none":
                self._ref[n] = self._reference(w, n)


def weight_clip(clip: str | None, remap: str | None, module: torch.nn.Module, keys: dict | None) -> WeightClip | None:
    """The clip of ``module``'s crossbar weights (the drifting parameters of ``keys`` with a matrix or kernel, every
    such parameter when ``keys`` is None); None when ``clip`` is none."""
    kind, value = parse_clip(clip)
    remap = check_remap(remap)
    if kind == "none":
        return None
    names = tuple(n for n, p in module.named_parameters() if p.dim() > 1 and (keys is None or n in keys))
    return WeightClip(kind, value, remap, names)
