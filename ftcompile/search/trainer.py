"""The one fine-tuning loop every method shares; a method changes only its ``TrainConfig``."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call


@dataclass(frozen=True)
class TrainConfig:
    """SGD on the weights: ``noise_sigma > 0`` trains under freshly drawn lognormal drift (ReRAM-V style)."""

    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    noise_sigma: float = 0.0
    seed: int = 0


@torch.enable_grad()
def fine_tune(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
              device: str = "cpu") -> float:
    """Train ``module`` in place with Adam and cross-entropy; returns the last epoch's mean loss."""
    module.to(device).train()
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    params = dict(module.named_parameters())
    last = float("nan")
    torch.manual_seed(cfg.seed)  # dropout masks
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            if cfg.noise_sigma > 0:
                # gradients flow through the drifted weights to the stored ones
                drifted = {n: p * torch.exp(cfg.noise_sigma * torch.randn(p.shape, generator=gen).to(device))
                           for n, p in params.items()}
                logits = functional_call(module, drifted, (xb,))
            else:
                logits = module(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        last = total / max(1, count)
    module.eval()
    return last
