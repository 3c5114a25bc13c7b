"""``find_layers``: the crossbar-mapped layers of an fx graph, in execution order."""
from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx
from torch import nn

CROSSBAR_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
                  nn.ConvTranspose3d)


@dataclass(frozen=True)
class Layer:
    """A crossbar layer: fx node name, module target, kind, weight shape, parameter count, output flag."""

    node: str
    target: str
    kind: str
    shape: tuple
    params: int
    is_output: bool
    onnx_weight: str = ""


def _is_layer(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), CROSSBAR_TYPES)


def find_layers(gm: fx.GraphModule, sources: dict | None = None) -> list[Layer]:
    """Crossbar layers in execution order; ``is_output`` marks the last weight layer on a path to an output.

    A layer is an output layer when some path from it reaches the graph output without passing
    through another crossbar layer (so the paper's "every layer except the output" is well defined
    for branching graphs too).
    """
    layers = []
    for node in gm.graph.nodes:
        if not _is_layer(gm, node):
            continue
        mod = gm.get_submodule(node.target)
        src = (sources or {}).get(f"{node.target}.weight")
        layers.append(Layer(node.name, node.target, type(mod).__name__, tuple(mod.weight.shape),
                            sum(p.numel() for p in mod.parameters()), _reaches_output(gm, node),
                            src.name if src is not None else ""))
    return layers


def _reaches_output(gm: fx.GraphModule, start: fx.Node) -> bool:
    stack, seen = list(start.users), set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.op == "output":
            return True
        if not _is_layer(gm, node):
            stack.extend(node.users)
    return False
