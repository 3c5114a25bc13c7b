"""ONNX ``LSTM``, ``GRU`` and ``RNN`` as a function (``recurrence``) and a trainable module keeping ONNX's layout.

The weights stay in ONNX's layout (``W``: ``dirs x G*H x in``, ``R``: ``dirs x G*H x H``, ``B``:
``dirs x 2*G*H``; gate order ``iofc`` for LSTM, ``zrh`` for GRU, one gate for RNN), so write-back is a plain
copy and every weight a crossbar stores is an ``nn.Parameter`` that drifts and is fine-tuned. The recurrence
follows the ONNX operator spec: activations (default sigmoid/tanh), ``clip``, LSTM peepholes and
``input_forget``, and ragged batches through ``sequence_lens`` (outputs past a sequence's end are zero, its
last state is the one at its end).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}


def activation(name: str, alpha: float | None = None, beta: float | None = None):
    """The ONNX RNN activation functions by name (alpha/beta as the spec defines for each)."""
    name = name.lower()
    if name == "sigmoid":
        return torch.sigmoid
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    if name == "leakyrelu":
        return lambda x: F.leaky_relu(x, 0.01 if alpha is None else alpha)
    if name == "thresholdedrelu":
        return lambda x: torch.where(x > (1.0 if alpha is None else alpha), x, torch.zeros_like(x))
    if name == "scaledtanh":
        return lambda x: (1.0 if alpha is None else alpha) * torch.tanh((1.0 if beta is None else beta) * x)
    if name == "hardsigmoid":
        return lambda x: torch.clamp((0.2 if alpha is None else alpha) * x + (0.5 if beta is None else beta), 0, 1)
    if name == "elu":
        return lambda x: F.elu(x, 1.0 if alpha is None else alpha)
    if name == "softsign":
        return F.softsign
    if name == "softplus":
        return F.softplus
    if name == "affine":
        return lambda x: (1.0 if alpha is None else alpha) * x + (0.0 if beta is None else beta)
    raise ValueError(f"unknown RNN activation {name}")


@dataclass(frozen=True)
class Recurrence:
    """The attributes of one recurrent node."""

    kind: str
    direction: str = "forward"
    layout: int = 0
    linear_before_reset: int = 0
    activations: tuple = ()
    alphas: tuple = ()
    betas: tuple = ()
    clip: float | None = None
    input_forget: int = 0

    def functions(self, direction: int) -> list:
        names = self.activations or DEFAULT_ACTIVATIONS[self.kind] * 2
        per = len(DEFAULT_ACTIVATIONS[self.kind])
        names = list(names)[direction * per:(direction + 1) * per] or list(DEFAULT_ACTIVATIONS[self.kind])
        alphas, betas = list(self.alphas), list(self.betas)
        out = []
        for i, name in enumerate(names):
            k = direction * per + i
            out.append(activation(name, alphas[k] if k < len(alphas) else None, betas[k] if k < len(betas) else None))
        return out


def recurrence(spec: Recurrence, x, w, r, bias=None, lens=None, h0=None, c0=None, peep=None):
    """``(Y, Y_h[, Y_c])`` of an ONNX recurrent node. Shapes (layout 0): ``X`` is ``seq x batch x in``, ``Y``
    ``seq x dirs x batch x H``, ``Y_h``/``Y_c`` ``dirs x batch x H``; layout 1 puts batch first in all of them."""
    if spec.layout:
        x = x.transpose(0, 1)
        h0 = None if h0 is None else h0.transpose(0, 1)
        c0 = None if c0 is None else c0.transpose(0, 1)
    dirs, hidden = w.shape[0], r.shape[-1]
    batch = x.shape[1]
    zeros = x.new_zeros(dirs, batch, hidden)
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    lens = None if lens is None else lens.long()
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = spec.direction == "reverse" or (spec.direction == "bidirectional" and d == 1)
        b = bias[d] if bias is not None else x.new_zeros(2 * w.shape[1])
        p = peep[d] if peep is not None else None
        y, h, c = _direction(spec, spec.functions(d), x, reverse, w[d], r[d], b, h0[d], c0[d], lens, p)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y, y_h, y_c = torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)
    if spec.layout:
        y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
    return (y, y_h, y_c) if spec.kind == "LSTM" else (y, y_h)


def _direction(spec, fns, x, reverse, w, r, b, h, c, lens, peep):
    seq = x.shape[0]
    wb, rb = b.chunk(2)
    xw = torch.matmul(x, w.t()) + wb  # all time steps at once: seq x batch x G*H
    clip = (lambda t: t.clamp(-spec.clip, spec.clip)) if spec.clip else (lambda t: t)  # noqa: E731
    out = [None] * seq
    if lens is None:
        steps = range(seq - 1, -1, -1) if reverse else range(seq)
        index = {t: None for t in steps}
    else:  # each sequence reversed within its own length
        steps = range(seq)
        index = {t: torch.where(t < lens, lens - 1 - t, torch.full_like(lens, t)) if reverse else None for t in steps}
    for t in steps:
        xt = xw[t] if index[t] is None else xw.gather(0, index[t].reshape(1, -1, 1).expand(1, *xw.shape[1:]))[0]
        if spec.kind == "LSTM":
            f_gate, g_cell, h_out = fns
            i, o, f, g = (xt + h @ r.t() + rb).chunk(4, -1)
            pi, po, pf = peep.chunk(3) if peep is not None else (0, 0, 0)
            i = f_gate(clip(i + pi * c))
            f = 1 - i if spec.input_forget else f_gate(clip(f + pf * c))
            c_new = f * c + i * g_cell(clip(g))
            o = f_gate(clip(o + po * c_new))
            h_new = o * h_out(c_new)
        elif spec.kind == "GRU":
            f_gate, g_cell = fns
            xz, xr, xh = xt.chunk(3, -1)
            rz, rr, rh = r.chunk(3, 0)
            bz, br, bh = rb.chunk(3)
            z = f_gate(clip(xz + h @ rz.t() + bz))
            reset = f_gate(clip(xr + h @ rr.t() + br))
            if spec.linear_before_reset:
                cand = g_cell(clip(xh + reset * (h @ rh.t() + bh)))
            else:
                cand = g_cell(clip(xh + (reset * h) @ rh.t() + bh))
            h_new, c_new = (1 - z) * cand + z * h, c
        else:
            (f_act,) = fns
            h_new, c_new = f_act(clip(xt + h @ r.t() + rb)), c
        if lens is not None:
            alive = (t < lens).unsqueeze(-1)
            h = torch.where(alive, h_new, h)
            c = torch.where(alive, c_new, c)
            out[t] = torch.where(alive, h_new, torch.zeros_like(h_new))
        else:
            h, c = h_new, c_new
            out[t] = h
    y = torch.stack(out)
    if lens is not None and reverse:  # put each sequence's outputs back in time order
        src = torch.where(torch.arange(seq).unsqueeze(1) < lens, lens - 1 - torch.arange(seq).unsqueeze(1),
                          torch.arange(seq).unsqueeze(1))
        y = y.gather(0, src.unsqueeze(-1).expand_as(y))
    return y, h, c


def recurrence_of(x, w, r, bias=None, lens=None, h0=None, c0=None, peep=None, **spec):
    """``recurrence`` with the spec's fields as keyword arguments (plain values an fx graph can print)."""
    return recurrence(Recurrence(**spec), x, w, r, bias, lens, h0, c0, peep)


class OnnxRecurrent(nn.Module):
    """``forward(X, sequence_lens, initial_h, initial_c) -> (Y, Y_h[, Y_c])``: ``recurrence`` with W, R, B (and
    LSTM peepholes) as parameters named ``weight``, ``weight_hh``, ``bias`` (``peepholes``)."""

    def __init__(self, spec: Recurrence, weight: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor | None,
                 peepholes: torch.Tensor | None = None):
        super().__init__()
        self.spec = spec
        self.weight = nn.Parameter(weight.clone())
        self.weight_hh = nn.Parameter(weight_hh.clone())
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None
        self.peepholes = nn.Parameter(peepholes.clone()) if peepholes is not None else None
        self.hidden = weight_hh.shape[-1]

    def forward(self, x, lens=None, initial_h=None, initial_c=None):
        return recurrence(self.spec, x, self.weight, self.weight_hh, self.bias, lens, initial_h, initial_c,
                          self.peepholes)

    def extra_repr(self) -> str:
        return f"{self.spec.kind}, hidden={self.hidden}, direction={self.spec.direction}"
