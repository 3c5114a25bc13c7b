"""``insert_module_dropout``: BayesFT's dropout sites on an ``nn.Module`` that cannot be traced whole.

Detectors (NMS, RoIAlign, data-dependent shapes, Python control flow, a training forward that returns losses)
defeat tracing the whole model into one graph, and the ONNX importer. Their parts often trace: so each child
module is traced with ``torch.fx`` where that works, and its sites are nodes of the traced graph placed by the
graph pass's rule (after a following norm and activation, functional ones too: ``F.relu(self.bn(self.conv(x)))``).
A child is traced only when the trace is faithful: the same graph in training and in eval mode (Python
branches on ``self.training`` would be frozen into one of them) and the same ``state_dict`` keys (a trace
drops submodules its forward does not call). Elsewhere the sites run as forward hooks after each convolution
or linear layer, or after the normalization and activation that follow it inside the same ``nn.Sequential``.
The module's ``state_dict`` is unchanged either way (sites have no parameters; a traced child keeps its
submodules under their names), so its own weight files still load, and in eval mode (export, sign-off) the
sites are identities. Output layers get no site: those the module lists in an ``output_layers`` attribute
(submodule names), else the last convolution or linear layer it registers.
"""
from __future__ import annotations

from torch import fx, nn

from ftcompile.passes.dropout import _ACT_MODULES, _NORM_MODULES, DropoutSite, DropoutSites, _follow, insert_after
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


def _faithful_trace(module: nn.Module) -> "fx.GraphModule | None":
    """``module`` traced by ``torch.fx``, or None when it does not trace or the trace would change it."""
    was_training = module.training
    try:
        graphs = [fx.symbolic_trace(module.train(mode)) for mode in (True, False)]
    except Exception:  # any Python the tracer cannot follow: the caller looks at the children instead
        return None
    finally:
        module.train(was_training)
    if graphs[0].code != graphs[1].code or set(graphs[0].state_dict()) != set(module.state_dict()):
        return None
    return graphs[0].train(was_training)


def _trace_children(root: nn.Module, layers: set[str]) -> dict[str, fx.GraphModule]:
    """Faithful traces of the outermost submodules (below the root) that hold crossbar layers, installed in
    place of those submodules; keyed by qualified name."""
    traced: dict[str, fx.GraphModule] = {}

    def visit(prefix: str, module: nn.Module) -> None:
        for name, child in list(module.named_children()):
            qual = prefix + name
            if not any(layer == qual or layer.startswith(qual + ".") for layer in layers):
                continue
            gm = None if isinstance(child, CROSSBAR_TYPES) else _faithful_trace(child)
            if gm is None:
                visit(qual + ".", child)
                continue
            setattr(module, name, gm)
            traced[qual] = gm

    visit("", root)
    return traced


def insert_module_dropout(module: nn.Module, *, rate: float = 0.0, channel: bool = False) -> DropoutSites:
    """A ``DropoutSite`` after every convolution/linear layer of ``module`` except its output layers; returns
    the sites in registration order. Mutates ``module`` (traced children replace the originals, sites are
    added as submodules and hooks)."""
    skip = output_layers(module)
    missing = skip - {n for n, _ in module.named_modules()}
    if missing:
        raise ValueError(f"output_layers names submodules the model does not have: {sorted(missing)}")
    sites = DropoutSites(module)
    layers = [(n, m) for n, m in module.named_modules() if isinstance(m, CROSSBAR_TYPES) and n not in skip]
    traced = _trace_children(module, {n for n, _ in layers})
    for index, (name, layer) in enumerate(layers):
        site = DropoutSite(rate, channel=channel and not isinstance(layer, nn.Linear))
        owner = next((q for q in traced if name.startswith(q + ".")), None)
        gm = traced.get(owner)
        calls = [] if gm is None else [n for n in gm.graph.nodes
                                       if n.op == "call_module" and n.target == name[len(owner) + 1:]]
        site_name = f"ftcompile_dropout_{index}"
        if not calls:  # no faithful trace calls this layer as a module: a hook
            module.add_module(site_name, site)
            module.get_submodule(_anchor(module, name)).register_forward_hook(_ApplySite(site))
        else:  # nodes of the traced child's graph (one per call), where the graph pass would put them
            gm.add_submodule(site_name, site)
            for call in calls:
                insert_after(gm, _follow(gm, call), site_name)
            site_name = f"{owner}.{site_name}"
        sites.names.append(site_name)
        sites.layers.append(name)
        sites.tensors.append("")
    for gm in traced.values():
        gm.recompile()
    return sites
