"""Normalization: Batch/Layer/Instance/Group/RMS normalization, LRN, MeanVarianceNormalization, LpNormalization.

With constant scale and shift, a normalization becomes a module whose affine parameters remember their
initializers (they train, are written back, and drift where the runtime drifts normalization affines); with
computed ones it is a plain function. Batch, layer and group norm modules subclass torch's, so passes that
look for normalization layers (dropout placement) find them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ftcompile.errors import UnsupportedModelError
from ftcompile.frontend import ops
from ftcompile.frontend.registry import converter


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm for any rank (ONNX does not tell torch's 1d/2d/3d apart)."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError("BatchNormalization needs (N, C, ...) input")


class InstanceNorm(nn.Module):
    def __init__(self, scale: torch.Tensor, bias: torch.Tensor, eps: float):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(scale), nn.Parameter(bias), eps

    def forward(self, x):
        return ops.instance_norm(x, self.weight, self.bias, self.eps)


def layer_norm(x, scale, bias=None, axis: int = -1, eps: float = 1e-5, stats: bool = False):
    """ONNX LayerNormalization over the dims from ``axis`` on; ``stats`` also returns the mean and 1/std."""
    dims = list(range(axis % x.dim(), x.dim()))
    shape = tuple(x.shape[dims[0]:])
    if not stats and tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
        return F.layer_norm(x, shape, scale, bias, eps)  # torch's fused kernel: the common case, less memory
    mean = x.mean(dims, keepdim=True)
    inv = torch.rsqrt(((x - mean) ** 2).mean(dims, keepdim=True) + eps)
    y = (x - mean) * inv * scale
    y = y if bias is None else y + bias
    return (y, mean, inv) if stats else y


class LayerNorm(nn.LayerNorm):
    """``layer_norm`` with ``weight``/``bias`` parameters of ONNX's (broadcast) shapes."""

    def __init__(self, scale: torch.Tensor, bias: torch.Tensor | None, axis: int, eps: float, stats: bool = False):
        nn.Module.__init__(self)
        self.normalized_shape, self.eps, self.elementwise_affine = tuple(scale.shape), eps, True
        self.axis, self.stats = axis, stats
        self.weight = nn.Parameter(scale.clone())
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias, self.axis, self.eps, self.stats)


def group_norm(x, scale, bias, groups: int, eps: float = 1e-5, per_group: bool = False):
    """ONNX GroupNormalization; opset 18's ``scale``/``bias`` hold one value per group, opset 21's one per channel."""
    n, c = x.shape[0], x.shape[1]
    g = x.reshape(n, groups, -1)
    mean = g.mean(-1, keepdim=True)
    var = ((g - mean) ** 2).mean(-1, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    if per_group:
        scale, bias = scale.repeat_interleave(c // groups), bias.repeat_interleave(c // groups)
    shape = (1, c) + (1,) * (x.dim() - 2)
    return y * scale.reshape(shape) + bias.reshape(shape)


class GroupNorm(nn.GroupNorm):
    def __init__(self, scale: torch.Tensor, bias: torch.Tensor, groups: int, eps: float, per_group: bool):
        nn.Module.__init__(self)
        self.num_groups, self.num_channels, self.eps, self.affine = groups, scale.numel(), eps, True
        self.per_group = per_group
        self.weight, self.bias = nn.Parameter(scale.clone()), nn.Parameter(bias.clone())

    def forward(self, x):
        return group_norm(x, self.weight, self.bias, self.num_groups, self.eps, self.per_group)


def rms_norm(x, scale, axis: int = -1, eps: float = 1e-5):
    dims = list(range(axis % x.dim(), x.dim()))
    return x * torch.rsqrt((x * x).mean(dims, keepdim=True) + eps) * scale


class RMSNorm(nn.Module):
    def __init__(self, scale: torch.Tensor, axis: int, eps: float):
        super().__init__()
        self.weight, self.axis, self.eps = nn.Parameter(scale.clone()), axis, eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.axis, self.eps)


def batch_norm_train(x, scale, bias, mean, var, eps: float = 1e-5, momentum: float = 0.9):
    """Training-mode BatchNormalization: normalized by the batch's statistics, and the updated running ones."""
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    cur_mean, cur_var = x.mean(dims), x.var(dims, unbiased=False)
    y = (x - cur_mean.reshape(shape)) / torch.sqrt(cur_var.reshape(shape) + eps) * scale.reshape(shape) \
        + bias.reshape(shape)
    return y, mean * momentum + cur_mean * (1 - momentum), var * momentum + cur_var * (1 - momentum)


def batch_norm(x, scale, bias, mean, var, eps: float = 1e-5):
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, eps)


def lrn(x, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0):
    """ONNX LRN: the window over channels runs from c - floor((size-1)/2) to c + ceil((size-1)/2)."""
    sq = (x * x).unsqueeze(1)  # N x 1 x C x ...
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    pads = [0, 0] * (x.dim() - 2) + [before, after]
    window = F.pad(sq, pads)
    kernel = (size,) + (1,) * (x.dim() - 2)
    summed = (F.avg_pool3d if x.dim() == 4 else F.avg_pool2d if x.dim() == 3 else None)
    if summed is None:
        raise ValueError("LRN needs a 3-D or 4-D input")
    total = summed(window, kernel, stride=1) * size
    return x / (bias + alpha / size * total.squeeze(1)) ** beta


def mean_variance_norm(x, axes=(0, 2, 3)):
    dims = [a % x.dim() for a in axes]
    mean = x.mean(dims, keepdim=True)
    std = torch.sqrt(((x - mean) ** 2).mean(dims, keepdim=True))
    return (x - mean) / (std + 1e-9)


def lp_norm(x, axis: int = -1, p: int = 2):
    norm = x.abs().sum(axis, keepdim=True) if p == 1 else torch.sqrt((x * x).sum(axis, keepdim=True))
    return torch.where(norm == 0, torch.zeros_like(x), x / norm)


# --- converters ----------------------------------------------------------------------------------
def _all_const(*ts) -> bool:
    return all(t is None or torch.is_tensor(t) for t in ts)


@converter("BatchNormalization")
def _batchnorm(b, node, inputs, attrs):
    x, scale, bias, mean, var = inputs[:5]
    eps, momentum = attrs.get("epsilon", 1e-5), attrs.get("momentum", 0.9)
    if b.opset < 7 and attrs.get("spatial", 1) == 0:
        raise UnsupportedModelError(f"BatchNormalization {node.name or node.output[0]!r} with spatial=0 (opset < 7) "
                                    "is not supported.")
    if attrs.get("training_mode", 0):
        outs = b.call(batch_norm_train, (x, scale, bias, mean, var), {"eps": eps, "momentum": momentum})
        return b.parts(outs, 3)[:len(node.output)]
    if not _all_const(scale, bias, mean, var):
        return b.call(batch_norm, (x, scale, bias, mean, var), {"eps": eps})
    bn = BatchNorm(scale.numel(), eps=eps, momentum=1 - momentum)
    with torch.no_grad():
        bn.weight.copy_(scale), bn.bias.copy_(bias)
        bn.running_mean.copy_(mean), bn.running_var.copy_(var)
    srcs = {"weight": b.source(node.input[1]), "bias": b.source(node.input[2]),
            "running_mean": b.source(node.input[3]), "running_var": b.source(node.input[4])}
    return b.module(node.name or node.output[0], bn, x, srcs)


@converter("LayerNormalization")
def _layernorm(b, node, inputs, attrs):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis, eps = attrs.get("axis", -1), attrs.get("epsilon", 1e-5)
    stats = len([o for o in node.output if o]) > 1
    if not _all_const(scale, bias):
        out = b.call(layer_norm, (x, scale, bias), {"axis": axis, "eps": eps, "stats": stats})
    else:
        ln = LayerNorm(scale, bias, axis, eps, stats)
        out = b.module(node.name or node.output[0], ln, x,
                       {"weight": b.source(node.input[1]),
                        "bias": b.source(node.input[2]) if bias is not None else None})
    return b.parts(out, 3)[:len(node.output)] if stats else out


@converter("InstanceNormalization")
def _instancenorm(b, node, inputs, attrs):
    eps = attrs.get("epsilon", 1e-5)
    if not _all_const(inputs[1], inputs[2]):
        return b.call(ops.instance_norm, (inputs[0], inputs[1], inputs[2]), {"eps": eps})
    mod = InstanceNorm(inputs[1].clone(), inputs[2].clone(), eps)
    return b.module(node.name or node.output[0], mod, inputs[0],
                    {"weight": b.source(node.input[1]), "bias": b.source(node.input[2])})


@converter("GroupNormalization")
def _groupnorm(b, node, inputs, attrs):
    x, scale, bias = inputs[:3]
    groups, eps, per_group = attrs["num_groups"], attrs.get("epsilon", 1e-5), b.opset < 21
    if not _all_const(scale, bias):
        return b.call(group_norm, (x, scale, bias), {"groups": groups, "eps": eps, "per_group": per_group})
    mod = GroupNorm(scale, bias, groups, eps, per_group)
    return b.module(node.name or node.output[0], mod, x,
                    {"weight": b.source(node.input[1]), "bias": b.source(node.input[2])})


@converter("RMSNormalization")
def _rmsnorm(b, node, inputs, attrs):
    x, scale = inputs[:2]
    axis, eps = attrs.get("axis", -1), attrs.get("epsilon", 1e-5)
    if not torch.is_tensor(scale):
        return b.call(rms_norm, (x, scale), {"axis": axis, "eps": eps})
    return b.module(node.name or node.output[0], RMSNorm(scale, axis, eps), x, {"weight": b.source(node.input[1])})


@converter("LRN")
def _lrn(b, node, inputs, attrs):
    return b.call(lrn, (inputs[0],), {"size": attrs["size"], "alpha": attrs.get("alpha", 1e-4),
                                      "beta": attrs.get("beta", 0.75), "bias": attrs.get("bias", 1.0)})


@converter("MeanVarianceNormalization")
def _mvn(b, node, inputs, attrs):
    return b.call(mean_variance_norm, (inputs[0],), {"axes": list(attrs.get("axes", [0, 2, 3]))})


@converter("LpNormalization")
def _lp_norm(b, node, inputs, attrs):
    return b.call(lp_norm, (inputs[0],), {"axis": attrs.get("axis", -1), "p": attrs.get("p", 2)})

