"""``insert_dropout``: a dropout site after every non-output crossbar layer (BayesFT's search space)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ftcompile.passes.layers import find_layers

_ACT_FUNCS = {F.relu, torch.relu, F.leaky_relu, torch.sigmoid, torch.tanh, F.gelu, F.elu, F.selu, F.silu,
              F.hardswish, F.mish, F.relu6, F.hardtanh, torch.clamp}
_ACT_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ELU, nn.SELU, nn.SiLU, nn.ReLU6,
                nn.Hardtanh, nn.Hardswish, nn.Mish)
_NORM_MODULES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


class DropoutSite(nn.Module):
    """Dropout whose rate is set in place between trials; identity in eval mode or at rate 0."""

    def __init__(self, rate: float = 0.0, channel: bool = False):
        super().__init__()
        self.rate = float(rate)
        self.channel = channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0:
            return x
        if self.channel and x.dim() >= 3:
            # one mask entry per (example, channel), broadcast over the spatial dims
            keep = torch.rand(x.shape[:2] + (1,) * (x.dim() - 2), device=x.device) >= self.rate
            return x * keep / (1 - self.rate)
        return F.dropout(x, self.rate, True)

    def extra_repr(self) -> str:
        return f"rate={self.rate:g}, channel={self.channel}"


@dataclass
class DropoutSites:
    """The inserted sites in graph order; ``set_rates`` changes them without rebuilding the graph."""

    gm: fx.GraphModule
    names: list = field(default_factory=list)      # submodule names
    layers: list = field(default_factory=list)     # the layer each site follows
    tensors: list = field(default_factory=list)    # ONNX tensor each site follows ("" if unknown)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def rates(self) -> list[float]:
        return [self.gm.get_submodule(n).rate for n in self.names]

    def set_rates(self, rates: Sequence[float]) -> None:
        if len(rates) != len(self.names):
            raise ValueError(f"{len(self.names)} dropout sites, {len(rates)} rates given")
        for name, rate in zip(self.names, rates):
            if not 0 <= float(rate) < 1:
                raise ValueError(f"dropout rate {rate} is outside [0, 1)")
            self.gm.get_submodule(name).rate = float(rate)


def _follow(gm: fx.GraphModule, node: fx.Node) -> fx.Node:
    """The node after which the site goes: past a sole normalization, then a sole activation."""
    def sole_user(n):
        return next(iter(n.users)) if len(n.users) == 1 else None

    def is_module(n, types):
        return n is not None and n.op == "call_module" and isinstance(gm.get_submodule(n.target), types)

    nxt = sole_user(node)
    if is_module(nxt, _NORM_MODULES):
        after = sole_user(nxt)
        if after is not None and (after.target in _ACT_FUNCS or is_module(after, _ACT_MODULES)):
            return after
        return node
    if nxt is not None and ((nxt.op == "call_function" and nxt.target in _ACT_FUNCS) or is_module(nxt, _ACT_MODULES)):
        return nxt
    return node


def insert_after(gm: fx.GraphModule, anchor: fx.Node, submodule: str) -> fx.Node:
    """A call of ``gm``'s submodule ``submodule`` on ``anchor``'s output, which every other user of ``anchor``
    now reads instead (call ``gm.recompile()`` when done)."""
    with gm.graph.inserting_after(anchor):
        node = gm.graph.call_module(submodule, (anchor,))
    anchor.replace_all_uses_with(node, delete_user_cb=lambda user: user is not node)
    return node


def insert_dropout(gm: fx.GraphModule, *, rate: float = 0.0, channel: bool = False,
                   skip_output: bool = True) -> DropoutSites:
    """Append a ``DropoutSite`` after every crossbar layer except output layers; return the sites in order.

    The site follows the layer's activation when one follows it (the usual spot), else the layer.
    ``channel=True`` drops whole channels of convolution outputs. Mutates ``gm`` in place.
    """
    sites = DropoutSites(gm)
    for index, layer in enumerate(find_layers(gm)):
        if layer.is_output and skip_output:
            continue
        anchor = _follow(gm, next(n for n in gm.graph.nodes if n.name == layer.node))
        name = f"dropout_{index}"
        gm.add_submodule(name, DropoutSite(rate, channel=channel and "Conv" in layer.kind))
        site = insert_after(gm, anchor, name)
        site.meta["onnx_tensor"] = anchor.meta.get("onnx_tensor", "")
        sites.names.append(name)
        sites.layers.append(layer.target)
        sites.tensors.append(site.meta["onnx_tensor"])
    gm.recompile()
    return sites
