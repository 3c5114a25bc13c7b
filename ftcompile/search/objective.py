"""The Monte-Carlo objective of BayesFT (eq. 4), in torch, with common random numbers.

``theta_k`` is drawn once per run for every parameter and sample, so every trial is scored under the
same K drifts and differences between trials are not Monte-Carlo noise. Samples are evaluated in
chunks with ``torch.func.vmap`` over ``functional_call`` (one batched forward per chunk).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

OBJECTIVES = ("accuracy", "loss")


@dataclass(frozen=True)
class Score:
    """Mean of the metric over K drift samples and its standard error (higher is better)."""

    mean: float
    stderr: float
    values: tuple


class DriftObjective:
    """``score(module)``: mean accuracy (or minus cross-entropy) of ``module`` under lognormal drift.

    Shapes: ``x`` is ``n x ...`` inputs, ``y`` ``n`` labels; theta per parameter is ``K x *param.shape``.
    """

    def __init__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, sigma: float, samples: int,
                 seed: int = 0, kind: str = "accuracy", chunk: int = 10, device: str = "cpu"):
        if kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        self.x, self.y = x.to(device), y.to(device)
        self.sigma, self.samples, self.kind, self.chunk = float(sigma), int(samples), kind, chunk
        gen = torch.Generator().manual_seed(seed)
        self.theta = {name: torch.randn((samples, *p.shape), generator=gen).to(device)
                      for name, p in module.named_parameters()}
        self._vmap_ok = True

    def _metric(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "accuracy":
            return (logits.argmax(-1) == self.y).float().mean(-1)
        return -F.cross_entropy(logits.flatten(0, -2), self.y.repeat(logits.numel() // logits.shape[-1] // len(self.y)),
                                reduction="none").view(logits.shape[:-1]).mean(-1)

    @torch.no_grad()
    def __call__(self, module: torch.nn.Module) -> Score:
        was_training = module.training
        module.eval()
        params = dict(module.named_parameters())
        buffers = dict(module.named_buffers())
        values = []
        for start in range(0, self.samples, self.chunk):
            theta = {n: t[start:start + self.chunk] for n, t in self.theta.items()}
            values += self._chunk(module, params, buffers, theta).tolist()
        module.train(was_training)
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        return Score(mean, math.sqrt(var / len(values)), tuple(values))

    def _chunk(self, module, params, buffers, theta) -> torch.Tensor:
        def forward(th):
            drifted = {n: p * torch.exp(self.sigma * th[n]) for n, p in params.items()}
            return functional_call(module, {**drifted, **buffers}, (self.x,))

        if self._vmap_ok:
            try:
                return self._metric(vmap(forward)(theta))
            except Exception:  # some graphs (data-dependent shapes) do not vmap; loop instead
                self._vmap_ok = False
        k = next(iter(theta.values())).shape[0]
        return torch.stack([self._metric(forward({n: t[i] for n, t in theta.items()})) for i in range(k)])
