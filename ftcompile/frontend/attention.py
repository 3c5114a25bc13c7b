"""Transformer operators: Attention (opset 23-25), RotaryEmbedding, CausalConvWithState.

``attention`` follows the operator spec as the onnx reference computes it: 3-D inputs split into heads,
grouped-query heads repeated, ``scale`` (default 1/sqrt(head size)) applied as its square root to both Q and
K, boolean or additive masks (padded to the key length), causal masks aligned to the end of a past cache or
to each batch's non-padded length, sliding windows, softcap, and fully masked rows giving zeros. Its
projections are matrix products of computed tensors; the weights that feed Q, K and V are ordinary
MatMul/Gemm layers before it, so they stay trainable crossbar layers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftcompile.frontend.dtypes import torch_dtype
from ftcompile.frontend.ops import text
from ftcompile.frontend.registry import converter


def _heads(x, heads: int):
    b, s, h = x.shape
    return x.reshape(b, s, heads, h // heads).transpose(1, 2)


def _band(q_len: int, kv_len: int, offset, lo: int | None, hi: int | None):
    """Allowed (query, key) pairs with ``lo <= (i + offset) - j <= hi`` (None: unbounded); per batch when
    ``offset`` is a tensor."""
    i = torch.arange(q_len).reshape(q_len, 1)
    j = torch.arange(kv_len).reshape(1, kv_len)
    diff = (i + offset.reshape(-1, 1, 1)) - j if torch.is_tensor(offset) else (i + offset) - j
    allowed = torch.ones_like(diff, dtype=torch.bool)
    if lo is not None:
        allowed &= diff >= lo
    if hi is not None:
        allowed &= diff <= hi
    return allowed.unsqueeze(1) if torch.is_tensor(offset) else allowed


def attention(q, k, v, mask=None, past_key=None, past_value=None, nonpad=None, *, scale=None, is_causal: int = 0,
              q_heads=None, kv_heads=None, softcap: float = 0.0, mode: int = 0, left: int = -1, right: int = -1,
              softmax_dtype=None):
    """ONNX Attention: ``(Y, present_key, present_value, qk)`` (``qk`` per ``qk_matmul_output_mode``).
    Half-precision inputs are computed in float32 and rounded back at the end."""
    half = q.dtype in (torch.float16, torch.bfloat16)
    if half:
        outs = attention(*(t.float() if t is not None and t.is_floating_point() else t
                           for t in (q, k, v, mask, past_key, past_value)), nonpad, scale=scale, is_causal=is_causal,
                         q_heads=q_heads, kv_heads=kv_heads, softcap=softcap, mode=mode, left=left, right=right,
                         softmax_dtype=softmax_dtype)
        return tuple(o.to(q.dtype) for o in outs)
    three_d = q.dim() == 3
    if three_d:
        q, k, v = _heads(q, q_heads), _heads(k, kv_heads), _heads(v, kv_heads)
    scale = 1 / math.sqrt(q.shape[3]) if scale is None else scale
    root = math.sqrt(scale)
    key = k if past_key is None else torch.cat([past_key, k], 2)
    value = v if past_value is None else torch.cat([past_value, v], 2)
    q_len, kv_len = q.shape[2], key.shape[2]
    neg = torch.tensor(float("-inf"), dtype=q.dtype)
    zero = torch.zeros((), dtype=q.dtype)
    bias = torch.zeros(q_len, kv_len, dtype=q.dtype)
    if mask is not None:
        if mask.shape[-1] < kv_len:  # a mask shorter than the keys: the rest is masked
            mask = F.pad(mask, [0, kv_len - mask.shape[-1]], value=False if mask.dtype == torch.bool else float("-inf"))
        bias = bias + (torch.where(mask, zero, neg) if mask.dtype == torch.bool else mask.to(q.dtype))
    if nonpad is not None and past_key is None:
        offset = nonpad.reshape(-1).long() - q_len
    else:
        offset = past_key.shape[2] if past_key is not None else 0
    if is_causal:
        bias = bias + torch.where(_band(q_len, kv_len, offset, 0, None), zero, neg)
    if left >= 0 or right >= 0:
        bias = bias + torch.where(_band(q_len, kv_len, offset, -right if right >= 0 else None,
                                        left if left >= 0 else None), zero, neg)
    if nonpad is not None:
        keep = torch.arange(kv_len).reshape(1, -1) < nonpad.reshape(-1, 1)
        bias = bias + torch.where(keep, zero, neg).reshape(-1, 1, 1, kv_len)
    groups = q.shape[1] // key.shape[1]  # grouped-query attention: each key/value head serves `groups` queries
    keys, vals = (key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)) if groups > 1 else (key, value)
    scores = torch.matmul(q * root, keys.transpose(-1, -2) * root)
    if softcap and softcap > 0:
        scores = softcap * torch.tanh(scores / softcap)
    qk = scores
    with_bias = scores + bias
    if mode == 2:
        qk = with_bias
    work = with_bias.to(softmax_dtype) if softmax_dtype is not None else with_bias
    top = work.amax(-1, keepdim=True)
    safe = torch.where(torch.isneginf(top), torch.zeros_like(top), top)
    e = torch.exp(work - safe)
    total = e.sum(-1, keepdim=True)
    probs = e / torch.where(total == 0, torch.ones_like(total), total)
    masked_row = torch.isneginf(bias.amax(-1, keepdim=True))
    probs = torch.where(masked_row, torch.zeros_like(probs), probs)
    if mode == 3:
        qk = probs
    y = torch.matmul(probs.to(q.dtype), vals)
    if three_d:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    return y, key, value, qk.to(q.dtype)


def rotary_embedding(x, cos, sin, position_ids=None, interleaved: int = 0, dim: int = 0, heads: int = 0):
    shape = x.shape
    y = x.transpose(1, 2) if x.dim() == 4 else x.reshape(shape[0], shape[1], heads, shape[2] // heads)
    dim = dim or y.shape[3]
    rot, rest = y[..., :dim], y[..., dim:]
    if position_ids is not None:
        cos, sin = cos[position_ids.long()], sin[position_ids.long()]
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    x1, x2 = (rot[..., 0::2], rot[..., 1::2]) if interleaved else rot.chunk(2, -1)
    real, imag = cos * x1 - sin * x2, sin * x1 + cos * x2
    rot = torch.stack([real, imag], -1).reshape(rot.shape) if interleaved else torch.cat([real, imag], -1)
    out = torch.cat([rot, rest], -1)
    return out.transpose(1, 2) if x.dim() == 4 else out.reshape(shape)


def causal_conv(x, weight, bias=None, past=None, activation: str = "none"):
    """Depthwise causal 1-D convolution over ``past`` + ``x``; returns the output and the new state."""
    k = weight.shape[2]
    pad = x.new_zeros(x.shape[0], x.shape[1], k - 1) if past is None else past
    padded = torch.cat([pad, x], 2)
    y = F.conv1d(padded, weight, bias, groups=x.shape[1])
    if activation in ("silu", "swish"):
        y = (y.float() * torch.sigmoid(y.float())).to(x.dtype)
    return y, padded[:, :, padded.shape[2] - (k - 1):]


@converter("Attention")
def _attention(b, node, inputs, attrs):
    args = list(inputs) + [None] * (7 - len(inputs))
    precision = attrs.get("softmax_precision")
    out = b.call(attention, tuple(args[:7]), {
        "scale": attrs.get("scale"), "is_causal": attrs.get("is_causal", 0), "q_heads": attrs.get("q_num_heads"),
        "kv_heads": attrs.get("kv_num_heads"), "softcap": attrs.get("softcap", 0.0),
        "mode": attrs.get("qk_matmul_output_mode", 0), "left": attrs.get("left_window_size", -1),
        "right": attrs.get("right_window_size", -1),
        "softmax_dtype": torch_dtype(precision) if precision else None})
    return b.parts(out, 4)[:len(node.output)]


@converter("RotaryEmbedding")
def _rotary(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    return b.call(rotary_embedding, tuple(args[:4]), {"interleaved": attrs.get("interleaved", 0),
                                                      "dim": attrs.get("rotary_embedding_dim", 0),
                                                      "heads": attrs.get("num_heads", 0)})


@converter("CausalConvWithState")
def _causal_conv(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    out = b.call(causal_conv, tuple(args[:4]), {"activation": text(attrs.get("activation"), "none")})
    return b.parts(out, 2)[:len(node.output)]


def linear_attention(q, k, v, past=None, decay=None, beta=None, *, q_heads: int, kv_heads: int, scale=None,
                     rule: str = "gated_delta"):
    """ONNX LinearAttention: a (d_k x d_v) state per key head, decayed (gated rules), corrected toward each value
    (delta rules), read by the queries; returns the output and the last state. Computed in float32."""
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    bsz, steps = q.shape[0], q.shape[1]
    q4, k4, v4 = (_heads(t.float(), h) for t, h in ((q, q_heads), (k, kv_heads), (v, kv_heads)))
    d_k, d_v = k4.shape[-1], v4.shape[-1]
    if decay is not None:
        decay = decay.float()
        decay = decay.reshape(bsz, steps, kv_heads, 1).transpose(1, 2) if decay.shape[-1] == kv_heads else \
            _heads(decay, kv_heads)
    if beta is not None:
        beta = beta.float().reshape(bsz, steps, beta.shape[-1], 1).transpose(1, 2)
    state = past.float() if past is not None else q4.new_zeros(bsz, kv_heads, d_k, d_v)
    scale = 1.0 / math.sqrt(d_k) if not scale else float(scale)
    group = q_heads // kv_heads
    outs = []
    for t in range(steps):
        k_t, v_t = k4[:, :, t], v4[:, :, t]
        if gating:
            state = state * torch.exp(decay[:, :, t]).unsqueeze(-1)
        if delta:
            v_t = beta[:, :, t] * (v_t - torch.einsum("bhdm,bhd->bhm", state, k_t))
        state = state + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
        read = state.repeat_interleave(group, 1) if group > 1 else state
        outs.append(scale * torch.einsum("bhd,bhdm->bhm", q4[:, :, t], read))
    y = torch.stack(outs, 2).transpose(1, 2).reshape(bsz, steps, q_heads * d_v)
    return y.to(q.dtype), state.to(past.dtype if past is not None else q.dtype)


@converter("LinearAttention")
def _linear_attention(b, node, inputs, attrs):
    args = list(inputs) + [None] * (6 - len(inputs))
    out = b.call(linear_attention, tuple(args[:6]), {
        "q_heads": attrs["q_num_heads"], "kv_heads": attrs["kv_num_heads"], "scale": attrs.get("scale"),
        "rule": text(attrs.get("update_rule"), "gated_delta")})
    return b.parts(out, 2)[:len(node.output)]
