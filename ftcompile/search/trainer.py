"""The one fine-tuning loop every method shares; a method changes only its ``TrainConfig`` (and, for
FTNA, the loss on its code head).

- ``noise_sigma > 0``: each step runs on freshly drawn lognormal drift, gradients flow through the
  drifted weights to the stored ones (variation-aware training, the ReRAM-V idea).
- ``noise_model`` (a device preset such as ``pcm:1d``): each step runs on weights read back through the
  device physics (``apply_torch``: the runtime's equations on torch tensors), differentiable in the weights:
  hardware-aware training under the very model the sign-off uses.
- ``awp_gamma > 0``: adversarial weight perturbation (Wu et al., NeurIPS 2020): each step first moves
  every weight tensor up its loss gradient by ``gamma`` times its own norm, takes the gradient there,
  and applies it to the unperturbed weights.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ftcompile.errors import ConfigError
from ftcompile.labels import IGNORE
from ftcompile.search.inputs import Inputs, as_inputs


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    noise_sigma: float = 0.0
    noise_keys: dict | None = None  # parameter name -> drifting.DriftKey of the parameters that drift (None: all)
    noise_model: object = None     # a device drift model with apply_torch(w, generator); wins over noise_sigma
    awp_gamma: float = 0.0
    optimizer: str = "adam"        # adam, or sgd (momentum 0.9, Nesterov): what SGD-trained networks were fit with
    schedule: str = "auto"         # constant; cosine (the rate decays to 0 over the fine-tune's steps); auto (below)
    seed: int = 0
    constraint: object = None      # clipping.WeightClip: weights clipped (and remapped) after every step


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("auto", "constant", "cosine")
# auto: cosine for fine-tunes of at least this many steps, constant below. Measured (README, "Which method"):
# cosine helped the long fine-tunes (ResNet-20, 2,820 steps: +3.1 points under drift; GTSRB STN, 5,145: +1.0)
# and hurt the short ones (MNIST LeNet, 825 steps: -1.1 over 3 seeds; PennFudan detector, 60: -0.07 mAP).
# The threshold only separates those four; nothing finer was measured.
COSINE_FROM_STEPS = 2000


def resolve_schedule(schedule: str, steps: int) -> str:
    """``auto`` as the schedule a fine-tune of ``steps`` steps gets (constant or cosine)."""
    if schedule == "auto":
        return "cosine" if steps >= COSINE_FROM_STEPS else "constant"
    return schedule


def fit_steps(examples: int, epochs: int, batch_size: int) -> int:
    return epochs * -(-examples // batch_size)


def make_optimizer(params, cfg: TrainConfig,
                   steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The fine-tune's optimizer and its per-step learning-rate schedule over ``steps`` steps."""
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resolve_schedule(cfg.schedule, steps) == "cosine":
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-pixel cross-entropy plus soft Dice over the foreground classes; pixels marked 255
    (``labels.IGNORE``) do not count. ``(N, C, H, W)`` scores, or ``(N, 1, H, W)``: one foreground logit.

    Cross-entropy alone collapsed a U-Net to all-background when trained under drift (PennFudan, 18% foreground,
    lognormal 0.6: clean Dice 0.74 -> 0.0): under heavy noise the cheapest way to lower per-pixel loss is to
    predict the majority class. The soft Dice term (1 - 2|P.T| / (|P| + |T|) per foreground class, summed over
    the batch) is what the sign-off measures and does not reward that.
    """
    keep = (masks != IGNORE).unsqueeze(1).to(logits.dtype)
    target = torch.where(masks == IGNORE, torch.zeros_like(masks), masks)
    if logits.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target.to(logits.dtype), weight=keep[:, 0])
        ce = ce * keep.numel() / keep.sum().clamp(min=1)  # the mean over kept pixels
        prob, onehot = torch.sigmoid(logits), target.unsqueeze(1).to(logits.dtype)
    else:
        ce = F.cross_entropy(logits, masks, ignore_index=IGNORE)
        prob = logits.softmax(1)[:, 1:]
        onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(logits.dtype)
    inter = (prob * onehot * keep).sum((0, 2, 3))
    total = ((prob + onehot) * keep).sum((0, 2, 3))
    return ce + (1 - (2 * inter + 1) / (total + 1)).mean()


def module_loss(losses: dict, targets) -> torch.Tensor:
    """The loss a detector computes itself (torchvision's contract: ``model(images, targets)`` in training mode
    returns a dict of losses): their sum. ``fine_tune`` passes the targets into the forward for it."""
    return sum(losses.values())


module_loss.in_forward = True


def task_loss(task: str) -> Callable:
    """The training loss of a task (classification: cross-entropy; detection: the detector's own losses)."""
    return {"segmentation": segmentation_loss, "detection": module_loss}.get(task, F.cross_entropy)


def box_targets(labels) -> list[dict]:
    """torchvision's per-image targets (``boxes`` float (k, 4), ``labels`` int64 (k,)) from ``BoxLabels``."""
    out = []
    for i in range(len(labels)):
        boxes, classes = labels.image(i)
        out.append({"boxes": torch.as_tensor(boxes, dtype=torch.float32),
                    "labels": torch.as_tensor(classes, dtype=torch.int64)})
    return out


def take(y, idx: torch.Tensor):
    """Rows ``idx`` of labels: a tensor, or a list of per-image targets (detection)."""
    return [y[i] for i in idx.tolist()] if isinstance(y, list) else y[idx]


def awp_perturbation(weights: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                     gamma: float) -> dict[str, torch.Tensor]:
    """``v_l = gamma * ||w_l|| * g_l / ||g_l||``: the ascent step AWP takes, ``||v_l|| = gamma ||w_l||`` per layer."""
    out = {}
    for name, w in weights.items():
        g = grads[name]
        out[name] = gamma * w.detach().norm() * g / (g.norm() + 1e-12)
    return out


def freeze_norm_statistics(module: torch.nn.Module) -> None:
    """Batch-norm layers normalize with their stored statistics and stop updating them (their affine weights still
    train), as in torchvision's detection fine-tuning: the network fine-tuned is the one the exporter writes
    (BatchNorm folded into the convolutions with the stored statistics), and multiplicative drift of a
    convolution's weights before the norm is then the drift of the folded weights the runtime applies. With live
    statistics, noise or dropout would re-estimate them on perturbed activations. (On the PennFudan detector
    noise-trained at sigma 0.4 it made no measurable difference: clean mAP 0.455 live, 0.454 frozen.)"""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _device_read(cfg: TrainConfig, name: str, p: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``cfg.noise_model``'s read-back of parameter ``name``, computed on the tensor as the runtime lays it out (a
    per-column scale or compensation acts on the same axis as at sign-off)."""
    key = None if cfg.noise_keys is None else cfg.noise_keys.get(name)
    if key is not None and hasattr(cfg.noise_model, "apply_torch_named"):  # a chip: per tile of the runtime tensor
        return key.from_runtime(cfg.noise_model.apply_torch_named(key.to_runtime(p), gen, key.name), tuple(p.shape))
    if key is None or not key.transposed:
        return cfg.noise_model.apply_torch(p, gen)
    return key.from_runtime(cfg.noise_model.apply_torch(key.to_runtime(p), gen), tuple(p.shape))


@torch.enable_grad()
def fine_tune(module: torch.nn.Module, x: "torch.Tensor | Inputs", y: torch.Tensor, cfg: TrainConfig,
              device: str = "cpu", loss_fn: Callable = F.cross_entropy) -> float:
    """Train ``module`` in place (``cfg.optimizer``, ``cfg.schedule``); returns the last epoch's mean loss. ``x``: the
    examples of a single-input model, or ``inputs.Inputs`` (one tensor per model input)."""
    x = as_inputs(x)
    module.to(device).train()
    freeze_norm_statistics(module)
    gen = torch.Generator().manual_seed(cfg.seed)
    # on a GPU the noise is drawn there: a ResNet-18's 11 M factors per step drawn on the CPU and copied over
    # cost more than the step itself
    noise_gen = gen if torch.device(device).type == "cpu" else torch.Generator(device=device).manual_seed(cfg.seed)
    opt, schedule = make_optimizer(module.parameters(), cfg, fit_steps(len(x), cfg.epochs, cfg.batch_size))
    params = dict(module.named_parameters())
    weights = {n: p for n, p in params.items() if p.dim() > 1}  # AWP perturbs kernels and matrices
    last = float("nan")
    torch.manual_seed(cfg.seed)  # dropout masks

    with_targets = getattr(loss_fn, "in_forward", False)

    def forward(xb: Inputs, noise: dict | None, yb) -> torch.Tensor:
        args = (*xb.args, yb) if with_targets else xb.args
        if noise is None:
            return module(*args)
        return functional_call(module, {n: noise[n](p) if n in noise else p for n, p in params.items()}, args)

    def draw(step: int) -> dict | None:
        """Per drifting parameter, the drift of this step as a function of the (possibly perturbed) weight."""
        chosen = [n for n in params if cfg.noise_keys is None or n in cfg.noise_keys]
        if cfg.noise_model is not None:  # re-seeded per call: AWP's two forwards see the same devices
            seeds = {n: cfg.seed * 1_000_003 + step * 7919 + zlib.crc32(n.encode()) for n in chosen}
            return {n: (lambda p, n=n: _device_read(cfg, n, p, torch.Generator().manual_seed(seeds[n])))
                    for n in chosen}
        if cfg.noise_sigma > 0:
            factors = {n: torch.exp(cfg.noise_sigma * torch.randn(params[n].shape, generator=noise_gen,
                                                                  device=noise_gen.device)) for n in chosen}
            return {n: (lambda p, f=factors[n]: p * f) for n in chosen}
        return None

    step = 0
    if cfg.constraint is not None:
        cfg.constraint.start(module)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        total, count = 0.0, 0
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            xb, yb = x[idx].to(device), take(y, idx)
            yb = yb.to(device) if torch.is_tensor(yb) else [{k: v.to(device) for k, v in t.items()} for t in yb]
            step += 1
            noise = draw(step)
            loss = loss_fn(forward(xb, noise, yb), yb)
            if cfg.awp_gamma > 0:
                grads = dict(zip(weights, torch.autograd.grad(loss, list(weights.values()))))
                v = awp_perturbation(weights, grads, cfg.awp_gamma)
                with torch.no_grad():
                    for n, w in weights.items():
                        w.add_(v[n])
                loss = loss_fn(forward(xb, noise, yb), yb)
            if not torch.isfinite(loss):
                raise ConfigError(f"fine-tuning diverged (loss {loss.item()} at step {step}, {cfg.optimizer} at lr "
                                  f"{cfg.lr:g}); lower --lr.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.awp_gamma > 0:
                with torch.no_grad():
                    for n, w in weights.items():
                        w.sub_(v[n])
            opt.step()
            if cfg.constraint is not None:
                cfg.constraint.step(module)
            schedule.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        last = total / max(1, count)
    module.eval()
    return last
