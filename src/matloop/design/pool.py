"""Pool-based Bayesian optimisation: pick the next experiment from a fixed candidate list.

This is the lab situation "we can make any of these N recipes" and the protocol of
Liang et al., npj Comput. Mater. 7, 188 (2021).

* :func:`suggest_from_pool` — the ask step for users (``matloop design suggest --candidates``):
  BoTorch surrogate (:mod:`matloop.design.surrogates`; optionally with warped inputs and
  without the redundant last mixture fraction), acquisition
  (:mod:`matloop.design.acquisition`) and BoTorch's discrete optimiser over the unobserved rows.
* :func:`pool_bo_batched` — many simulated campaigns at once for benchmarks: one batched
  BoTorch ``SingleTaskGP`` (Matérn-5/2, ARD or isotropic, priors) whose hyper-parameters are
  refitted on a schedule, and an exact posterior updated by one Cholesky row per experiment.
  Acquisitions (minimisation, standardised units): ``lcb`` μ − κσ, ``lcb_decay`` (κ → 0.5),
  ``ei``, ``pi``. Options: input warping, mixture inputs without the redundant fraction
  (:func:`simplex_columns`), outcome warps (:func:`warp_outcomes`).
* :func:`pool_forest_batched` — the same protocol with the random-forest surrogate
  (:class:`matloop.design.surrogates.ForestSurrogate`, σ = spread over the trees), LCB.
"""

from __future__ import annotations

import warnings

import numpy as np

from matloop.errors import ConfigError, DataError
from matloop.utils.threads import with_default_torch_threads


def refit_schedule(t: int) -> bool:
    """Refit hyper-parameters with `t` observations? Every step to 20, every 5th to 100, every
    20th to 200, then frozen (the exact posterior is still updated with every point)."""
    return t <= 20 or (t <= 100 and t % 5 == 0) or (t <= 200 and t % 20 == 0)


class _BatchedPosterior:
    """Exact GP posterior of R independent runs over a fixed pool, updated one point at a time.

    Hyper-parameters come from a batched BoTorch ``SingleTaskGP`` fit; between fits the Cholesky
    factor L and V = L⁻¹ K(observed, pool) grow by one row per step (O(t·N) instead of O(t³)).
    """

    def __init__(self, model, Xp, obs_idx, ys):
        import torch

        self.Xp = Xp  # R × N × d (the same pool repeated)
        self.covar = model.covar_module
        # R × 1; a fixed noise comes per observation (R × t), the same value at each
        self.noise = model.likelihood.noise.detach().reshape(Xp.shape[0], -1)[:, :1]
        self.const = model.mean_module.constant.detach().reshape(-1, 1)  # R × 1
        with torch.no_grad():
            self.kdiag = self.covar(Xp, diag=True)  # R × N
            Xo = torch.gather(Xp, 1, obs_idx[..., None].expand(-1, -1, Xp.shape[-1]))
            K = self.covar(Xo, Xo).to_dense()
            K = K + self.noise[..., None] * torch.eye(K.shape[-1], dtype=K.dtype)
            self.L = torch.linalg.cholesky(K + 1e-8 * torch.eye(K.shape[-1], dtype=K.dtype))
            self.V = torch.linalg.solve_triangular(
                self.L, self.covar(Xo, Xp).to_dense(), upper=False
            )
        self.ys = ys  # R × t (standardised with the statistics of the last fit)

    def add(self, new_idx, y_new):
        """Append one observation per run (`new_idx`: R pool indices, `y_new`: R values)."""
        import torch

        R = len(new_idx)
        ar = torch.arange(R)
        with torch.no_grad():
            l_vec = self.V[ar, :, new_idx]  # R × t  (= L⁻¹ k(obs, x_new))
            kxx = self.kdiag[ar, new_idx] + self.noise[:, 0] + 1e-8
            d = torch.sqrt(torch.clamp(kxx - (l_vec**2).sum(-1), min=1e-12))  # R
            kx_pool = self.covar(self.Xp[ar, new_idx][:, None, :], self.Xp).to_dense()[:, 0]
            v_new = (kx_pool - torch.einsum("rt,rtn->rn", l_vec, self.V)) / d[:, None]
            t = self.L.shape[-1]
            L = torch.zeros(R, t + 1, t + 1, dtype=self.L.dtype)
            L[:, :t, :t] = self.L
            L[:, t, :t] = l_vec
            L[:, t, t] = d
            self.L = L
            self.V = torch.cat([self.V, v_new[:, None, :]], dim=1)
            self.ys = torch.cat([self.ys, y_new[:, None]], dim=1)

    def mean_std(self):
        import torch

        with torch.no_grad():
            w = torch.linalg.solve_triangular(
                self.L, (self.ys - self.const)[..., None], upper=False
            )[..., 0]
            mu = self.const + torch.einsum("rt,rtn->rn", w, self.V)
            var = torch.clamp(self.kdiag - (self.V**2).sum(1), min=1e-12)
        return mu, var.sqrt()


def _fit_batched_gp(Xo, yo, *, ard, priors, bias, fixed_noise, previous, maxiter, input_warp=False):
    """Batched ``SingleTaskGP`` (one GP per run) on unit-cube inputs and standardised y."""
    import torch
    from botorch.models import SingleTaskGP
    from gpytorch.constraints import GreaterThan
    from gpytorch.likelihoods import GaussianLikelihood
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from gpytorch.priors import LogNormalPrior

    from matloop.design.surrogates import make_covar_module

    R, _, d = Xo.shape
    covar = make_covar_module(
        d, ard=ard, priors=priors, bias=bias, input_warp=input_warp, batch_shape=[R]
    )
    kw = {}
    if fixed_noise is not None:
        kw["train_Yvar"] = torch.full_like(yo[..., None], fixed_noise)
    else:  # softplus-constrained noise: the torch optimiser has no bounds
        kw["likelihood"] = GaussianLikelihood(
            noise_prior=LogNormalPrior(-4.0, 1.0) if priors else None,
            noise_constraint=GreaterThan(1e-6),
            batch_shape=torch.Size([R]),
        )
        kw["likelihood"].noise = 0.01
    model = SingleTaskGP(Xo, yo[..., None], covar_module=covar, outcome_transform=None, **kw)
    if previous is not None:
        model.load_state_dict(previous, strict=False)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    model.fit_ok_ = _fit_sum_lbfgs(mll, maxiter)
    model.eval()
    return model


def _fit_sum_lbfgs(mll, maxiter: int) -> bool:
    """Maximise the summed (independent) log marginal likelihoods of a batched GP with one
    torch L-BFGS: BoTorch's per-batch scipy optimisers cost a Python loop per run and step.

    Returns False when the optimiser stepped into a non-positive-definite (or NaN) covariance; the
    hyper-parameters are then put back to where they were before the fit (the caller counts it).
    """
    import torch
    from linear_operator.utils.errors import NanError, NotPSDError

    model = mll.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.LBFGS(
        params,
        lr=0.5,
        max_iter=maxiter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
    )
    X, y = model.train_inputs[0], model.train_targets

    def closure():
        opt.zero_grad()
        loss = -mll(model(X), y).sum()
        loss.backward()
        return loss

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            opt.step(closure)
        except (NotPSDError, NanError):
            with torch.no_grad():
                for p, b in zip(params, before, strict=True):
                    p.copy_(b)
            return False
    return True


Y_WARPS = ("standardize", "copula", "power")


def warp_outcomes(y: np.ndarray, warp: str = "standardize", params=None) -> np.ndarray:
    """Observed values `y` (runs × t, or t) → the values the GP is fitted to, per run (row).

    ``standardize``: zero mean, unit variance. ``copula``: rank-based Gaussian copula, Φ⁻¹ of
    the mid-rank quantiles (ties share their mean rank), then standardised: only the order of
    the observations matters. ``power``: HEBO's power warp: y / std(y), then Box-Cox when every
    value is positive, else Yeo-Johnson, λ by maximum likelihood (clipped to [-2, 2]), then
    standardised; `params` from :func:`fit_power_warp` keeps λ fixed (e.g. between refits).
    """
    from scipy.special import ndtri
    from scipy.stats import rankdata

    if warp not in Y_WARPS:
        raise ConfigError(f"unknown outcome warp {warp!r}; choose from {Y_WARPS}")
    y = np.asarray(y, dtype=float)
    Y = np.atleast_2d(y)
    if warp == "copula":
        Y = ndtri((rankdata(Y, axis=1) - 0.5) / Y.shape[1])
    elif warp == "power":
        params = fit_power_warp(Y) if params is None else params
        Y = np.stack([_power(r, *pr) for r, pr in zip(Y, params, strict=True)])
    sd = np.maximum(Y.std(axis=1, ddof=1, keepdims=True), 1e-9) if Y.shape[1] > 1 else 1.0
    return ((Y - Y.mean(axis=1, keepdims=True)) / sd).reshape(y.shape)


def fit_power_warp(Y: np.ndarray) -> list[tuple[bool, float, float]]:
    """Per row of `Y`: (Box-Cox?, λ, scale) of :func:`warp_outcomes`' ``power`` warp."""
    from scipy.stats import boxcox_normmax, yeojohnson_normmax

    out = []
    for r in np.atleast_2d(np.asarray(Y, dtype=float)):
        scale = max(float(r.std()), 1e-12)
        x = r / scale
        box = bool(np.all(x > 0))
        lam = 1.0
        if len(x) > 2 and np.ptp(x) > 1e-12:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                lam = float(boxcox_normmax(x, method="mle") if box else yeojohnson_normmax(x))
        out.append((box, float(np.clip(lam, -2.0, 2.0)) if np.isfinite(lam) else 1.0, scale))
    return out


def _power(r: np.ndarray, box: bool, lam: float, scale: float) -> np.ndarray:
    from scipy.stats import boxcox, yeojohnson

    x = r / scale
    if box and np.all(x > 0):
        return boxcox(x, lmbda=lam)
    return yeojohnson(x, lmbda=lam)


def simplex_columns(X: np.ndarray, rtol: float = 0.025) -> np.ndarray:
    """Indices of the input columns to model: all but the last when every row sums to the same
    total within `rtol` (mixture fractions: the last is then fixed by the others), else all."""
    s = np.asarray(X, dtype=float).sum(axis=1)
    d = X.shape[1]
    on_simplex = d > 1 and np.all(X >= 0) and np.ptp(s) <= rtol * max(abs(float(s.mean())), 1e-12)
    return np.arange(d - 1 if on_simplex else d)


def mixture_options(
    X: np.ndarray, *, input_warp: bool | str, drop_simplex: bool | str
) -> tuple[bool, np.ndarray]:
    """`input_warp` resolved and the columns of the rows `X` the GP models; `input_warp` and
    `drop_simplex` are each True, False or ``"auto"`` (on where every row's inputs are mixture
    fractions with one total, :func:`simplex_columns`, off otherwise); with `drop_simplex` the
    redundant last fraction is not among the columns."""
    for name, value in (("input_warp", input_warp), ("drop_simplex", drop_simplex)):
        if not (isinstance(value, bool) or (isinstance(value, str) and value == "auto")):
            raise ConfigError(f"{name} must be True, False or 'auto', got {value!r}")
    simplex = simplex_columns(X)
    resolve = {True: True, False: False, "auto": len(simplex) < X.shape[1]}
    keep = simplex if resolve[drop_simplex] else np.arange(X.shape[1])
    return resolve[input_warp], keep


def unit_cube(*arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower corner and width of the box around the rows of `arrays` (width 1 where a column
    is constant): ``(X - lo) / width`` maps the box onto the unit cube."""
    rows = np.concatenate([a for a in arrays if len(a)], axis=0)
    lo, hi = rows.min(axis=0), rows.max(axis=0)
    return lo, np.where(hi > lo, hi - lo, 1.0)


def pool_bo_batched(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seeds: list[int],
    n_init: int = 2,
    n_cycles: int | None = None,
    acquisition: str = "lcb",
    kappa: float = 2.0,
    ard: bool = True,
    priors: bool = True,
    bias: bool = False,
    fixed_noise: float | None = None,
    y_warp: str = "standardize",
    drop_simplex: bool | str = False,
    input_warp: bool | str = False,
    maxiter: int = 40,
    refit=refit_schedule,
    stats: dict | None = None,
    on_step=None,
) -> np.ndarray:
    """Pool-based BO for several independent runs at once (minimising `y`).

    Every run starts from `n_init` random pool points (its seed) and then measures the pool
    point with the best acquisition (``lcb``: μ − κσ; ``ei``; ``pi``; all in standardised units)
    until `n_cycles` points (default: the whole pool). GP: BoTorch ``SingleTaskGP``, Matérn-5/2,
    `ard`, `priors` (BoTorch's dimension-scaled length-scale prior, Gamma output scale, log-normal
    noise), optional constant (`bias`) kernel and `fixed_noise` (variance in units of var(y));
    inputs scaled to the pool's unit cube (`drop_simplex`: without the redundant last column of
    mixture fractions, :func:`simplex_columns`; `input_warp`: a learned Kumaraswamy CDF per
    input, :func:`matloop.design.surrogates.make_covar_module`). Outcomes:
    ``y_warp="standardize"`` standardises y at each hyper-parameter fit; ``copula`` /
    ``power`` (:func:`warp_outcomes`) re-warp all observations at every step, the GP's
    hyper-parameters following the refit schedule.
    Returns runs × experiments pool indices in the order measured.
    """
    import torch

    if y_warp not in Y_WARPS:
        raise ConfigError(f"unknown outcome warp {y_warp!r}; choose from {Y_WARPS}")
    input_warp, keep = mixture_options(X, input_warp=input_warp, drop_simplex=drop_simplex)
    X = X[:, keep]
    N, d = X.shape
    n_cycles = N if n_cycles is None else min(n_cycles, N)
    R = len(seeds)
    lo, width = unit_cube(X)
    Xu = torch.tensor((X - lo) / width, dtype=torch.double)
    Xp = Xu.expand(R, N, d)
    yt = torch.tensor(y, dtype=torch.double)
    order = torch.tensor(
        np.array([np.random.default_rng(s).choice(N, n_init, replace=False) for s in seeds]),
        dtype=torch.long,
    )
    seen = torch.zeros(R, N, dtype=torch.bool)
    seen.scatter_(1, order, True)
    post, state, ystats, wparams = None, None, None, None
    while order.shape[1] < n_cycles:
        t = order.shape[1]
        if post is None or refit(t):
            yo = yt[order]
            mu_y = yo.mean(1, keepdim=True)
            sd_y = yo.std(1, keepdim=True).clamp_min(1e-9)
            ystats = (mu_y, sd_y)
            ys = (yo - mu_y) / sd_y
            if y_warp != "standardize":
                wparams = fit_power_warp(yo.numpy()) if y_warp == "power" else None
                ys = torch.tensor(warp_outcomes(yo.numpy(), y_warp, wparams), dtype=torch.double)
            Xo = Xu[order]
            model = _fit_batched_gp(
                Xo,
                ys,
                ard=ard,
                priors=priors,
                bias=bias,
                fixed_noise=fixed_noise,
                previous=state,
                maxiter=maxiter,
                input_warp=input_warp,
            )
            state = model.state_dict()
            if stats is not None:
                stats["fits"] = stats.get("fits", 0) + 1
                stats["fits_kept_previous"] = stats.get("fits_kept_previous", 0) + (
                    not model.fit_ok_
                )
            post = _BatchedPosterior(model, Xp, order, ys)
        mu, sd = post.mean_std()
        ys_obs = post.ys
        score = _pool_scores(mu, sd, ys_obs, acquisition, kappa, t, n_cycles)
        score[seen] = -torch.inf
        pick = torch.argmax(score, dim=1)
        seen[torch.arange(R), pick] = True
        order = torch.cat([order, pick[:, None]], dim=1)
        post.add(pick, (yt[pick] - ystats[0][:, 0]) / ystats[1][:, 0])
        if y_warp != "standardize":  # ranks change with every observation (λ at refits)
            warped = warp_outcomes(yt[order].numpy(), y_warp, wparams)
            post.ys = torch.tensor(warped, dtype=torch.double)
        if on_step is not None:
            on_step(order.shape[1])
    return order.numpy()


def _pool_scores(mu, sd, ys_obs, acquisition, kappa, t, n_cycles):
    """Acquisition (larger is better) for minimisation, standardised units, R × N."""
    import torch

    if acquisition == "lcb":
        return -(mu - kappa * sd)
    if acquisition == "lcb_decay":
        frac = t / max(n_cycles - 1, 1)
        return -(mu - (kappa * (1 - frac) + 0.5 * frac) * sd)
    best = ys_obs.min(dim=1, keepdim=True).values
    z = (best - mu) / sd
    normal = torch.distributions.Normal(0.0, 1.0)
    if acquisition == "ei":
        return (best - mu) * normal.cdf(z) + sd * torch.exp(normal.log_prob(z))
    if acquisition == "pi":
        return normal.cdf(z)
    raise ConfigError(f"unknown acquisition {acquisition!r}; choose lcb, lcb_decay, ei or pi")


def forest_refit_schedule(t: int) -> bool:
    """Refit the forest with `t` observations? Every step to 100, every 10th to 300, then
    frozen (a forest, unlike the GP posterior, sees new points only when refitted)."""
    return t <= 100 or (t <= 300 and t % 10 == 0)


def pool_forest_batched(
    X: np.ndarray,
    y: np.ndarray,
    *,
    seeds: list[int],
    n_init: int = 2,
    n_cycles: int | None = None,
    kappa: float = 1.0,
    n_estimators: int = 100,
    refit=forest_refit_schedule,
    on_step=None,
) -> np.ndarray:
    """Pool-based BO with the random-forest surrogate (:class:`ForestSurrogate`), minimising `y`.

    The protocol of :func:`pool_bo_batched` (same initial points per seed): inputs scaled to the
    pool's unit cube, y standardised at each fit, LCB μ − κσ with σ the spread over the trees;
    ties (frequent with trees) are broken at random. Returns runs × experiments pool indices.
    """
    from matloop.design.surrogates import ForestSurrogate

    N, _ = X.shape
    n_cycles = N if n_cycles is None else min(n_cycles, N)
    lo, width = unit_cube(X)
    Xu = (X - lo) / width
    orders = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        order = list(rng.choice(N, n_init, replace=False))
        seen = np.zeros(N, dtype=bool)
        seen[order] = True
        score = None
        while len(order) < n_cycles:
            t = len(order)
            if score is None or refit(t):
                yo = y[order]
                ys = (yo - yo.mean()) / max(float(yo.std()), 1e-9)
                forest = ForestSurrogate(n_estimators=n_estimators, seed=seed + t)
                mu, sd = forest.fit(Xu[order], ys).predict(Xu)
                score = -(mu[:, 0] - kappa * sd[:, 0])
            cand = np.where(seen, -np.inf, score)
            best = np.flatnonzero(cand >= cand.max() - 1e-12)
            pick = int(best[rng.integers(len(best))])
            seen[pick] = True
            order.append(pick)
            if on_step is not None:
                on_step(len(order))
        orders.append(order)
    return np.array(orders)


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
    **kw,
) -> np.ndarray:
    """Indices of the pool in the order they were measured (minimising `y`), one run.

    `X` (N × d) and `y` (N,) are the pool (unique candidates); `n_cycles` experiments in total
    (default: the whole pool). The first `n_init` are random. See :func:`pool_bo_batched`.
    """
    return pool_bo_batched(
        X,
        y,
        seeds=[seed],
        n_init=n_init,
        n_cycles=n_cycles,
        acquisition=acquisition,
        kappa=kappa,
        ard=ard,
        **kw,
    )[0]


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
            raise DataError(f"{name}: row {rows[0] + 1} has a missing or non-finite input value")
    if len(Xp) == 0:
        raise DataError(f"{pool_name}: no candidate rows")
    return cols, Xo, Xp


def _row_keys(X: np.ndarray, decimals: int = 9) -> list[tuple]:
    """Rows of `X` rounded to `decimals` significant places, as hashable tuples."""
    if not len(X):
        return []
    return [tuple(r) for r in np.vectorize(lambda v: float(f"{v:.{decimals}g}"))(X)]


def observed_mask(Xo: np.ndarray, Xp: np.ndarray, decimals: int = 9) -> np.ndarray:
    """True for pool rows equal (to `decimals` significant places) to an observed row."""
    seen = set(_row_keys(Xo, decimals))
    return np.array([k in seen for k in _row_keys(Xp, decimals)], dtype=bool)


def repeated_mask(Xp: np.ndarray, decimals: int = 9) -> np.ndarray:
    """True for pool rows equal (as in :func:`observed_mask`) to an earlier pool row."""
    seen: set[tuple] = set()
    out = np.zeros(len(Xp), dtype=bool)
    for i, k in enumerate(_row_keys(Xp, decimals)):
        out[i] = k in seen
        seen.add(k)
    return out


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


def _unused_columns(data, cols, objectives, data_name: str, pool_name: str) -> list[str]:
    """A line naming the numeric columns of `data` that are neither the pool's columns `cols`
    nor objectives: a process parameter left out of the pool is not modelled."""
    from matloop.design.objectives import unmodelled_columns

    unused = unmodelled_columns(data, cols, objectives)
    if not unused:
        return []
    return [
        f"{data_name}: numeric column(s) {unused} are not in {pool_name}, so the model does not "
        "use them (add them to the candidates to make them inputs)"
    ]


@with_default_torch_threads
def suggest_from_pool(
    data,
    pool,
    objectives,
    *,
    batch: int = 1,
    seed: int = 0,
    model: str = "gp",
    acquisition: str = "auto",
    beta: float = 1.0,
    min_observations: int = 2,
    mc_samples: int = 256,
    input_warp: bool | str = "auto",
    drop_simplex: bool | str = "auto",
    data_name: str = "data",
    pool_name: str = "candidates",
    progress: bool = False,
):
    """Pick the next `batch` rows of the finite `pool` (DataFrame) given observed `data`.

    The GP is the benchmark's default (``benchmarks/bo_liang.py``): ARD Matérn-5/2 with priors
    on the pool's unit cube. `input_warp`, a learned Kumaraswamy CDF per input, and
    `drop_simplex`, the redundant last fraction left out, are each True, False or ``"auto"``
    (the default: on where the inputs are mixture fractions with a constant sum,
    :func:`simplex_columns`; benchmarks/README.md says why). Rows of the pool already in
    `data` (same inputs) are never suggested. ``acquisition="auto"`` is the benchmark's too
    for one objective to maximise or minimise: UCB with `beta` = κ² = 1 (log-EI for a target
    or limits, qLogNEHVI for several objectives). Returns a
    :class:`matloop.design.bo.Suggestion` whose table holds the chosen pool rows (original
    columns and ``pool_row``, 0-based) with predictions and acquisition values.
    ``progress=True`` writes one line on stderr as each long stage (model fit, scoring) starts.
    Runs with matloop's torch thread count (``MATLOOP_NUM_THREADS``, default 1: for these small
    matrices a second thread saves no time on a quiet machine and takes 3.3× as long beside a
    busy core; ``benchmarks/pool_threads.py``).
    """
    import pandas as pd
    import torch

    from matloop.design.acquisition import build_acquisition, check_objectives, score_points
    from matloop.design.bo import Suggestion
    from matloop.design.objectives import objective_values
    from matloop.utils.progress import stage

    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if model not in POOL_MODELS:
        raise ConfigError(f"unknown model {model!r}; choose from {POOL_MODELS}")
    opt = check_objectives(objectives, acquisition)
    if acquisition == "auto" and len(objectives) == 1 and opt[0].kind in ("max", "min"):
        acquisition = "ucb"
    cols, Xo, Xp = pool_inputs(data, pool, objectives, data_name=data_name, pool_name=pool_name)
    Y = objective_values(data, objectives, source=data_name)
    # a recipe listed twice in the pool is one candidate: only its first row can be suggested
    repeated = repeated_mask(Xp)
    free = np.flatnonzero(~observed_mask(Xo, Xp) & ~repeated)
    if len(free) < batch:
        raise DataError(
            f"{pool_name}: only {len(free)} candidate(s) not yet observed, asked "
            f"for --batch {batch}"
        )
    torch.manual_seed(seed)
    lo, width = unit_cube(Xp, Xo)
    counts = np.isfinite(Y).sum(axis=0) if len(Y) else np.zeros(len(objectives), int)
    messages: list[str] = _unused_columns(data, cols, objectives, data_name, pool_name)
    if repeated.any():
        messages.append(
            f"{pool_name}: {int(repeated.sum())} row(s) repeat the inputs of an earlier row "
            "and are not suggested separately"
        )
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

    keep = np.arange(len(cols))
    stage(
        progress,
        f"fitting {model} models of {', '.join(o.name for o in objectives)} ({len(Xo)} rows)…",
    )
    if model == "gp":
        from matloop.design.surrogates import fit_gp_list

        input_warp, keep = mixture_options(
            np.concatenate([Xp, Xo]), input_warp=input_warp, drop_simplex=drop_simplex
        )
        if len(keep) < len(cols):
            messages.append(f"mixture fractions: the GP models {', '.join(cols[: len(keep)])}")
        if input_warp:
            messages.append("inputs warped by a learned Kumaraswamy CDF (off: --input-warp off)")
        Xo, Xp = Xo[:, keep], Xp[:, keep]
        bounds = np.stack([lo, lo + width])[:, keep]
        bmodel = fit_gp_list(Xo, Y, bounds=bounds, input_warp=input_warp)
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
    stage(progress, f"scoring {len(free)} candidates ({built.name}, batch {batch})…")
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
