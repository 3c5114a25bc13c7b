"""The one fine-tuning loop every method shares; a method changes only its ``TrainConfig`` (and, for
FTNA, the loss on its code head).

- ``noise_sigma > 0``: each step runs on freshly drawn lognormal drift, gradients flow through the
  drifted weights to the stored ones (variation-aware training, the ReRAM-V idea).
- ``awp_gamma > 0``: adversarial weight perturbation (Wu et al., NeurIPS 2020): each step first moves
  every weight tensor up its loss gradient by ``gamma`` times its own norm, takes the gradient there,
  and applies it to the unperturbed weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    noise_sigma: float = 0.0
    noise_params: tuple | None = None  # the parameters that drift (None: all of them)
    awp_gamma: float = 0.0
    seed: int = 0


def awp_perturbation(weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                     gamma: float) -> dict[str, torch.Tensor]:
    """``v_l = gamma * ||w_l|| * g_l / ||g_l||``: the ascent step AWP takes, ``||v_l|| = gamma ||w_l||`` per layer."""
    out = {}
    for name, w in weights.items():
        g = grads[name]
        out[name] = gamma * w.detach().norm() * g / (g.norm() + 1e-12)
    return out


@torch.enable_grad()
def fine_tune(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
              device: str = "cpu", loss_fn: Callable = F.cross_entropy) -> float:
    """Train ``module`` in place with Adam; returns the last epoch's mean loss."""
    module.to(device).train()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = dict(module.named_parameters())
    weights = {n: p for n, p in params.items() if p.dim() > 1}  # AWP perturbs kernels and matrices
    last = float("nan")
    torch.manual_seed(cfg.seed)  # dropout masks

    def forward(xb: torch.Tensor, noise: dict | None) -> torch.Tensor:
        if noise is None:
            return module(xb)
        return functional_call(module, {n: p * noise[n] if n in noise else p for n, p in params.items()}, (xb,))

    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            noise = None
            if cfg.noise_sigma > 0:
                noise = {n: torch.exp(cfg.noise_sigma * torch.randn(p.shape, generator=gen)).to(device)
                         for n, p in params.items() if cfg.noise_params is None or n in cfg.noise_params}
            loss = loss_fn(forward(xb, noise), yb)
            if cfg.awp_gamma > 0:
                grads = dict(zip(weights, torch.autograd.grad(loss, list(weights.values()))))
                v = awp_perturbation(weights, grads, cfg.awp_gamma)
                with torch.no_grad():
                    for n, w in weights.items():
                        w.add_(v[n])
                loss = loss_fn(forward(xb, noise), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.awp_gamma > 0:
                with torch.no_grad():
                    for n, w in weights.items():
                        w.sub_(v[n])
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        last = total / max(1, count)
    module.eval()
    return last
