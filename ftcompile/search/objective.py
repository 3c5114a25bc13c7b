"""The Monte-Carlo objective of BayesFT (eq. 4), in torch, with common random numbers.

``theta_k`` is drawn once per run for every parameter and sample, so every trial is scored under the
same K drifts and differences between trials are not Monte-Carlo noise. Samples are evaluated in
chunks with ``torch.func.vmap`` over ``functional_call`` (one batched forward per chunk).

Any other drift model (a spec such as ``quantize:16,lognormal:0.6``, a measured table, a user's model)
goes through the runtime's ``draw_sample``, whose draws are keyed by (seed, sample, tensor): the same K
drifts for every trial again, applied to each trial's weights. A user metric ``(outputs, labels) ->
float`` is called on each sample's numpy logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from ftcompile.runtime.drift import LogNormalDrift, draw_sample

OBJECTIVES = ("accuracy", "loss")


@dataclass(frozen=True)
class Score:
    """Mean of the metric over K drift samples and its standard error (higher is better)."""

    mean: float
    stderr: float
    values: tuple


class DriftObjective:
    """``score(module)``: mean accuracy (or minus cross-entropy) of ``module`` under ``drift``.

    ``drift`` is a runtime drift model (lognormal takes the vmapped torch path); ``only`` names the
    parameters that drift (default all: the runtime's ``--targets params``).
    Shapes: ``x`` is ``n x ...`` inputs, ``y`` ``n`` labels; theta per parameter is ``K x *param.shape``.
    """

    def __init__(self, module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, drift, samples: int,
                 seed: int = 0, kind: "str | Callable" = "accuracy", chunk: int = 10, device: str = "cpu",
                 only: "set[str] | None" = None):
        if not callable(kind) and kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or a metric (outputs, labels) -> float")
        self.x, self.y = x.to(device), y.to(device)
        self.samples, self.kind, self.chunk, self.seed = int(samples), kind, chunk, seed
        self.only = None if only is None else set(only)
        self.sigma = drift.sigma if isinstance(drift, LogNormalDrift) else None
        self.drift = None if self.sigma is not None else drift
        gen = torch.Generator().manual_seed(seed)
        self.theta = {} if self.drift is not None else {
            name: torch.randn((samples, *p.shape), generator=gen).to(device) for name, p in module.named_parameters()
            if self.only is None or name in self.only}
        self._vmap_ok = True
        self._labels_np = self.y.cpu().numpy()  # a user metric takes numpy labels, the same every call

    def _metric(self, logits: torch.Tensor) -> torch.Tensor:
        if callable(self.kind):
            y = self._labels_np
            flat = logits.detach().cpu().numpy().reshape(-1, *logits.shape[-2:])
            return torch.tensor([float(self.kind(out, y)) for out in flat]).view(logits.shape[:-2])
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
        if self.drift is not None:
            values = self._drawn(module, params, buffers)
        for start in range(0, self.samples if self.drift is None else 0, self.chunk):
            theta = {n: t[start:start + self.chunk] for n, t in self.theta.items()}
            values += self._chunk(module, params, buffers, theta).tolist()
        module.train(was_training)
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        return Score(mean, math.sqrt(var / len(values)), tuple(values))

    def _drawn(self, module, params, buffers) -> list[float]:
        clean = {n: p.detach().cpu().numpy() for n, p in params.items()}
        values = []
        for k in range(self.samples):
            drifted = {n: torch.from_numpy(w).to(self.x.device)
                       for n, w in draw_sample(self.drift, clean, self.seed, k, self.only).items()}
            logits = functional_call(module, {**drifted, **buffers}, (self.x,))
            values.append(float(self._metric(logits.unsqueeze(0))[0]))
        return values

    def _chunk(self, module, params, buffers, theta) -> torch.Tensor:
        def forward(th):
            drifted = {n: p * torch.exp(self.sigma * th[n]) if n in th else p for n, p in params.items()}
            return functional_call(module, {**drifted, **buffers}, (self.x,))

        if self._vmap_ok:
            try:
                return self._metric(vmap(forward)(theta))
            except Exception:  # some graphs (data-dependent shapes) do not vmap; loop instead
                self._vmap_ok = False
        k = next(iter(theta.values())).shape[0]
        return torch.stack([self._metric(forward({n: t[i] for n, t in theta.items()})) for i in range(k)])
