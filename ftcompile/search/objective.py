"""The Monte-Carlo objective of BayesFT (eq. 4), in torch, scored under the runtime's own drift draws.

Sample ``k`` drifts each drifting parameter exactly as the runtime drifts the tensor it becomes in ONNX
(``drifting.DriftKey``): lognormal drift multiplies it by ``exp(sigma * z)`` with ``z`` the runtime's
``keyed_normals(seed, k, name)``; any other drift model (a device preset, a measured table, a user's model) is the
runtime's ``draw_sample`` applied to the parameter laid out as that tensor; the analog twin's read noise is the
runtime's ``KeyedNoise`` stream of (seed, k, layer). So the objective of a model equals ``validate --seed SEED`` of
its ONNX export on the same data, up to float rounding, and every trial is scored under the same K drifts (common
random numbers: differences between trials are not Monte-Carlo noise).

The objective's seed is the harden seed plus ``SELECTION_STREAM``: the draws that choose the recipe are never
the draws of the sign-off (``validate --seed S``), which therefore measures drift no choice has seen.

Samples are evaluated in chunks with ``torch.func.vmap`` over ``functional_call`` where the network allows it
(decided once, by a probe: a graph with data-dependent shapes runs the samples one after the other, which gives
the same values), and each chunk runs over the validation inputs in batches: at most ``max_batch`` (``MAX_PAIRS``)
(sample, input) pairs, and at most ``max_elements`` input values, go through the network at once, so peak memory
does not grow with the validation set or K. A user metric ``(outputs, labels) -> float`` is called on each sample's
numpy outputs.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from ftcompile.runtime.drift import LogNormalDrift, draw_sample, keyed_normals
from ftcompile.search.inputs import Inputs, as_inputs

OBJECTIVES = ("accuracy", "loss")
SELECTION_STREAM = 1 << 20  # the objective draws the runtime's samples of seed + this (never the sign-off's)
THETA_CACHE_BYTES = 256 * 2**20  # keep the K lognormal draws between calls when they take at most this
# (sample, input) pairs per vmapped forward: on the GTSRB STN 1,024 held 1.38 GB at peak against 0.68 GB for 256,
# at the same speed (10 samples of 2,000 validation images, one thread)
MAX_PAIRS = 256


def selection_seed(seed: int) -> int:
    """The runtime seed whose samples the search's objective scores under, for harden seed ``seed``."""
    return int(seed) + SELECTION_STREAM


@dataclass(frozen=True)
class Score:
    """Mean of the metric over K drift samples and its standard error (higher is better)."""

    mean: float
    stderr: float
    values: tuple


class DriftObjective:
    """``score(module)``: mean accuracy (or minus cross-entropy, or a metric) of ``module`` under ``drift``.

    Args:
        drift: a runtime drift model (element-wise lognormal takes the vectorized torch path).
        seed: the runtime seed whose samples ``0 .. samples-1`` are scored (``selection_seed`` in harden).
        keys: parameter name -> ``drifting.DriftKey`` of the parameters that drift (the rest stay clean); None:
            every parameter drifts under its own name (a module with no ONNX model behind it).
        converters: the analog twin's hooks (``converter_hooks.ConverterHooks``) when training runs through them;
            with output noise the samples run one after the other, each reading its keyed noise.
    Shapes: ``x`` is ``n x ...`` inputs, ``y`` ``n`` labels; the drift of a parameter is ``K x *param.shape``.
    """

    def __init__(self, module: torch.nn.Module, x: "torch.Tensor | Inputs", y: torch.Tensor, *, drift,
                 samples: int, seed: int = 0, kind: "str | Callable" = "accuracy", chunk: int = 10,
                 device: str = "cpu", keys: dict | None = None, converters=None, max_batch: int = MAX_PAIRS,
                 example_axis: int = -2, max_elements: int = 2**22):
        if not callable(kind) and kind not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or a metric (outputs, labels) -> float")
        self.x, self.y = as_inputs(x).to(device), y.to(device)
        self.samples, self.kind, self.seed = int(samples), kind, int(seed)
        self.chunk = max(1, min(chunk, self.samples))
        pairs = min(max_batch, max(1, max_elements // max(1, self.x.example_size)))
        self.batch = max(1, pairs // self.chunk)  # inputs per vmapped forward
        self.keys = keys
        self.converters = converters
        self.axis = example_axis  # where examples sit in the model's output: -2 for (N, C), -4 for (N, C, H, W)
        fast = isinstance(drift, LogNormalDrift) and drift.elementwise
        self.sigma, self.shift = (drift.sigma, drift.log_shift) if fast else (None, 0.0)
        self.drift = None if fast else drift
        # keyed noise is drawn per sample in example order: no vmap over samples then
        self.vectorized: bool | None = False if converters is not None and converters.noisy else None
        self._theta: dict[int, dict[str, np.ndarray]] = {}
        self._labels_np = self.y.cpu().numpy()  # a user metric takes numpy labels, the same every call

    # --- the drift of sample k, as the runtime draws it --------------------------------------------------
    def _drifting(self, params: dict) -> dict:
        if self.keys is None:
            from ftcompile.search.drifting import DriftKey

            return {n: DriftKey(n, False, tuple(p.shape)) for n, p in params.items()}
        return {n: k for n, k in self.keys.items() if n in params}

    def _normals(self, k: int, params: dict) -> dict[str, np.ndarray]:
        """The runtime's standard normals of sample ``k`` in each drifting parameter's layout (cached when small)."""
        cached = self._theta.get(k)
        if cached is not None:
            return cached
        z = {n: key.from_runtime(keyed_normals(self.seed, k, key.name, key.shape), tuple(params[n].shape))
             for n, key in self._drifting(params).items()}
        size = sum(v.nbytes for v in z.values()) * self.samples
        if size <= THETA_CACHE_BYTES:
            self._theta[k] = z
        return z

    def _sample_weights(self, k: int, params: dict) -> dict[str, torch.Tensor]:
        """The drifted parameters of sample ``k`` (only those that drift)."""
        if self.drift is None:
            z = self._normals(k, params)
            return {n: params[n] * torch.exp(self.sigma * torch.from_numpy(v).to(params[n].device) + self.shift)
                    for n, v in z.items()}
        keys = self._drifting(params)
        laid = {key.name: key.to_runtime(params[n].detach().cpu().numpy()) for n, key in keys.items()}
        drawn = draw_sample(self.drift, laid, self.seed, k)
        return {n: torch.from_numpy(np.ascontiguousarray(key.from_runtime(drawn[key.name], tuple(params[n].shape))))
                .to(params[n].device) for n, key in keys.items()}

    # --- scoring ------------------------------------------------------------------------------------------
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
        for start in range(0, self.samples, self.chunk):
            ks = range(start, min(self.samples, start + self.chunk))
            values += self._chunk(module, params, buffers, ks)
        module.train(was_training)
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        return Score(mean, math.sqrt(var / len(values)), tuple(values))

    def _batched(self, forward: Callable[[tuple], torch.Tensor]) -> torch.Tensor:
        """``forward(args)`` over the inputs in batches, in order, outputs joined along the example axis.

        Each batch's outputs are copied into one tensor made at the first batch and then freed, rather than kept
        until a final ``cat``: the kept outputs were small blocks made between the forwards' large activation
        blocks, and each one pinned the hole a freed activation left, so the heap grew by hundreds of MB, by a
        different amount in each run of the same work (benchmarks/results/memory.json)."""
        out, start = None, 0
        for xb in self.x.split(self.batch):
            y = forward(xb.args)
            if out is None:
                shape = list(y.shape)
                shape[self.axis] = len(self.x)
                out = y.new_empty(shape)
            out.narrow(self.axis, start, y.shape[self.axis]).copy_(y)
            start += y.shape[self.axis]
            del y
        return out

    def _one(self, module, params, buffers, k: int) -> float:
        """Sample ``k`` alone (reading its keyed read noise, if the twin has some)."""
        weights = {**params, **buffers, **self._sample_weights(k, params)}
        with self._noise(k):
            logits = self._batched(lambda args: functional_call(module, weights, args))
        return float(self._metric(logits.unsqueeze(0))[0])

    def _noise(self, k: int):
        """Sample ``k``'s keyed read noise for the twin's hooks while it is scored (nothing without noise)."""
        if self.converters is not None and self.converters.noisy:
            return self.converters.keyed(self.seed, k)
        return nullcontext()

    def _chunk(self, module, params, buffers, ks: range) -> list[float]:
        if self.vectorized is None:
            self.vectorized = _vmaps(module, params, buffers, self.x[:1])
        if not self.vectorized:
            return [self._one(module, params, buffers, k) for k in ks]
        # the drifted weights of the chunk, once (not per input batch); clean ones are shared, not batched
        rows = [self._sample_weights(k, params) for k in ks]
        drifted = {n: torch.stack([r[n] for r in rows]) for n in rows[0]}
        clean = {n: p for n, p in {**params, **buffers}.items() if n not in drifted}

        def forward(d, args):
            return functional_call(module, {**d, **clean}, args)

        return self._metric(self._batched(lambda args: vmap(forward, in_dims=(0, None))(drifted, args))).tolist()


def _vmaps(module, params, buffers, x: Inputs) -> bool:
    """Whether ``module`` runs under ``vmap`` over a batch of weights: a graph with data-dependent shapes or
    Python-side reads of tensor values does not. Only such errors (RuntimeError from torch's batching) choose the
    one-by-one path, which computes the same values; anything else propagates."""
    weights = {n: p.unsqueeze(0) for n, p in params.items()}
    try:
        vmap(lambda w, args: functional_call(module, {**w, **buffers}, args), in_dims=(0, None))(weights, x.args)
        return True
    except RuntimeError:
        return False


class DetectionObjective(DriftObjective):
    """The same Monte-Carlo objective for a detector: the runtime's mAP (``metric``, e.g. ``CocoMAP``) of the
    detections under each of the K drifts (the same keyed draws as ``DriftObjective``).

    A detector's eval forward returns per-image dicts of ``boxes``/``scores``/``labels`` with data-dependent
    shapes, so samples run one after the other (no ``vmap``), each over the images in batches of ``batch``.
    """

    def __init__(self, module: torch.nn.Module, x: torch.Tensor, truth, *, drift, samples: int, metric: Callable,
                 seed: int = 0, device: str = "cpu", keys: dict | None = None, batch: int = 16):
        super().__init__(module, x, torch.zeros(len(x)), drift=drift, samples=samples, seed=seed, kind=metric,
                         device=device, keys=keys)
        self.truth, self.batch, self.vectorized = truth, batch, False

    def _one(self, module, params, buffers, k: int) -> float:
        weights = {**params, **buffers, **self._sample_weights(k, params)}
        predictions = []
        for xb in self.x.split(self.batch):
            for d in functional_call(module, weights, xb.args):
                predictions.append(tuple(d[key].detach().cpu().numpy() for key in ("boxes", "scores", "labels")))
        return float(self.kind(predictions, self.truth))
