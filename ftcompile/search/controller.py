"""Proposers of dropout rates: BoTorch Bayesian optimization (the paper's method), random search, grid.

All share ``propose(X, Y, q) -> q x d`` rates and ``best(X, Y) -> index``. BO: Sobol initial design of
``max(5, 2d+1)`` points, then a ``SingleTaskGP`` (learned homoskedastic noise: the objective is noisy
through Monte Carlo and training) with Matern-5/2 ARD or the paper's exponential kernel (Matern-1/2),
``qLogNoisyExpectedImprovement`` and ``optimize_acqf``. The best trial is the one with the highest
posterior mean, not the luckiest draw.
"""
from __future__ import annotations

import warnings

import torch
from torch.quasirandom import SobolEngine

KERNELS = ("matern52", "exp")
SEARCHES = ("bo", "random", "grid")
DTYPE = torch.double


class Controller:
    """Search over rates in ``[0, max_rate]^dim``. ``X``: ``n x d`` rates tried, ``Y``: ``n`` objectives."""

    def __init__(self, dim: int, *, max_rate: float = 0.8, search: str = "bo", kernel: str = "matern52",
                 seed: int = 0, n_init: int | None = None, trials: int = 20):
        if search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        self.dim, self.max_rate, self.search, self.kernel, self.seed = dim, max_rate, search, kernel, seed
        self.n_init = max(5, 2 * dim + 1) if n_init is None else n_init
        self.bounds = torch.stack([torch.zeros(dim, dtype=DTYPE), torch.full((dim,), max_rate, dtype=DTYPE)])
        if search == "grid":
            per_axis = max(2, round(trials ** (1 / dim)))
            axes = torch.linspace(0, max_rate, per_axis, dtype=DTYPE)
            self._grid = torch.cartesian_prod(*[axes] * dim).reshape(-1, dim)

    def _design(self, start: int, q: int) -> torch.Tensor:
        """Rows ``start .. start+q-1`` of a fixed sequence (Sobol for BO, uniform for random)."""
        if self.search == "grid":
            return self._grid[torch.arange(start, start + q) % len(self._grid)]
        if self.search == "random":
            gen = torch.Generator().manual_seed(self.seed)
            return torch.rand((start + q, self.dim), generator=gen, dtype=DTYPE)[start:] * self.max_rate
        sobol = SobolEngine(self.dim, scramble=True, seed=self.seed).draw(start + q, dtype=DTYPE)
        return sobol[start:] * self.max_rate

    def propose(self, X: torch.Tensor, Y: torch.Tensor, q: int = 1,
                pending: torch.Tensor | None = None) -> torch.Tensor:
        n = len(X) + (0 if pending is None else len(pending))
        if self.search != "bo" or len(X) < self.n_init:  # the GP starts from n_init finished trials
            return self._design(n, q)
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.optim import optimize_acqf

        model = self._fit(X, Y)
        with warnings.catch_warnings():
            # repeated rates make the GP's covariance near-singular; gpytorch adds jitter and says so
            warnings.simplefilter("ignore")
            acq = qLogNoisyExpectedImprovement(model, X_baseline=X.to(DTYPE), X_pending=pending,
                                               prune_baseline=True)
            cand, _ = optimize_acqf(acq, bounds=self.bounds, q=q, num_restarts=8, raw_samples=256,
                                    options={"seed": self.seed + n})
        return cand.detach()

    def _fit(self, X: torch.Tensor, Y: torch.Tensor):
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from gpytorch.kernels import MaternKernel, ScaleKernel
        from gpytorch.mlls import ExactMarginalLogLikelihood

        nu = 2.5 if self.kernel == "matern52" else 0.5
        covar = ScaleKernel(MaternKernel(nu=nu, ard_num_dims=self.dim))
        model = SingleTaskGP(X.to(DTYPE), Y.to(DTYPE).reshape(-1, 1), covar_module=covar,
                             input_transform=Normalize(self.dim, bounds=self.bounds), outcome_transform=Standardize(1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model

    def best(self, X: torch.Tensor, Y: torch.Tensor) -> int:
        """Index of the best trial: by GP posterior mean for BO (de-noised), by the observation otherwise."""
        if self.search != "bo" or len(X) < 3:
            return int(torch.argmax(Y))
        model = self._fit(X, Y)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean = model.posterior(X.to(DTYPE)).mean.reshape(-1)
        return int(torch.argmax(mean))
