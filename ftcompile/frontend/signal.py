"""Signal processing and losses: DFT, STFT, the Hann/Hamming/Blackman windows, MelWeightMatrix,
SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss (torch.fft and torch's losses, both differentiable).

ONNX carries complex values as a trailing dimension of 2 (real, imaginary); a trailing 1 is a real signal.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ftcompile.frontend.dtypes import torch_dtype
from ftcompile.frontend.ops import text
from ftcompile.frontend.registry import converter


def _complex(x):
    return torch.view_as_complex(x.contiguous()) if x.shape[-1] == 2 else x[..., 0].to(torch.complex64 if
                                                                                       x.dtype != torch.float64
                                                                                       else torch.complex128)


def dft(x, length=None, axis=1, inverse: int = 0, onesided: int = 0):
    """ONNX DFT along ``axis`` of the signal (the axis counts the trailing complex dimension as the last);
    inverse and one-sided: the real signal of a half spectrum (irfft)."""
    axis = (int(axis.reshape(-1)[0]) if torch.is_tensor(axis) else axis) % x.dim()
    if torch.is_tensor(length):
        n = int(length.reshape(-1)[0])
    else:
        n = 2 * (x.shape[axis] - 1) if inverse and onesided else x.shape[axis]
    z = _complex(x)
    if inverse and onesided:
        return torch.fft.irfft(z, n=n, dim=axis).unsqueeze(-1).to(x.dtype)
    y = torch.fft.ifft(z, n=n, dim=axis) if inverse else torch.fft.fft(z, n=n, dim=axis)
    if onesided:
        y = y.narrow(axis, 0, n // 2 + 1)
    return torch.view_as_real(y).to(x.dtype)


def stft(x, step, window=None, length=None, onesided: int = 1):
    """ONNX STFT: frames of ``length`` every ``step`` samples, windowed, transformed: (batch, frames, bins, 2)."""
    step = int(step.reshape(-1)[0])
    n = int(length.reshape(-1)[0]) if length is not None else window.shape[0]
    frames = (x.shape[1] - n) // step + 1
    z = _complex(x)  # batch x len
    chunks = z.unfold(1, n, step)[:, :frames]  # batch x frames x n
    if window is not None:
        chunks = chunks * window
    y = torch.fft.fft(chunks, n=n, dim=-1)
    if onesided:
        y = y[..., : n // 2 + 1]
    return torch.view_as_real(y).to(x.dtype)


def window(size, kind: str, periodic: int = 1, dtype: torch.dtype = torch.float32):
    """Hann, Hamming (ONNX's 25/46 and 21/46) or Blackman window of ``size`` samples."""
    n = int(size.reshape(-1)[0]) if torch.is_tensor(size) else int(size)
    denom = n if periodic else n - 1
    k = torch.arange(n, dtype=torch.float64)
    phase = 2 * math.pi * k / denom
    if kind == "HannWindow":
        w = 0.5 - 0.5 * torch.cos(phase)
    elif kind == "HammingWindow":
        w = 25 / 46 - 21 / 46 * torch.cos(phase)
    else:
        w = 0.42 - 0.5 * torch.cos(phase) + 0.08 * torch.cos(2 * phase)
    return w.to(dtype)


def mel_weight_matrix(bins, dft_length, rate, low, high, dtype: torch.dtype = torch.float32):
    """The (dft_length // 2 + 1) x bins triangular mel filter bank, as the ONNX reference builds it."""
    bins, dft_length, rate = int(bins), int(dft_length), int(rate)
    low, high = float(low), float(high)
    edges = np.arange(bins + 2)
    lo_mel, hi_mel = 2595 * np.log1p(low / 700) / np.log(10), 2595 * np.log1p(high / 700) / np.log(10)
    edges = edges * (hi_mel - lo_mel) / (bins + 2) + lo_mel
    edges = (((dft_length + 1) * (700 * np.expm1(edges / 2595 * np.log(10)))) // rate).astype(int)
    out = np.zeros((dft_length // 2 + 1, bins))
    for i in range(bins):
        left, center, right = edges[i], edges[i + 1], edges[i + 2]
        if center == left:
            out[center, i] = 1
        else:
            for j in range(left, center + 1):
                out[j, i] = (j - left) / (center - left)
        for j in range(center, right):
            out[j, i] = (right - j) / (right - center)
    return torch.from_numpy(out).to(dtype)


def nll_loss(log_prob, target, weight=None, reduction: str = "mean", ignore_index=None):
    ignore = -100 if ignore_index is None else ignore_index
    loss = F.nll_loss(log_prob, target.long(), weight=weight, ignore_index=ignore, reduction=reduction)
    return loss.to(log_prob.dtype)


def softmax_cross_entropy(scores, labels, weight=None, reduction: str = "mean", ignore_index=None):
    log_prob = F.log_softmax(scores, dim=1)
    return nll_loss(log_prob, labels, weight, reduction, ignore_index), log_prob


@converter("DFT", until=19)
def _dft_attr(b, node, inputs, attrs):
    length = inputs[1] if len(inputs) > 1 else None
    return b.call(dft, (inputs[0], length), {"axis": attrs.get("axis", 1), "inverse": attrs.get("inverse", 0),
                                             "onesided": attrs.get("onesided", 0)})


@converter("DFT", since=20)
def _dft(b, node, inputs, attrs):
    length = inputs[1] if len(inputs) > 1 else None
    axis = inputs[2] if len(inputs) > 2 and inputs[2] is not None else -2
    return b.call(dft, (inputs[0], length, axis), { "inverse": attrs.get("inverse", 0),
                                             "onesided": attrs.get("onesided", 0)})


@converter("STFT")
def _stft(b, node, inputs, attrs):
    args = list(inputs) + [None] * (4 - len(inputs))
    return b.call(stft, tuple(args[:4]), {"onesided": attrs.get("onesided", 1)})


@converter("HannWindow", "HammingWindow", "BlackmanWindow")
def _window(b, node, inputs, attrs):
    return b.call(window, (inputs[0],), {"kind": node.op_type, "periodic": attrs.get("periodic", 1),
                                         "dtype": torch_dtype(attrs.get("output_datatype", 1))})


@converter("MelWeightMatrix")
def _mel(b, node, inputs, attrs):
    return b.call(mel_weight_matrix, tuple(inputs[:5]), {"dtype": torch_dtype(attrs.get("output_datatype", 1))})


@converter("NegativeLogLikelihoodLoss")
def _nll(b, node, inputs, attrs):
    weight = inputs[2] if len(inputs) > 2 else None
    return b.call(nll_loss, (inputs[0], inputs[1], weight), {"reduction": text(attrs.get("reduction"), "mean"),
                                                              "ignore_index": attrs.get("ignore_index")})


@converter("SoftmaxCrossEntropyLoss")
def _sce(b, node, inputs, attrs):
    weight = inputs[2] if len(inputs) > 2 else None
    out = b.call(softmax_cross_entropy, (inputs[0], inputs[1], weight),
                 {"reduction": text(attrs.get("reduction"), "mean"), "ignore_index": attrs.get("ignore_index")})
    return b.parts(out, 2)[:len(node.output)]
