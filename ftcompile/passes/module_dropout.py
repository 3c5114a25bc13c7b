"""``insert_module_dropout``: BayesFT's dropout sites on an ``nn.Module`` that cannot be traced into a graph.

Detectors (NMS, RoIAlign, data-dependent shapes, Python control flow) defeat ``torch.fx`` and the ONNX
importer, so the sites go on the module itself: a ``DropoutSite`` runs as a forward hook after each
convolution or linear layer, or after the normalization and activation that follow it inside the same
``nn.Sequential`` (the graph pass's spot). The module's ``state_dict`` is unchanged (sites have no
parameters), so its own weight files still load, and in eval mode (export, sign-off) the sites are
identities. Output layers get no site: those the module lists in an ``output_layers`` attribute
(submodule names), else the last convolution or linear layer it registers.
"""
from __future__ import annotations

from torch import nn

from ftcompile.passes.dropout import _ACT_MODULES, _NORM_MODULES, DropoutSite, DropoutSites
from ftcompile.passes.layers import CROSSBAR_TYPES


class _ApplySite:
    """The forward hook: the site applied to the anchor's output (a class, not a lambda: modules carrying it
    are pickled to worker processes)."""

    def __init__(self, site: DropoutSite):
        self.site = site

    def __call__(self, module, inputs, output):
        return self.site(output)


def _anchor(root: nn.Module, name: str) -> str:
    """The submodule after which the site of layer ``name`` runs: past a following norm, then activation,
    when they are the layer's next siblings in an ``nn.Sequential``."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    if not isinstance(parent, nn.Sequential):
        return name
    keys = list(parent._modules)
    after = keys[keys.index(child) + 1:][:2]
    mods = [parent._modules[k] for k in after]
    prefix = f"{parent_name}." if parent_name else ""
    if mods and isinstance(mods[0], _NORM_MODULES):  # as the graph pass: norm then activation, or the layer
        return prefix + after[1] if len(mods) > 1 and isinstance(mods[1], _ACT_MODULES) else name
    if mods and isinstance(mods[0], _ACT_MODULES):
        return prefix + after[0]
    return name


def output_layers(module: nn.Module) -> set[str]:
    declared = getattr(module, "output_layers", None)
    if declared:
        return set(declared)
    layers = [n for n, m in module.named_modules() if isinstance(m, CROSSBAR_TYPES)]
    return set(layers[-1:])


def insert_module_dropout(module: nn.Module, *, rate: float = 0.0, channel: bool = False) -> DropoutSites:
    """A ``DropoutSite`` after every convolution/linear layer of ``module`` except its output layers; returns
    the sites in registration order. Mutates ``module`` (adds the sites as submodules and hooks)."""
    skip = output_layers(module)
    missing = skip - {n for n, _ in module.named_modules()}
    if missing:
        raise ValueError(f"output_layers names submodules the model does not have: {sorted(missing)}")
    sites = DropoutSites(module)
    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, CROSSBAR_TYPES) and n not in skip]
    for index, (name, layer) in enumerate(layers):
        site = DropoutSite(rate, channel=channel and not isinstance(layer, nn.Linear))
        site_name = f"ftcompile_dropout_{index}"
        module.add_module(site_name, site)
        module.get_submodule(_anchor(module, name)).register_forward_hook(_ApplySite(site))
        sites.names.append(site_name)
        sites.layers.append(name)
        sites.tensors.append("")
    return sites
