"""The Monte-Carlo objective of BayesFT (eq. 4), in torch, with common random numbers.

``theta_k`` is drawn from a generator keyed by (seed, k) for every parameter, so every trial is scored
under the same K drifts and differences between trials are not Monte-Carlo noise. Samples are evaluated
in chunks with ``torch.func.vmap`` over ``functional_call``, and each chunk runs over the validation
inputs in batches: at most ``max_batch`` (sample, input) pairs, and at most ``max_elements`` input values (a
96 x 96 image is nine CIFAR images), go through the network at once, so
peak memory does not grow with the validation set or K. The draws are made per chunk, not kept.

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
                 only: "set[str] | None" = None, max_batch: int = 1024, example_axis: int = -2,
                 max_elements: int = 2**22):
        if not callable(kind) and kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or a metric (outputs, labels) -> float")
        self.x, self.y = x.to(device), y.to(device)
        self.samples, self.kind, self.seed = int(samples), kind, seed
        self.chunk = max(1, min(chunk, self.samples))
        pairs = min(max_batch, max(1, max_elements // max(1, x[0].numel())))
        self.batch = max(1, pairs // self.chunk)  # inputs per vmapped forward
        self.only = None if only is None else set(only)
        self.axis = example_axis  # where examples sit in the model's output: -2 for (N, C), -4 for (N, C, H, W)
        # element-wise lognormal (plain or comp=mean) takes the vmapped torch path; the rest draws through the runtime
        fast = isinstance(drift, LogNormalDrift) and drift.elementwise
        self.sigma, self.shift = (drift.sigma, drift.log_shift) if fast else (None, 0.0)
        self.drift = None if fast else drift
        self._vmap_ok = True
        self._labels_np = self.y.cpu().numpy()  # a user metric takes numpy labels, the same every call

    def _metric(self, logits: torch.Tensor) -> torch.Tensor:
        if callable(self.kind):
            y = self._labels_np
            flat = logits.detach().cpu().numpy().reshape(-1, *logits.shape[self.axis:])
            return torch.tensor([float(self.kind(out, y)) for out in flat]).view(logits.shape[:self.axis])
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
            ks = range(start, min(self.samples, start + self.chunk))
            values += self._chunk(module, params, buffers, self._theta(params, ks)).tolist()
        module.train(was_training)
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        return Score(mean, math.sqrt(var / len(values)), tuple(values))

    def _theta(self, params: dict, ks: range) -> dict[str, torch.Tensor]:
        """Standard normals for samples ``ks`` (``len(ks) x *param.shape`` each), keyed by (seed, k) alone."""
        drifting = [n for n in params if self.only is None or n in self.only]
        device = self.x.device  # drawn where the model runs (on a GPU the same keys give other, equally fixed draws)
        rows = []
        for k in ks:
            gen = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + k)
            rows.append([torch.randn(params[n].shape, generator=gen, device=device) for n in drifting])
        return {n: torch.stack([r[i] for r in rows]) for i, n in enumerate(drifting)}

    def _batched(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``forward`` over the inputs in batches, outputs concatenated along the example axis."""
        return torch.cat([forward(xb) for xb in self.x.split(self.batch)], dim=self.axis)

    def _drawn(self, module, params, buffers) -> list[float]:
        clean = {n: p.detach().cpu().numpy() for n, p in params.items()}
        values = []
        for k in range(self.samples):
            drifted = {n: torch.from_numpy(w).to(self.x.device)
                       for n, w in draw_sample(self.drift, clean, self.seed, k, self.only).items()}
            logits = self._batched(lambda xb: functional_call(module, {**drifted, **buffers}, (xb,)))
            values.append(float(self._metric(logits.unsqueeze(0))[0]))
        return values

    def _chunk(self, module, params, buffers, theta) -> torch.Tensor:
        # the drifted weights of the chunk, once (not per input batch); clean ones are shared, not batched
        drifted = {n: params[n] * torch.exp(self.sigma * th + self.shift) for n, th in theta.items()}
        clean = {n: p for n, p in params.items() if n not in drifted}

        def forward(d, xb):
            return functional_call(module, {**d, **clean, **buffers}, (xb,))

        if self._vmap_ok:
            try:
                return self._metric(self._batched(lambda xb: vmap(forward, in_dims=(0, None))(drifted, xb)))
            except Exception:  # some graphs (data-dependent shapes) do not vmap; loop instead
                self._vmap_ok = False
        k = next(iter(drifted.values())).shape[0]
        return torch.stack([self._metric(self._batched(lambda xb: forward({n: t[i] for n, t in drifted.items()}, xb)))
                            for i in range(k)])


class DetectionObjective(DriftObjective):
    """The same Monte-Carlo objective for a detector: the runtime's mAP (``metric``, e.g. ``CocoMAP``) of the
    detections under each of the K drifts (the same keyed draws as ``DriftObjective``).

    A detector's eval forward returns per-image dicts of ``boxes``/``scores``/``labels`` with data-dependent
    shapes, so samples run one after the other (no ``vmap``), each over the images in batches of ``batch``.
    """

    def __init__(self, module: torch.nn.Module, x: torch.Tensor, truth, *, drift, samples: int, metric: Callable,
                 seed: int = 0, device: str = "cpu", only: "set[str] | None" = None, batch: int = 16):
        super().__init__(module, x, torch.zeros(len(x)), drift=drift, samples=samples, seed=seed, kind=metric,
                         device=device, only=only)
        self.truth, self.batch = truth, batch

    def _score(self, module, weights: dict) -> float:
        predictions = []
        for xb in self.x.split(self.batch):
            for d in functional_call(module, weights, (xb,)):
                predictions.append(tuple(d[k].detach().cpu().numpy() for k in ("boxes", "scores", "labels")))
        return float(self.kind(predictions, self.truth))

    def _drawn(self, module, params, buffers) -> list[float]:
        clean = {n: p.detach().cpu().numpy() for n, p in params.items()}
        return [self._score(module, {**params, **buffers, **{n: torch.from_numpy(w).to(self.x.device) for n, w in
                                                             draw_sample(self.drift, clean, self.seed, k, self.only).items()}})
                for k in range(self.samples)]

    def _chunk(self, module, params, buffers, theta) -> torch.Tensor:
        k = next(iter(theta.values())).shape[0] if theta else 1
        return torch.tensor([self._score(module, {**params, **buffers,
                                                  **{n: params[n] * torch.exp(self.sigma * th[i] + self.shift) for n, th in theta.items()}})
                             for i in range(k)])
