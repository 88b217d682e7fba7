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

from matloop.errors import ConfigError, DataError


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


# --------------------------------------------------------------------------- ask from a pool
POOL_MODELS = ("gp", "rf")


def pool_inputs(
    data, pool, objectives, *, data_name: str = "data", pool_name: str = "candidates"
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Input columns (the pool's columns other than the objectives) and both input matrices."""
    import pandas as pd

    names = {o.name for o in objectives}
    cols = [c for c in pool.columns if c not in names]
    if not cols:
        raise DataError(f"{pool_name}: no input columns besides the objectives")
    bad = [c for c in cols if not pd.api.types.is_numeric_dtype(pool[c])]
    if bad:
        raise DataError(
            f"{pool_name}: input column(s) {bad} are not numeric; drop them or make them numbers"
        )
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise DataError(
            f"{data_name}: no column(s) {missing} (the inputs of {pool_name}); "
            f"columns are {list(data.columns)}"
        )
    Xp = pool[cols].to_numpy(float)
    try:
        Xo = data[cols].to_numpy(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{data_name}: input columns are not numeric: {exc}") from exc
    for X, name in ((Xp, pool_name), (Xo, data_name)):
        rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        if rows.size:
            raise DataError(f"{name}: row {rows[0] + 2} has a missing or non-finite input value")
    if len(Xp) == 0:
        raise DataError(f"{pool_name}: no candidate rows")
    return cols, Xo, Xp


def observed_mask(Xo: np.ndarray, Xp: np.ndarray, decimals: int = 9) -> np.ndarray:
    """True for pool rows equal (to `decimals` significant places) to an observed row."""

    def key(X):
        return [tuple(r) for r in np.vectorize(lambda v: float(f"{v:.{decimals}g}"))(X)]

    seen = set(key(Xo)) if len(Xo) else set()
    return np.array([k in seen for k in key(Xp)], dtype=bool)


def _maximin_pool(Xs: np.ndarray, Xo_s: np.ndarray, batch: int, seed: int) -> list[int]:
    """Greedy maximin picks from the (standardised) pool rows, away from observed rows."""
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    ref = list(Xo_s)
    for _ in range(batch):
        if ref:
            d = np.min(np.linalg.norm(Xs[:, None, :] - np.array(ref)[None], axis=2), axis=1)
            d[picks] = -1.0
            i = int(np.argmax(d))
        else:
            i = int(rng.integers(len(Xs)))
        picks.append(i)
        ref.append(Xs[i])
    return picks


def suggest_from_pool(
    data,
    pool,
    objectives,
    *,
    batch: int = 1,
    seed: int = 0,
    model: str = "gp",
    acquisition: str = "auto",
    beta: float = 4.0,
    min_observations: int = 2,
    mc_samples: int = 256,
    data_name: str = "data",
    pool_name: str = "candidates",
):
    """Pick the next `batch` rows of the finite `pool` (DataFrame) given observed `data`.

    Rows of the pool already in `data` (same inputs) are never suggested. Returns a
    :class:`matloop.design.bo.Suggestion` whose table holds the chosen pool rows (original
    columns and ``pool_row``, 0-based) with predictions and acquisition values.
    """
    import pandas as pd
    import torch

    from matloop.design.acquisition import build_acquisition, check_objectives, score_points
    from matloop.design.bo import Suggestion
    from matloop.design.objectives import objective_values

    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if model not in POOL_MODELS:
        raise ConfigError(f"unknown model {model!r}; choose from {POOL_MODELS}")
    check_objectives(objectives, acquisition)
    cols, Xo, Xp = pool_inputs(data, pool, objectives, data_name=data_name, pool_name=pool_name)
    Y = objective_values(data, objectives, source=data_name)
    free = np.flatnonzero(~observed_mask(Xo, Xp))
    if len(free) < batch:
        raise DataError(
            f"{pool_name}: only {len(free)} candidate(s) not yet observed, asked "
            f"for --batch {batch}"
        )
    torch.manual_seed(seed)
    lo = np.minimum(Xp.min(axis=0), Xo.min(axis=0) if len(Xo) else np.inf)
    hi = np.maximum(Xp.max(axis=0), Xo.max(axis=0) if len(Xo) else -np.inf)
    width = np.where(hi > lo, hi - lo, 1.0)
    counts = np.isfinite(Y).sum(axis=0) if len(Y) else np.zeros(len(objectives), int)
    messages: list[str] = []
    if int(counts.min()) < min_observations:
        few = ", ".join(f"{o.name}: {int(c)}" for o, c in zip(objectives, counts, strict=True))
        msg = (
            f"only {few} observation(s) (need >= {min_observations} per objective for a "
            f"model); suggesting {batch} space-filling candidate(s) from the pool"
        )
        warnings.warn(msg, stacklevel=2)
        messages.append(msg)
        sub = _maximin_pool((Xp[free] - lo) / width, (Xo - lo) / width, batch, seed)
        table = pool.iloc[free[sub]].reset_index(drop=True)
        table.insert(0, "pool_row", free[sub])
        table["acquisition_function"] = "space-filling (maximin distance)"
        return Suggestion(table, "space-filling", "space-filling", messages)

    bounds = np.stack([lo, lo + width])
    if model == "gp":
        from matloop.design.surrogates import fit_gp_list

        bmodel = fit_gp_list(Xo, Y, bounds=bounds)
    else:
        from matloop.design.surrogates import ForestSurrogate

        bmodel = ForestSurrogate(seed=seed).fit(Xo, Y).botorch_model()
    Xb = torch.tensor(Xo, dtype=torch.double)
    built = build_acquisition(
        bmodel,
        Xb,
        objectives,
        Y,
        acquisition=acquisition,
        batch=batch,
        beta=beta,
        seed=seed,
        mc_samples=mc_samples,
    )
    chosen = _optimise_discrete(built.function, Xp[free], batch)
    rows = free[chosen]
    Xc = torch.tensor(Xp[rows], dtype=torch.double)
    with torch.no_grad():
        post = bmodel.posterior(Xc)
        mean = post.mean.reshape(len(rows), -1).numpy()
        std = post.variance.clamp_min(0).sqrt().reshape(len(rows), -1).numpy()
    table = pool.iloc[rows].reset_index(drop=True)
    table.insert(0, "pool_row", rows)
    for j, o in enumerate(objectives):
        table[f"pred_{o.name}_mean"] = mean[:, j]
        table[f"pred_{o.name}_std"] = std[:, j]
    table["acquisition"] = score_points(built, Xc)
    table["acquisition_function"] = f"{built.name} [{model}]"
    messages.append(
        f"{len(free)} of {len(Xp)} candidates not yet observed; inputs: {', '.join(cols)}"
    )
    return Suggestion(pd.DataFrame(table), "bo", built.name, messages)


def _optimise_discrete(acq, choices: np.ndarray, q: int) -> np.ndarray:
    """Indices into `choices` of the q points chosen (sequential greedy, BoTorch)."""
    import torch
    from botorch.optim import optimize_acqf_discrete

    C = torch.tensor(choices, dtype=torch.double)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, _ = optimize_acqf_discrete(acq, q=q, choices=C, unique=True)
    picks: list[int] = []
    for x in X:
        d = (C - x).abs().sum(dim=-1)
        d[picks] = float("inf")
        picks.append(int(torch.argmin(d)))
    return np.array(picks)
