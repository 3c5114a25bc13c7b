"""Proposers of dropout rates: BoTorch Bayesian optimization (the paper's method), random search, grid.

All share ``propose(X, Y, q, ...) -> Proposal`` (``q x d`` points and where they came from) and
``best(X, Y) -> index``. BO: a scrambled Sobol design of ``n_init`` points, at most a quarter of the
trials (``max(2, min(2d+1, trials // 4))``) so that BO proposes most of the budget even at 20-60
dimensions; then a ``SingleTaskGP`` (learned homoskedastic noise: the objective is noisy through
Monte Carlo and training) with Matern-5/2 ARD or the paper's exponential kernel (Matern-1/2), or
``saas``: BoTorch's ``SaasFullyBayesianSingleTaskGP`` (Eriksson & Jankowiak, UAI 2021: a sparsity prior on
the inverse lengthscales, so few of the 20-60 rates are taken to matter unless the data say so; its
hyperparameters sampled by NUTS, which BoTorch runs in NumPyro/JAX: ``botorch[fully-bayesian]``);
``qLogNoisyExpectedImprovement`` (averaged over the SAAS posterior's samples) and ``optimize_acqf``. The best
trial is the one with the highest posterior mean, not the luckiest draw.

Noise: given each trial's measured variance (``Yvar``: its Monte-Carlo standard error squared, ``objective.Score``),
the GP takes it as known (BoTorch's ``train_Yvar``: a fixed-noise likelihood) and its posterior standard deviation
at a trial is then at most that trial's own error, and of its order. Learned homoskedastic noise on a handful of
trials can fit close to interpolation, its posterior far narrower than the trials' errors, and a one-standard-error
choice on it is then an argmax (``benchmarks/bench_recipe_choice.py`` replays the recipe journals under both). The
recipe search passes ``Yvar``; the paper's rate search (``--method bayesft``) learns its noise, as it was measured.

Multi-fidelity (``fidelity``, the recipe search's ``--low-fidelity``, ``fidelity.py``): points carry one more column,
the share of the trial data a trial fine-tunes on. The anchors run at full fidelity, the Sobol design at both in turn;
then a ``SingleTaskMultiFidelityGP`` and cost-weighted multi-fidelity max-value entropy choose each point and its
fidelity, and the posterior the choice reads is the GP's at full fidelity.

Failures: the design index counts every proposal ever made (finished, failed or running), so a design
point is never proposed twice. A failed point enters the GP scored as the worst objective seen so far:
the posterior mean is low around it, so the acquisition moves away from that region without ever being
told a number the trial did not produce.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch.quasirandom import SobolEngine

from ftcompile.search.fidelity import TARGET, Fidelity, at_target, cost_model

KERNELS = ("matern52", "exp", "saas")
# NUTS for the SAAS GP: BoTorch's SAASBO tutorial uses 256 warm-up steps, 128 samples, thinning 16 (8 GPs
# averaged). A 19-D toy search here (9 proposals, 1 best) took 276 s against 40 s with Matern-5/2, one
# thread beside other jobs; the ResNet-20 searches 784-895 s against 498-623 s (README).
SAAS_NUTS = {"warmup_steps": 256, "num_samples": 128, "thinning": 16}
SEARCHES = ("bo", "random", "grid")
MIN_YVAR = 1e-8  # (objective units)^2: a standard error of 1e-4 at least
DTYPE = torch.double


@dataclass(frozen=True)
class Proposal:
    """``points`` (``q x d``) and where each came from: design, bo, random or grid."""

    points: torch.Tensor
    origin: str


def initial_design_size(dim: int, trials: int) -> int:
    """Sobol points before the GP starts: ``2d+1`` at most, a quarter of the trials at most, 2 at least."""
    return max(2, min(2 * dim + 1, trials // 4))


class Controller:
    """Search over points in ``[0, max_rate]^dim``. ``X``: ``n x d`` points tried, ``Y``: ``n`` objectives."""

    def __init__(self, dim: int, *, max_rate: float = 0.8, search: str = "bo", kernel: str = "matern52",
                 seed: int = 0, n_init: int | None = None, trials: int = 20, anchors: tuple = (),
                 fidelity: Fidelity | None = None):
        """``anchors``: points proposed first, before the design (the recipe search's plain recipe); ``fidelity``:
        points carry a last column, the trial's fidelity (BO only)."""
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        if fidelity is not None and search != "bo":
            raise ValueError("multi-fidelity trials need search='bo'")
        self.dim, self.max_rate, self.search, self.kernel, self.seed = dim, max_rate, search, kernel, seed
        self.fidelity = fidelity
        self.anchors = torch.tensor(anchors, dtype=DTYPE).reshape(-1, dim)
        self.n_init = len(self.anchors) + (initial_design_size(dim, trials) if n_init is None else n_init)
        self.bounds = torch.stack([torch.zeros(dim, dtype=DTYPE), torch.full((dim,), max_rate, dtype=DTYPE)])
        if search == "grid":
            per_axis = max(2, round(trials ** (1 / dim)))
            axes = torch.linspace(0, max_rate, per_axis, dtype=DTYPE)
            self._grid = torch.cartesian_prod(*[axes] * dim).reshape(-1, dim)

    def _design(self, start: int, q: int) -> torch.Tensor:
        """Rows ``start .. start+q-1`` of a fixed sequence: the anchors, then Sobol for BO, uniform for random (with
        multi-fidelity: the anchors at full fidelity, then the low one and full in turn, so that the GP sees both
        fidelities at several points before it weighs one against the other, as BoTorch's tutorial's random initial
        fidelities do)."""
        rows = torch.cat([self.anchors, self._sequence(0, start + q)])[start:start + q]
        if self.fidelity is None:
            return rows
        first = len(self.anchors)
        level = [TARGET if i < first or (i - first) % 2 else self.fidelity.low for i in range(start, start + q)]
        return torch.cat([rows, torch.tensor(level, dtype=DTYPE).reshape(-1, 1)], dim=1)

    def _sequence(self, start: int, q: int) -> torch.Tensor:
        if self.search == "grid":
            return self._grid[torch.arange(start, start + q) % len(self._grid)]
        if self.search == "random":
            gen = torch.Generator().manual_seed(self.seed)
            return torch.rand((start + q, self.dim), generator=gen, dtype=DTYPE)[start:] * self.max_rate
        sobol = SobolEngine(self.dim, scramble=True, seed=self.seed).draw(start + q, dtype=DTYPE)
        return sobol[start:] * self.max_rate

    def propose(self, X: torch.Tensor, Y: torch.Tensor, q: int = 1, pending: torch.Tensor | None = None,
                proposed: int | None = None, failed: torch.Tensor | None = None,
                Yvar: torch.Tensor | None = None) -> Proposal:
        """``q`` new points.

        Args:
            X, Y: finished trials (``n x d``, ``n``).
            pending: points still running (``p x d``), so a q-batch does not propose them again.
            proposed: how many points were ever proposed (finished, failed, running); the design continues
                from there. Default ``n + p``.
            failed: points whose trials failed (``f x d``).
            Yvar: each finished trial's measured variance (``n``), taken as known; None: noise learned.
        """
        n = len(X) + (0 if pending is None else len(pending)) if proposed is None else proposed
        if self.search != "bo":
            return Proposal(self._design(n, q), self.search)
        if len(X) < self.n_init:  # the GP starts from n_init finished trials
            return Proposal(self._design(n, q), "design")
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.optim import optimize_acqf

        X_all, Y_all, Yvar_all = with_failures(X, Y, failed, Yvar)
        model = self._fit(X_all, Y_all, Yvar_all)
        if self.fidelity is not None:
            return Proposal(self._propose_fidelity(model, q, pending, n), "bo")
        with warnings.catch_warnings():
            # repeated rates make the GP's covariance near-singular; gpytorch adds jitter and says so
            warnings.simplefilter("ignore")
            acq = qLogNoisyExpectedImprovement(model, X_baseline=X_all.to(DTYPE), X_pending=pending,
                                               prune_baseline=True)
            cand, _ = optimize_acqf(acq, bounds=self.bounds, q=q, num_restarts=8, raw_samples=256,
                                    options={"seed": self.seed + n})
        return Proposal(cand.detach(), "bo")

    def _propose_fidelity(self, model, q: int, pending: torch.Tensor | None, n: int) -> torch.Tensor:
        """``q`` points with their fidelities: the most information about the full-fidelity maximum per unit of a
        trial's cost (``fidelity.py``)."""
        from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy
        from botorch.optim.optimize import optimize_acqf_mixed

        column = self.dim
        bounds = torch.cat([self.bounds, torch.tensor([[self.fidelity.low], [TARGET]], dtype=DTYPE)], dim=1)
        unit = SobolEngine(self.dim + 1, scramble=True, seed=self.seed + n).draw(1000, dtype=DTYPE)
        candidates = bounds[0] + unit * (bounds[1] - bounds[0])
        chosen = torch.empty(0, self.dim + 1, dtype=DTYPE)
        utility = cost_model(self.fidelity, column)
        with torch.random.fork_rng(), warnings.catch_warnings():  # its max-value samples draw from torch's generator
            warnings.simplefilter("ignore")
            for i in range(q):  # one at a time, the earlier ones pending (its acquisition takes q = 1)
                torch.manual_seed(self.seed + n + i)
                busy = chosen if pending is None else torch.cat([pending.to(DTYPE), chosen])
                acq = qMultiFidelityMaxValueEntropy(model, candidates, X_pending=busy if len(busy) else None,
                                                    cost_aware_utility=utility,
                                                    project=lambda X: at_target(X, column))
                cand, _ = optimize_acqf_mixed(acq, bounds=bounds, q=1, num_restarts=8, raw_samples=256,
                                              fixed_features_list=[{column: f} for f in self.fidelity.levels],
                                              options={"seed": self.seed + n + i})
                chosen = torch.cat([chosen, cand.detach().reshape(1, -1)])
        return chosen

    def _fit(self, X: torch.Tensor, Y: torch.Tensor, Yvar: torch.Tensor | None = None):
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP, SingleTaskMultiFidelityGP
        from botorch.models.transforms import Normalize, Standardize
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.mlls import ExactMarginalLogLikelihood

        yvar = _known_noise(Yvar)
        if self.kernel == "saas":
            return self._fit_saas(X, Y, yvar)
        if self.fidelity is not None:  # Matern-5/2 over the recipe times a fidelity kernel (Wu et al. 2019)
            # the fidelity column is left as it is: the fidelity kernel reads TARGET (1) as the full trial
            unit = torch.cat([self.bounds, torch.tensor([[0.0], [TARGET]], dtype=DTYPE)], dim=1)
            model = SingleTaskMultiFidelityGP(X.to(DTYPE), Y.to(DTYPE).reshape(-1, 1), yvar, data_fidelities=[self.dim],
                                              input_transform=Normalize(self.dim + 1, bounds=unit),
                                              outcome_transform=Standardize(1))
        else:
            nu = 2.5 if self.kernel == "matern52" else 0.5
            covar = ScaleKernel(MaternKernel(nu=nu, ard_num_dims=self.dim))
            model = SingleTaskGP(X.to(DTYPE), Y.to(DTYPE).reshape(-1, 1), yvar, covar_module=covar,
                                 input_transform=Normalize(self.dim, bounds=self.bounds),
                                 outcome_transform=Standardize(1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model

    def _fit_saas(self, X: torch.Tensor, Y: torch.Tensor, yvar: torch.Tensor | None):
        try:
            import numpyro  # noqa: F401  (BoTorch runs NUTS in NumPyro/JAX)
        except ImportError:
            from ftcompile.errors import ConfigError

            raise ConfigError("--kernel saas samples its GP with NUTS, which needs BoTorch's fully Bayesian extra; "
                              "pip install 'botorch[fully-bayesian]', or use --kernel matern52.") from None
        from botorch.fit import fit_fully_bayesian_model_nuts
        from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
        from botorch.models.transforms import Normalize, Standardize

        model = SaasFullyBayesianSingleTaskGP(X.to(DTYPE), Y.to(DTYPE).reshape(-1, 1), yvar,
                                              input_transform=Normalize(self.dim, bounds=self.bounds),
                                              outcome_transform=Standardize(1))
        with torch.random.fork_rng(), warnings.catch_warnings():  # NUTS draws from torch's global generator
            warnings.simplefilter("ignore")
            fit_fully_bayesian_model_nuts(model, **SAAS_NUTS, disable_progbar=True, seed=self.seed + len(X))
        return model

    def posterior(self, X: torch.Tensor, Y: torch.Tensor, Yvar: torch.Tensor | None = None) -> tuple[list, list]:
        """The GP's posterior mean and standard deviation at the finished points ``X`` (``n x d``; SAAS: the mixture
        of its sampled GPs), for choices that weigh the model's certainty; ``Yvar`` as in ``propose``. With
        multi-fidelity, the posterior at full fidelity: what a full trial at each point would score."""
        model = self._fit(X, Y, Yvar)
        at = at_target(X.to(DTYPE), self.dim) if self.fidelity is not None else X.to(DTYPE)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.posterior(at)
            mean = post.mean.reshape(-1, len(X))
            var = post.variance.reshape(-1, len(X))
        # a mixture over sampled GPs: total variance = mean of variances + variance of means
        m = mean.mean(0)
        v = var.mean(0) + mean.var(0, unbiased=False)
        return m.tolist(), v.clamp_min(0).sqrt().tolist()

    def best(self, X: torch.Tensor, Y: torch.Tensor) -> int:
        """Index of the best trial: by GP posterior mean for BO (de-noised; SAAS: averaged over its sampled
        GPs), by the observation otherwise."""
        if self.search != "bo" or len(X) < 3:
            return int(torch.argmax(Y))
        mean, _ = self.posterior(X, Y)
        return int(torch.argmax(torch.tensor(mean)))


def with_failures(X: torch.Tensor, Y: torch.Tensor, failed: torch.Tensor | None,
                  Yvar: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Finished points plus failed ones, each failure scored as the worst objective seen so far (with the largest
    measured variance, when variances are given)."""
    if failed is None or not len(failed) or not len(Y):
        return X, Y, Yvar
    worst = torch.full((len(failed),), float(Y.min()), dtype=Y.dtype)
    if Yvar is not None:
        Yvar = torch.cat([Yvar, torch.full((len(failed),), float(Yvar.max()), dtype=Yvar.dtype)])
    return torch.cat([X, failed.to(X.dtype)]), torch.cat([Y, worst]), Yvar


def _known_noise(Yvar: torch.Tensor | None) -> torch.Tensor | None:
    """``Yvar`` as BoTorch's ``train_Yvar`` (``n x 1``), floored: a trial whose K drift samples all scored alike
    measures a zero error, which a fixed-noise GP would have to interpolate exactly."""
    if Yvar is None:
        return None
    return Yvar.to(DTYPE).reshape(-1, 1).clamp_min(MIN_YVAR)
