"""The hardening line: import -> insert_dropout -> search (rates) x fine-tune (weights) -> export -> sign-off."""
from __future__ import annotations

import copy
import math
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ftcompile.errors import ConfigError, Interrupted
from ftcompile.passes.onnx_graph import TARGET_MODES
from ftcompile.resources import keep_large_allocations
from ftcompile.runtime.drift import (DriftModel, LogNormalDrift, parse_drift, resolve_targets, sigma_of,
                                     with_compensation)
from ftcompile.signoff import HOLDOUT
from ftcompile.runtime.metrics import parse_metric
from ftcompile.search.blend import GRID, Blend, choose_blend
from ftcompile.search.blend import SEARCH as BLEND_SEARCH
from ftcompile.search.controller import KERNELS, SEARCHES, Controller
from ftcompile.search.executor import Executor, TrialTask, make_executor, retried
from ftcompile.search.fidelity import Fidelity, fixed_share
from ftcompile.search.inputs import Inputs
from ftcompile.search.journal import RATE_SEARCH, RECIPE, Journal, TrialRecord, trial_record
from ftcompile.search.noise_level import choose_train_sigma, train_sigma_grid
from ftcompile.search.objective import OBJECTIVES, DetectionObjective, DriftObjective, Score, selection_seed
from ftcompile.search.recipe import RECIPE_TRIALS, RecipeSpace, recipe_space
from ftcompile.search.recipe import choose as choose_recipe
from ftcompile.search.space import SPACES, RateSpace, rate_space, site_widths
from ftcompile.runtime.tasks import OnClassIds, task_metric
from ftcompile.labels import BoxLabels
from ftcompile.search.trainer import (OPTIMIZERS, SCHEDULES, TrainConfig, box_targets, fine_tune, fit_steps,
                                     resolve_schedule, take, task_loss)



@dataclass(frozen=True)
class Method:
    """A method is a strategy over the shared loop: which rates, which training perturbation, which head."""

    dropout: str = "none"   # none | fixed (--rate) | searched (BO over per-layer rates)
    noise: bool = False     # fine-tune under sampled drift
    awp: bool = False       # adversarial weight perturbation
    ecoc: bool = False      # FTNA's error-correcting output code head
    trains: bool = True     # erm only re-exports


METHOD_TABLE = {
    "erm": Method(trains=False),
    "noise-injection": Method(noise=True),
    "awp": Method(awp=True),
    "ftna": Method(ecoc=True),
    "fixed-dropout": Method(dropout="fixed"),
    "bayesft": Method(dropout="searched"),
    "bayesft+noise": Method(dropout="searched", noise=True),
}
METHODS = tuple(METHOD_TABLE)
RECIPES = ("bo", "grid")  # bo: one BoTorch search over the recipe (recipe.py); grid: the training-noise grid
# The default, chosen by measurement (README, "Which method"): noise injection hardened best or tied on every task
# measured (MNIST LeNet, a CIFAR CNN, a GTSRB CNN, ResNet-20) in 1/8 to 2/5 of BayesFT's time. It needs a
# drift it can sample in training (a lognormal term or a device preset); for any other drift (a measured
# table, a user's model) the default is the paper's search, which only needs the objective.
DEFAULT_METHOD = "auto"
# Fewest optimizer steps of the final fit under --final-epochs auto: 15 epochs of a 240-image training set are
# 60 steps, too few for noise training to settle (PennFudan, README "PennFudan at the crossing"); every
# classifier measured had 825 or more (the MNIST LeNet), which this leaves alone.
MIN_FINAL_STEPS = 240


def _word_or_number(value, words: tuple[str, ...], ok) -> bool:
    """A flag that takes a word (``auto``) or a finite number ``ok`` accepts, as given by the CLI or the API."""
    if value in words:
        return True
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(number) and ok(number))


@dataclass(frozen=True)
class HardenConfig:
    """Every knob of ``harden``; defaults are the measured ones (README).

    The drift has one source of truth: ``drift`` (a spec) when given, else lognormal at ``sigma`` (0.6 when
    neither is given). After construction ``sigma`` is the lognormal sigma of that drift (None when it has
    no lognormal term); a ``sigma`` that disagrees with ``drift`` is refused.
    """

    sigma: float | str | None = None  # auto: where the source loses half its clean metric on the validation data
    method: str = DEFAULT_METHOD   # auto: noise-injection when the drift can be sampled in training, else bayesft
    recipe: str = "grid"           # noise-injection's recipe: grid (the training-noise grid) or bo (one BoTorch
                                   # search, recipe.py)
    trials: int | str = "auto"     # auto: RECIPE_TRIALS for the recipe search, 20 for the rate search
    epochs: int = 3
    final_epochs: int | str = "auto"  # auto: 15 epochs, more on small training sets (final_epochs_for)
    samples: int = 20
    max_rate: float = 0.8
    rate: float = 0.3              # fixed-dropout's rate
    awp_gamma: float = 0.05        # awp: perturbation norm relative to each weight tensor's norm
    code_bits: int = 16            # ftna: code length (Hadamard codes, at least the next power of 2 > classes)
    train_sigma: float | str = "auto"  # lognormal sigma sampled in training (+noise methods); auto: a short grid
    blend: float | str = "auto"    # share of the source's weights blended into the fine-tuned ones (blend.py);
                                   # auto: chosen
    search: str = "bo"
    rates: str = "per-layer"       # search space: per-layer (the paper's), per-stage or shared (space.py)
    trial_fraction: float = 1.0    # share of the training set each trial fine-tunes on (the final fit: all)
    low_fidelity: float | None = None  # the recipe search also runs trials on this share of the trial data,
                                       # chosen per trial by cost (fidelity.py); None: every trial is full
    kernel: str = "matern52"
    objective: str = "accuracy"    # accuracy, loss, or a metric package.module:function
    drift: str | None = None       # drift spec of the objective and sign-off; default lognormal at sigma
    compensation: str | None = None  # drift compensation (none, global, column; mean for lognormal)
    dac_bits: int | None = None    # converters in training and sign-off (the analog twin); None: full precision
    adc_bits: int | None = None
    adc_noise: float = 0.0         # the ADC's output noise, a fraction of its bound (needs adc_bits)
    chip: str | None = None        # a chip (devices/chip.py), e.g. aihwkit-inference: tiles, converters, noise, device
    weight_clip: str | None = None   # clip after every step: none, gaussian:K, fixed:V (clipping.py); None: the chip's
    weight_remap: str | None = None  # the fixed clip's reference: none, channel, layer; None: the chip's
    targets: str = "auto"          # which tensors drift: auto (crossbar for a device drift, else params), params,
                                   # crossbar
    bias: bool = False             # with targets=crossbar: layer biases drift too
    lr: float = 1e-3
    optimizer: str = "adam"        # adam or sgd (trainer.py)
    lr_schedule: str = "auto"      # auto, constant or cosine; auto resolves on the final fit's steps, trials included
    batch_size: int = 64
    channel: bool = False
    holdout: float = HOLDOUT       # without --test: the share of --val held out for the sign-off (signoff.py)
    seed: int = 0
    device: str = "cpu"
    time_budget: float | None = None  # seconds for the search; finished trials are kept
    workers: int = 1               # trials in parallel (one torch thread each)
    executor: str = "process"      # where parallel trials run: process (local) or ray
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.train_sigma is None:  # the API's spelling of the default before the grid existed
            object.__setattr__(self, "train_sigma", "auto")
        checks = [(self.method in METHODS or self.method == "auto",
                   f"--method must be auto or one of {', '.join(METHODS)}"),
                  (self.search in SEARCHES, f"--search must be one of {', '.join(SEARCHES)}"),
                  (self.rates in SPACES, f"--rate-space must be one of {', '.join(SPACES)}"),
                  (0 < float(self.trial_fraction) <= 1, "--trial-fraction must be in (0, 1]"),
                  (self.low_fidelity is None or 0 < float(self.low_fidelity) < 1, "--low-fidelity must be in (0, 1)"),
                  (self.recipe in RECIPES, f"--recipe must be one of {', '.join(RECIPES)}"),
                  (self.kernel in KERNELS, f"--kernel must be one of {', '.join(KERNELS)}"),
                  (self.objective in OBJECTIVES or ":" in self.objective,
                   f"--objective must be one of {', '.join(OBJECTIVES)} or package.module:function"),
                  (_word_or_number(self.sigma, (None, "auto"), lambda v: v >= 0), "--sigma must be auto or >= 0"),
                  (self.targets in TARGET_MODES + ("auto",), f"--targets must be auto, {' or '.join(TARGET_MODES)}"),
                  (0 <= self.holdout < 1, "--holdout must be in [0, 1)"),
                  (_word_or_number(self.trials, ("auto",), lambda n: n >= 1 and n == int(n)),
                   "--trials must be auto or a whole number >= 1"), (self.epochs >= 0, "--epochs must be >= 0"),
                  (_word_or_number(self.final_epochs, ("auto",), lambda n: n >= 0 and n == int(n)),
                   "--final-epochs must be auto or a whole number >= 0"),
                  (self.samples >= 1, "--samples must be >= 1"),
                  (0 < self.max_rate < 1, "--max-rate must be in (0, 1)"),
                  (0 <= self.rate < 1, "--dropout-rate must be in [0, 1)"),
                  (0 <= self.awp_gamma <= 1, "--awp-gamma must be in [0, 1]"),
                  (4 <= self.code_bits <= 1024, "--code-bits must be in [4, 1024]"),
                  (self.lr > 0, "--lr must be > 0"),
                  (_word_or_number(self.train_sigma, ("auto",), lambda v: v >= 0),
                   "--train-sigma must be auto or a number >= 0"),
                  (_word_or_number(self.blend, ("auto", "off"), lambda v: 0 <= v <= 1),
                   "--blend must be auto, off or a number in [0, 1]"),
                  (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
                  (self.lr_schedule in SCHEDULES, f"--lr-schedule must be one of {', '.join(SCHEDULES)}"),
                  (self.batch_size >= 1, "--train-batch-size must be >= 1"),
                  (self.device in ("cpu", "cuda") or self.device.startswith("cuda:"), "--device must be cpu or cuda"),
                  (self.time_budget is None or self.time_budget > 0, "--time-budget must be > 0"),
                  (self.workers >= 1, "--workers must be >= 1"),
                  (self.executor in ("process", "ray"), "--executor must be process or ray")]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{message}.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():  # before --sigma auto's early return
            raise ConfigError("--device cuda: no CUDA device is visible to torch; use --device cpu.")
        if self.dac_bits is not None or self.adc_bits is not None or self.adc_noise:
            from ftcompile.passes.converters import ConverterSpec

            ConverterSpec(self.dac_bits, self.adc_bits, self.adc_noise)  # range check, one-line error
        self._resolve_chip()
        if self.trials != "auto":
            object.__setattr__(self, "trials", int(float(self.trials)))
        object.__setattr__(self, "trial_fraction", float(self.trial_fraction))
        if self.low_fidelity is not None:
            object.__setattr__(self, "low_fidelity", float(self.low_fidelity))
        auto = self.sigma == "auto"  # harden finds it on the validation data (with_sigma); the drift waits for it
        if auto and (self.drift or self.chip):
            target = f"--drift {self.drift!r}" if self.drift else f"--chip {self.chip!r}"
            raise ConfigError(f"--sigma auto finds a lognormal sigma; {target} already names the target drift "
                              "(drop one).")
        if not auto:
            object.__setattr__(self, "sigma", self._resolve_sigma())
        if self.train_sigma != "auto":
            object.__setattr__(self, "train_sigma", float(self.train_sigma))
        if self.blend not in ("auto", "off"):
            object.__setattr__(self, "blend", float(self.blend))
        if self.final_epochs != "auto":
            object.__setattr__(self, "final_epochs", int(float(self.final_epochs)))
        self.metric()  # a bad spec fails here, before any work
        if auto:  # a lognormal target: what its drift-dependent checks below would find
            object.__setattr__(self, "targets", resolve_targets(self.targets, LogNormalDrift(0.0)))
            object.__setattr__(self, "method", "noise-injection" if self.method == "auto" else self.method)
            return
        object.__setattr__(self, "targets", resolve_targets(self.targets, self.drift_model()))
        if self.method == "auto":
            object.__setattr__(self, "method", "noise-injection")
            if self.noise is None and self.train_device() is None:
                object.__setattr__(self, "method", "bayesft")
        if self.low_fidelity is not None and not self.recipe_search:
            raise ConfigError(f"--low-fidelity runs cheap trials of the recipe search; --method {self.method} with "
                              f"--recipe {self.recipe} has none (use --recipe bo with noise injection).")
        if self.strategy.noise and self.noise is None and self.train_device() is None:
            raise ConfigError(f"--method {self.method} trains under sampled drift, and drift {self.drift!r} has "
                              "neither a lognormal term nor a device preset (pcm, reram-wan2022); give --train-sigma.")

    def with_sigma(self, sigma: float) -> "HardenConfig":
        """This config at the target ``sigma`` (what ``--sigma auto`` resolved to)."""
        return replace(self, sigma=float(sigma))

    @property
    def recipe_search(self) -> bool:
        """The default search: noise injection's recipe chosen by BoTorch (``recipe.py``)."""
        return self.recipe == "bo" and self.method == "noise-injection"

    @property
    def trial_count(self) -> int:
        if self.trials != "auto":
            return self.trials
        return RECIPE_TRIALS if self.recipe_search else 20

    def final_epochs_for(self, examples: int) -> int:
        """The final fit's epochs on ``examples`` training examples. ``auto``: 15 epochs, and at least
        ``MIN_FINAL_STEPS`` optimizer steps: on PennFudan's 240 images 15 epochs are 60 steps, and 240 steps
        kept 0.06-0.10 more Dice under drift on three seeds (README, "PennFudan at the crossing")."""
        if self.final_epochs != "auto":
            return self.final_epochs
        return max(15, -(-MIN_FINAL_STEPS // fit_steps(examples, 1, self.batch_size)))

    def blend_shares(self) -> tuple[float, ...]:
        """The shares of the source's weights to try after the final fit (empty: no blend)."""
        if self.blend == "auto":
            return BLEND_SEARCH if self.recipe_search else GRID
        return () if self.blend == "off" or self.blend == 0 else (self.blend,)

    def _resolve_chip(self) -> None:
        """The chip's spec checked (refused beside --dac-bits/--adc-bits), and the clip and remap resolved: as
        given, else the chip's (aihwkit's ``clip``, ``remap``), else none."""
        from ftcompile.runtime.devices.chip import parse_chip
        from ftcompile.search.clipping import check_remap, parse_clip

        chip = parse_chip(self.chip)
        if chip is not None and (self.dac_bits is not None or self.adc_bits is not None or self.adc_noise):
            raise ConfigError(f"--chip {chip.name} brings its own converters; drop --dac-bits/--adc-bits/--adc-noise.")
        if chip is not None:
            object.__setattr__(self, "chip", chip.spec())
        if self.weight_clip is None:
            kind = chip.clip_type if chip is not None else "none"
            value = chip.clip_sigma if kind == "gaussian" else chip.clip_fixed_value if kind == "fixed" else 0
            object.__setattr__(self, "weight_clip", "none" if kind == "none" else f"{kind}:{value:g}")
        if self.weight_remap is None:
            object.__setattr__(self, "weight_remap", chip.remap_type if chip is not None else "none")
        parse_clip(self.weight_clip)
        check_remap(self.weight_remap)

    def _resolve_sigma(self) -> float | None:
        if not self.drift and self.chip:
            if self.sigma is not None:
                raise ConfigError(f"--sigma {self.sigma:g} and --chip {self.chip!r} both give the drift; give a "
                                  f"lognormal drift on the chip as --drift lognormal:{self.sigma:g}.")
            return None  # the chip's device
        if not self.drift:
            return 0.6 if self.sigma is None else float(self.sigma)
        if self.sigma is not None:
            raise ConfigError(f"--sigma {self.sigma:g} and --drift {self.drift!r} both give the drift; give it once "
                              "(e.g. --drift lognormal:0.6 or --sigma 0.6).")
        return sigma_of(parse_drift(self.drift))

    def drift_model(self) -> DriftModel:
        if self.chip:
            from ftcompile.runtime.devices.chip import parse_chip

            return with_compensation(parse_chip(self.chip).drift(self.drift), self.compensation)
        model = parse_drift(self.drift) if self.drift else LogNormalDrift(self.sigma)
        return with_compensation(model, self.compensation)

    def metric(self):
        """The objective as the runtime's metric, or None for the built-in accuracy/loss."""
        return None if self.objective in OBJECTIVES else parse_metric(self.objective)

    @property
    def strategy(self) -> Method:
        return METHOD_TABLE[self.method]

    @property
    def searches(self) -> bool:
        return self.strategy.dropout == "searched"

    def train_device(self):
        """The device preset training samples (hardware-aware training), when the drift has one and no
        --train-sigma asks for lognormal noise instead."""
        if not self.strategy.noise or self.train_sigma != "auto":
            return None
        drift = self.drift_model()
        parts = drift.parts if hasattr(drift, "parts") else (drift,)
        return next((p for p in parts if _trains_as_device(p)), None)

    @property
    def noise(self) -> float | None:
        """The lognormal sigma sampled in training (0 for methods without noise); with ``--train-sigma auto``
        the harden sigma, the top of the grid that ``train_sigma_grid`` searches."""
        if self.strategy.noise:
            return self.sigma if self.train_sigma == "auto" else self.train_sigma
        return 0.0

    @property
    def searches_train_sigma(self) -> bool:
        """Whether a search chooses the lognormal sigma trained under (the grid or the recipe search): under
        ``--train-sigma auto`` when the method trains under lognormal noise (not under a device preset)."""
        return (self.train_sigma == "auto" and self.strategy.noise and self.strategy.trains
                and self.train_device() is None and bool(self.noise))

    def train_sigma_grid(self) -> tuple[float, ...]:
        """The training sigmas to try before the final fit: a grid (noise_level.py) when the level is searched and
        the recipe search does not choose it."""
        return train_sigma_grid(self.noise) if self.searches_train_sigma and not self.recipe_search else ()


def _trains_as_device(part) -> bool:
    """A drift term training samples through its own ``apply_torch``; plain lognormal keeps the trainer's
    faster draw (the same distribution), compensated lognormal needs the layer-wise compensation."""
    plain = isinstance(part, LogNormalDrift) and part.comp == "none"
    return hasattr(part, "apply_torch") and not plain


@dataclass
class SearchOutcome:
    rates: list
    trials: list = field(default_factory=list)
    best_trial: int | None = None
    final_score: Score | None = None
    base_score: Score | None = None
    seconds: float = 0.0
    train_sigma: float | None = None  # the lognormal sigma the final fit trained under (None: no such noise)
    blend: "Blend | None" = None  # the share of the source's weights in the final model (None: not blended)
    final_epochs: int = 0  # the final fit's epochs (--final-epochs auto resolved on the training set)
    lr_scale: float = 1.0  # the final fit's learning rate relative to --lr (the recipe's)


def _tensors(dataset, device: str) -> tuple[Inputs, "torch.Tensor | list"]:
    """Inputs (one tensor per model input, in its order) and labels as torch: a tensor, or torchvision's per-image
    targets for detection boxes."""
    x = Inputs(tuple(torch.from_numpy(v).to(device) for v in dataset.inputs.values()))
    if isinstance(dataset.labels, BoxLabels):
        return x, box_targets(dataset.labels)
    return x, torch.from_numpy(dataset.labels).to(device)


class TrialRunner:
    """One trial: reset to the imported weights, set the rates, fine-tune, score under drift.

    Trials fine-tune on a fixed random ``cfg.trial_fraction`` of the training set (the same subset for
    every trial, so their scores compare; a low-fidelity trial on the first ``fidelity`` of it, ``fidelity.py``);
    the final fit (``fit``) uses all of it.
    Picklable (module, sites, data and the objective's fixed draws travel together), so a worker process
    runs exactly what this process would.
    """

    def __init__(self, module: torch.nn.Module, sites, x, y, objective: DriftObjective, cfg: HardenConfig,
                 loss_fn: Callable | None = None, keys: dict | None = None):
        self.module, self.sites, self.x, self.y, self.objective = module, sites, x, y, objective
        self.order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
        self.trial_fraction, self._subsets = cfg.trial_fraction, {}
        self.loss_fn = loss_fn or torch.nn.functional.cross_entropy
        self.base_state = copy.deepcopy(module.state_dict())
        device_model = cfg.train_device()
        # trials end the way the final fit will (decayed, under auto, when the final fit is long): a 3-epoch
        # trial at a constant rate ranked ResNet-20's training noise levels while the fine-tune still shook
        # the network (README, "The training noise")
        self.final_epochs = cfg.final_epochs_for(len(x))
        schedule = resolve_schedule(cfg.lr_schedule, fit_steps(len(x), self.final_epochs, cfg.batch_size))
        from ftcompile.search.clipping import weight_clip

        self.train = TrainConfig(epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, schedule=schedule,
                                 batch_size=cfg.batch_size,
                                 noise_sigma=0.0 if device_model is not None else cfg.noise, noise_model=device_model,
                                 noise_keys=keys, awp_gamma=cfg.awp_gamma if cfg.strategy.awp else 0.0,
                                 constraint=weight_clip(cfg.weight_clip, cfg.weight_remap, module, keys))
        self.device = cfg.device

    def trial_data(self, fidelity: float = 1.0) -> tuple:
        """The trials' training subset: the first ``trial_fraction x fidelity`` of a fixed permutation, in order
        (nested: a low-fidelity trial sees a part of what a full one sees)."""
        share = self.trial_fraction * fidelity
        if share >= 1:
            return self.x, self.y
        if share not in self._subsets:  # made once per fidelity, as a trial's data was before
            keep = self.order[:max(1, round(share * len(self.x)))].sort().values
            self._subsets[share] = (self.x[keep], take(self.y, keep))
        return self._subsets[share]

    def fit(self, rates, epochs: int, seed: int, trial: bool = False, train_sigma: float | None = None,
            lr_scale: float = 1.0, fidelity: float = 1.0) -> Score:
        """``train_sigma``: the lognormal sigma to train under, when not the configured one; ``lr_scale``: the
        learning rate relative to the configured one; ``fidelity``: a trial's share of the trial subset."""
        self.module.load_state_dict(self.base_state)
        self.sites.set_rates(list(rates))
        x, y = self.trial_data(fidelity) if trial else (self.x, self.y)
        train = replace(self.train, epochs=epochs, seed=seed, lr=self.train.lr * lr_scale)
        if train_sigma is not None:
            train = replace(train, noise_sigma=train_sigma)
        fine_tune(self.module, x, y, train, self.device, loss_fn=self.loss_fn)
        return self.objective(self.module)

    def __call__(self, task: TrialTask) -> Score:
        return self.fit(task.rates, self.train.epochs, task.seed, trial=True, train_sigma=task.train_sigma,
                        lr_scale=task.lr_scale, fidelity=task.fidelity)


def rate_trials(trials: list[TrialRecord], stage: str = RATE_SEARCH) -> list[TrialRecord]:
    """The trials of one stage of the journal (the rate search's by default; the journal also holds the
    training-noise grid's or the recipe search's)."""
    return [t for t in trials if t.stage == stage]


def _observed(trials: list[TrialRecord], stage: Stage) -> tuple[torch.Tensor, ...]:
    """Finished points, their objectives and measured variances (standard errors squared), and the points whose
    trials failed (points as the controller reads them: ``stage.row``)."""
    def points(rows):
        return torch.tensor([stage.row(t.x, t.fidelity) for t in rows], dtype=torch.double).reshape(-1, stage.width)

    ok = [t for t in trials if t.status == "ok"]
    return (points(ok), torch.tensor([t.objective for t in ok], dtype=torch.double),
            torch.tensor([t.stderr ** 2 for t in ok], dtype=torch.double),
            points([t for t in trials if t.status != "ok"]))


@dataclass(frozen=True)
class Stage:
    """What a trial of a search stage trains: ``settings(point) -> (rates, train_sigma, lr_scale)``; ``record_point``:
    whether the journal keeps the point (it does unless the point is the rates themselves); ``known_noise``: whether
    the controller takes each trial's measured error as its noise (the recipe search, whose choice weighs those
    errors: ``controller.py``) or learns it (the paper's rate search, as it was measured); ``fidelity``: the recipe
    search's cheap trials (``fidelity.py``), whose cost the budget counts instead of trials."""

    name: str
    dim: int
    settings: Callable
    record_point: bool = True
    known_noise: bool = False
    fidelity: Fidelity | None = None

    @property
    def width(self) -> int:
        """Columns of a controller row: the point's, and the trial's fidelity with multi-fidelity trials."""
        return self.dim + (self.fidelity is not None)

    def row(self, point, fidelity: float) -> list:
        """A trial as the controller reads it: its point, then its fidelity with multi-fidelity trials."""
        return [*point, fidelity] if self.fidelity is not None else list(point)

    def cost(self, fidelity: float) -> float:
        """A trial's share of the budget in full trials (``fidelity.Fidelity.cost``); one without cheap trials."""
        return self.fidelity.cost(fidelity) if self.fidelity is not None else 1.0

    def noise(self, Yvar: torch.Tensor) -> torch.Tensor | None:
        """The variances the controller is given: ``Yvar`` when the noise is known, else None."""
        return Yvar if self.known_noise else None


def rate_stage(space: RateSpace, train_sigma: float | None) -> Stage:
    """The paper's rate search: every trial trains under ``train_sigma`` (the grid's level) at the given lr."""
    return Stage(RATE_SEARCH, space.dim, lambda p: (tuple(space.rates(p)), train_sigma, 1.0),
                 record_point=space.kind != "per-layer")


def recipe_stage(space: RecipeSpace, sigma: float | None, train_sigma: float | None,
                 fidelity: Fidelity | None = None) -> Stage:
    """The recipe search: a trial trains under the recipe's noise (a multiple of the target ``sigma``, or the
    fixed ``train_sigma`` when the noise is not searched), its dropout rates and learning-rate scale."""
    def settings(point):
        r = space.recipe(point)
        noise = round(r.noise_scale * sigma, 6) if r.noise_scale is not None else train_sigma
        return r.rates, noise, r.lr_scale
    return Stage(RECIPE, space.dim, settings, known_noise=True, fidelity=fidelity)


def run_trials(controller: Controller, executor: Executor, journal: Journal, cfg: HardenConfig, stage: Stage,
               on_trial: Callable[[TrialRecord, TrialRecord], None] | None = None, retries: int = 1) -> None:
    """Keep ``executor.slots`` trials in flight; each free slot gets a proposal made with the running
    ones as pending points (asynchronous q-batch BO). Finished trials go to the journal at once.

    A trial that raises is run once more (origin "retry"); if it fails again it is journaled as failed,
    its point is never proposed again and the GP sees it as the worst objective so far.

    With multi-fidelity trials (``stage.fidelity``) the budget is ``cfg.trial_count`` full trials' cost
    (``fidelity.Fidelity.cost``): a trial starts while the cheapest one still fits beside the finished and running
    ones (with full trials only: while fewer than ``cfg.trial_count`` ran).
    """
    t0 = time.perf_counter()
    finished = {t.trial for t in rate_trials(journal.trials, stage.name)}
    cheapest = stage.cost(stage.fidelity.low if stage.fidelity is not None else 1.0)
    most = math.floor(cfg.trial_count / cheapest + 1e-9)
    todo = deque(i for i in range(most) if i not in finished)
    running: dict[int, TrialTask] = {}
    attempts: Counter = Counter()
    while todo or running:
        in_time = cfg.time_budget is None or time.perf_counter() - t0 <= cfg.time_budget
        spent = sum(stage.cost(t.fidelity) for t in [*rate_trials(journal.trials, stage.name), *running.values()])
        affordable = math.floor((cfg.trial_count - spent) / cheapest + 1e-9)
        free = min(executor.slots - len(running), len(todo), affordable) if in_time else 0
        if free > 0:
            done_so_far = rate_trials(journal.trials, stage.name)
            X, Y, Yvar, failed = _observed(done_so_far, stage)
            pending = torch.tensor([stage.row(t.point, t.fidelity) for t in running.values()],
                                   dtype=torch.double) if running else None
            proposal = controller.propose(X, Y, q=free, pending=pending, proposed=len(done_so_far) + len(running),
                                          failed=failed, Yvar=stage.noise(Yvar))
            for row in proposal.points:
                i = todo.popleft()
                point = tuple(float(v) for v in row[:stage.dim])
                fidelity = float(row[stage.dim]) if stage.fidelity is not None else 1.0
                rates, noise, lr_scale = stage.settings(point)
                origin = "plain" if i == 0 and stage.name == RECIPE else proposal.origin
                running[i] = TrialTask(i, tuple(rates), cfg.seed + 1000 + i, point, origin, noise, lr_scale, fidelity)
                executor.submit(running[i])
        if not running:
            break  # out of trials, time or budget
        done = executor.next_done()
        again = retried(executor, done, attempts, retries)
        if again is not None:
            running[again.trial] = again
            continue
        task = done.task
        del running[task.trial]
        record = trial_record(done, list(task.point) if stage.record_point else None, train_sigma=task.train_sigma,
                              stage=stage.name, lr_scale=task.lr_scale, fidelity=task.fidelity)
        journal.append(record)
        if on_trial is not None:
            ok = [t for t in rate_trials(journal.trials, stage.name) if t.status == "ok"]
            on_trial(record, max(ok, key=lambda t: t.objective) if ok else record)


def search(module: torch.nn.Module, sites, train, val, cfg: HardenConfig, *, journal: Journal,
           on_trial: Callable[[TrialRecord, TrialRecord], None] | None = None,
           loss_fn: Callable | None = None, keys: dict | None = None, converters=None,
           task: str = "classification") -> SearchOutcome:
    """Run the method's search (if any) and the final fine-tune; ``module`` ends with the final weights.

    ``keys``: the drifting parameters as the runtime names them (``drifting.py``; None: every parameter under its
    own name): the objective and the training noise drift those and leave the rest digital, as the runtime does.
    ``converters``: the analog twin's hooks on ``module`` (``converter_hooks.ConverterHooks``), if any.
    """
    t0 = time.perf_counter()
    keep_large_allocations()  # the drifted forwards allocate tens of MB per activation (resources.py)
    x_tr, y_tr = _tensors(train, cfg.device)
    x_va, y_va = _tensors(val, cfg.device)
    module.to(cfg.device)
    kind = cfg.metric() or cfg.objective
    if task == "segmentation":  # the runtime's Dice (or the user's metric) on the class ids of the scores
        kind = OnClassIds(task_metric(task, cfg.metric()))
    seed = selection_seed(cfg.seed)
    drift = getattr(converters, "drift", None) or cfg.drift_model()  # a chip's: drawn per tile (tiles.ChipDrift)
    if task == "detection":  # the runtime's mAP on the detector's own decoded boxes
        objective = DetectionObjective(module, x_va, val.labels, drift=cfg.drift_model(), samples=cfg.samples,
                                       metric=task_metric(task, cfg.metric()), seed=seed, device=cfg.device,
                                       keys=keys)
    else:
        objective = DriftObjective(module, x_va, y_va, drift=drift, samples=cfg.samples, seed=seed,
                                   kind=kind, device=cfg.device, keys=keys, converters=converters,
                                   example_axis=-4 if task == "segmentation" else -2)
    runner = TrialRunner(module, sites, x_tr, y_tr, objective, cfg, loss_fn or task_loss(task), keys)
    if runner.train.noise_model is not None and hasattr(drift, "apply_torch_named"):
        runner.train = replace(runner.train, noise_model=drift)
    outcome = SearchOutcome(rates=[0.0] * len(sites), base_score=objective(module))

    if cfg.strategy.dropout == "fixed":
        outcome.rates = [cfg.rate] * len(sites)
    outcome.train_sigma = cfg.noise if cfg.strategy.noise and cfg.train_device() is None else None
    widths = site_widths(sites.gm, sites)
    stage, controller = None, None
    grid = cfg.train_sigma_grid()
    if cfg.recipe_search:
        space = recipe_space(noise=cfg.searches_train_sigma, stages=rate_space("per-stage", widths).groups)
        if space.dim:
            fidelity = None
            if cfg.low_fidelity is not None:
                fidelity = Fidelity(cfg.low_fidelity, fixed_share(
                    epochs=cfg.epochs, train_examples=len(runner.trial_data()[0]), samples=cfg.samples,
                    val_examples=len(x_va)))
            stage = recipe_stage(space, cfg.sigma, outcome.train_sigma, fidelity)
            controller = Controller(space.dim, max_rate=1.0, kernel=cfg.kernel, seed=cfg.seed,
                                    trials=cfg.trial_count, anchors=(space.plain(),), fidelity=fidelity)
    elif cfg.searches and len(sites):
        space = rate_space(cfg.rates, widths)
        controller = Controller(space.dim, max_rate=cfg.max_rate, search=cfg.search, kernel=cfg.kernel,
                                seed=cfg.seed, trials=cfg.trial_count)
    lr_scale = 1.0
    if grid or controller is not None:
        executor = make_executor(cfg.executor, runner, cfg.workers, ray_address=cfg.ray_address,
                                 gpus=1 if cfg.device != "cpu" else 0)
        try:
            if grid:  # the noise level first, then the rates under it (a grid of 3 cannot be learned jointly)
                outcome.train_sigma = choose_train_sigma(executor, journal, grid, outcome.rates, cfg.seed, on_trial)
            if controller is not None:
                stage = stage or rate_stage(space, outcome.train_sigma)
                run_trials(controller, executor, journal, cfg, stage, on_trial)
        except KeyboardInterrupt:
            raise Interrupted(f"search interrupted after {len(journal.trials)} trials; the journal "
                              f"{journal.path} keeps them, rerun with --resume to continue.") from None
        finally:
            executor.close()
        outcome.trials = list(journal.trials)
    ok = [t for t in rate_trials(outcome.trials, stage.name) if t.status == "ok"] if stage else []
    if ok:
        X, Y, Yvar, _ = _observed(ok, stage)
        if stage.name == RECIPE:  # the simplest recipe within one posterior standard error of the best
            means, stds = controller.posterior(X, Y, stage.noise(Yvar))  # at full fidelity
            best = ok[choose_recipe([space.recipe(t.x) for t in ok], means, stds)]
            outcome.train_sigma, lr_scale = best.train_sigma, best.lr_scale
        else:
            best = ok[controller.best(X, Y)]
        outcome.best_trial = best.trial
        outcome.rates = list(best.rates)
    outcome.lr_scale = lr_scale
    outcome.final_epochs = epochs = runner.final_epochs if cfg.strategy.trains else 0
    try:
        outcome.final_score = runner.fit(outcome.rates, epochs, cfg.seed, train_sigma=outcome.train_sigma,
                                         lr_scale=lr_scale)
        # FTNA's code head starts from random weights, so there is no source to blend it with
        shares = cfg.blend_shares()
        if epochs and shares and not cfg.strategy.ecoc:
            outcome.blend, outcome.final_score = choose_blend(module, runner.base_state, objective,
                                                              outcome.final_score, shares, fixed=cfg.blend != "auto",
                                                              walk=not cfg.recipe_search)
    except KeyboardInterrupt:
        raise Interrupted("final fine-tuning interrupted; rerun with --resume to keep the search.") from None
    outcome.seconds = time.perf_counter() - t0
    return outcome


def config_dict(cfg: HardenConfig) -> dict:
    """The settings that define a search (what a resumed run must share)."""
    d = asdict(cfg)
    for volatile in ("time_budget", "workers", "executor", "ray_address"):  # a resumed run may change these
        d.pop(volatile)
    return d


def journal_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".journal.jsonl")
