"""Fold each BatchNorm into the convolution before it, in a torch module: what every inference compiler (and torch's
own ONNX exporter) does to a deployed network, done before the fine-tune so the module trains the tensors the chip
stores.

A crossbar holds the folded weights ``w * gamma / sqrt(var + eps)`` and the folded bias ``beta + (b - mean) * gamma
/ sqrt(var + eps)``; the exporter writes those for a Conv -> BatchNorm pair. Fine-tuned with the pair unfolded, a
module's drift (in the objective and the training noise) would act on ``w``, ``gamma`` and ``beta`` while the
sign-off drifts the folded tensors: measured on the PennFudan detector, the torch objective then read 0.45-0.50 mAP
under drift where the runtime read 0.34 on the same images. Folded first, both drift the same tensors.

The pairs come from the module's ONNX export with BatchNorm kept (``TrainingMode.PRESERVE``): a ``Conv`` whose only
consumer is a ``BatchNormalization``, each node naming its module (torch's exporter writes the module path into
node names, ``/stem/stem.0/stem.0.1/BatchNormalization`` is module ``stem.0.1``). A BatchNorm after anything else
stays as it is (and so it stays in the export: its affine parameters drift on both sides alike).
"""
from __future__ import annotations

import onnx
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def conv_norm_pairs(exported: onnx.ModelProto) -> list[tuple[str, str]]:
    """``(conv module, batchnorm module)`` paths of every Conv whose only consumer is a BatchNormalization."""
    consumers: dict[str, list] = {}
    for node in exported.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    pairs = []
    for node in exported.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        users = consumers.get(node.output[0], [])
        if len(users) == 1 and users[0].op_type == "BatchNormalization":
            conv, norm = _module_path(node.name), _module_path(users[0].name)
            if conv and norm:
                pairs.append((conv, norm))
    return pairs


def fold_batchnorm(module: nn.Module, exported: onnx.ModelProto) -> list[tuple[str, str]]:
    """Replace, in place, each Conv -> BatchNorm pair of ``module`` (found in ``exported``, its export with BatchNorm
    kept) by the folded convolution and an ``Identity``; returns the pairs folded. The module must be in eval mode
    (the running statistics are what is folded)."""
    folded = []
    for conv_path, norm_path in conv_norm_pairs(exported):
        conv, norm = _get(module, conv_path), _get(module, norm_path)
        if not isinstance(conv, _CONVS) or not isinstance(norm, nn.modules.batchnorm._BatchNorm):
            continue
        with torch.no_grad():
            fused = fuse_conv_bn_eval(conv.eval(), norm.eval(),
                                      transpose=isinstance(conv, nn.modules.conv._ConvTransposeNd))
        _set(module, conv_path, fused)
        _set(module, norm_path, nn.Identity())
        folded.append((conv_path, norm_path))
    return folded


def _module_path(node_name: str) -> str:
    """``stem.0.1`` for ``/stem/stem.0/stem.0.1/BatchNormalization`` (empty when the name carries no module)."""
    parts = node_name.split("/")
    return parts[-2] if len(parts) >= 3 else ""


def _get(module: nn.Module, path: str):
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def _set(module: nn.Module, path: str, child: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, name, child)
