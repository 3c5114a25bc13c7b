"""ONNX ``LSTM`` and ``GRU`` as trainable torch modules that keep ONNX's weight layout.

The weights stay in ONNX's layout (``W``: ``dirs x G*H x in``, ``R``: ``dirs x G*H x H``, ``B``:
``dirs x 2*G*H``; gate order ``iofc`` for LSTM, ``zrh`` for GRU), so write-back is a plain copy and every
weight a crossbar stores is an ``nn.Parameter`` that drifts and is fine-tuned. The recurrence follows
the ONNX operator spec with its default activations (sigmoid, tanh, tanh); ``clip``, peepholes,
``input_forget``, other activations and ragged ``sequence_lens`` are refused at import.
"""
from __future__ import annotations

import torch
from torch import nn


class OnnxRecurrent(nn.Module):
    """``forward(X, initial_h, initial_c) -> (Y, Y_h, Y_c)`` for ``kind`` "LSTM" or "GRU".

    Shapes (layout 0): ``X`` is ``seq x batch x in``, ``Y`` is ``seq x dirs x batch x H``, ``Y_h``/``Y_c``
    are ``dirs x batch x H``; layout 1 puts batch first in all of them.
    """

    def __init__(self, kind: str, weight: torch.Tensor, weight_hh: torch.Tensor, bias: torch.Tensor | None,
                 direction: str = "forward", layout: int = 0, linear_before_reset: int = 0):
        super().__init__()
        self.kind, self.direction, self.layout, self.linear_before_reset = kind, direction, layout, linear_before_reset
        self.weight = nn.Parameter(weight.clone())
        self.weight_hh = nn.Parameter(weight_hh.clone())
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None
        self.hidden = weight_hh.shape[-1]

    def forward(self, x, initial_h=None, initial_c=None):
        if self.layout:
            x = x.transpose(0, 1)
            initial_h = None if initial_h is None else initial_h.transpose(0, 1)
            initial_c = None if initial_c is None else initial_c.transpose(0, 1)
        dirs = self.weight.shape[0]
        zeros = x.new_zeros(dirs, x.shape[1], self.hidden)
        h0 = zeros if initial_h is None else initial_h
        c0 = zeros if initial_c is None else initial_c
        ys, hs, cs = [], [], []
        for d in range(dirs):
            reverse = self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)
            steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
            bias = self.bias[d] if self.bias is not None else x.new_zeros(2 * self.weight.shape[1])
            y, h, c = self._direction(x, steps, self.weight[d], self.weight_hh[d], bias, h0[d], c0[d])
            ys.append(y)
            hs.append(h)
            cs.append(c)
        y, y_h, y_c = torch.stack(ys, 1), torch.stack(hs), torch.stack(cs)
        if self.layout:
            return y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        return y, y_h, y_c

    def _direction(self, x, steps, w, r, b, h, c):
        wb, rb = b.chunk(2)
        xw = torch.matmul(x, w.t()) + wb  # all time steps at once: seq x batch x G*H
        out = [None] * x.shape[0]
        for t in steps:
            if self.kind == "LSTM":
                i, o, f, g = (xw[t] + h @ r.t() + rb).chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xz, xr, xh = xw[t].chunk(3, -1)
                rz, rr, rh = r.chunk(3, 0)
                bz, br, bh = rb.chunk(3)
                z = torch.sigmoid(xz + h @ rz.t() + bz)
                reset = torch.sigmoid(xr + h @ rr.t() + br)
                if self.linear_before_reset:
                    cand = torch.tanh(xh + reset * (h @ rh.t() + bh))
                else:
                    cand = torch.tanh(xh + (reset * h) @ rh.t() + bh)
                h = (1 - z) * cand + z * h
            out[t] = h
        return torch.stack(out), h, c

    def extra_repr(self) -> str:
        return f"{self.kind}, hidden={self.hidden}, direction={self.direction}"
