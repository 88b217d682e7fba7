"""Pool-based Bayesian optimisation: pick the next experiment from a fixed candidate list.

This is the lab situation "we can make any of these N recipes" and the protocol of
Liang et al., npj Comput. Mater. 7, 188 (2021). The surrogate is an exact GP (Matern-5/2, ARD
or isotropic, + white noise; scikit-learn) on standardised inputs/outputs, hyper-parameters
re-optimised each cycle from the previous optimum (warm start). Acquisitions (minimisation):

* ``lcb``: μ − κσ (κ = 2 is the paper's "LCB2");
* ``ei``: expected improvement below the best observed value (ξ = 0.01 in standard units);
* ``lcb_decay``: LCB whose κ decays linearly from `kappa` to 0.5 over the budget
  (exploration early, exploitation late).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import norm


def _gp(dim: int, ard: bool, previous=None):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    if previous is not None:
        kernel = previous
    else:
        ls = np.ones(dim) if ard else 1.0
        # bounds in standardised units: keep ARD length scales from collapsing on few points
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(ls, (5e-2, 20.0), nu=2.5) + WhiteKernel(
            1e-2, (1e-3, 0.1)
        )
    return GaussianProcessRegressor(kernel, normalize_y=False, n_restarts_optimizer=0)


def pool_bo_run(
    X: np.ndarray,
    y: np.ndarray,
    *,
    n_init: int = 2,
    n_cycles: int | None = None,
    acquisition: str = "lcb",
    kappa: float = 2.0,
    ard: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Indices of the pool in the order they were measured (minimising `y`).

    `X` (N × d) and `y` (N,) are the pool (unique candidates); `n_cycles` experiments in total
    (default: the whole pool). The first `n_init` are random.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # tiny matrices: threads only add overhead on shared cores
        return _run(X, y, n_init, n_cycles, acquisition, kappa, ard, seed)


def _run(X, y, n_init, n_cycles, acquisition, kappa, ard, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    N = len(y)
    n_cycles = N if n_cycles is None else min(n_cycles, N)
    Xs = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    order = list(rng.choice(N, n_init, replace=False))
    remaining = np.ones(N, dtype=bool)
    remaining[order] = False
    kernel = None
    while len(order) < n_cycles:
        idx = np.array(order)
        yo = y[idx]
        mu_y, sd_y = yo.mean(), yo.std() if yo.std() > 0 else 1.0
        ys = (yo - mu_y) / sd_y
        gp = _gp(X.shape[1], ard, kernel)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp.fit(Xs[idx], ys)
        kernel = gp.kernel_
        cand = np.flatnonzero(remaining)
        mu, sd = gp.predict(Xs[cand], return_std=True)
        sd = np.maximum(sd, 1e-9)
        if acquisition == "lcb":
            score = -(mu - kappa * sd)
        elif acquisition == "ei":
            best = ys.min()
            z = (best - mu - 0.01) / sd
            score = (best - mu - 0.01) * norm.cdf(z) + sd * norm.pdf(z)
        elif acquisition == "lcb_decay":
            frac = len(order) / max(n_cycles - 1, 1)
            k = kappa * (1 - frac) + 0.5 * frac
            score = -(mu - k * sd)
        else:
            raise ValueError(f"unknown acquisition {acquisition!r}")
        pick = cand[int(np.argmax(score))]
        order.append(int(pick))
        remaining[pick] = False
    return np.array(order)


def top_fraction_curve(order: np.ndarray, y: np.ndarray, top: float = 0.05) -> np.ndarray:
    """Top%(i): fraction of the best ceil(`top`·N) candidates (lowest y) found after i = 1..len
    experiments."""
    n_top = int(np.ceil(top * len(y)))
    best = set(np.argsort(y, kind="stable")[:n_top])
    hits = np.array([o in best for o in order], dtype=float)
    return np.cumsum(hits) / n_top
