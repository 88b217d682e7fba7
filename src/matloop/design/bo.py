"""Bayesian optimisation of compositions with BoTorch (ask step of an ask/tell loop).

Model: one GP per property (``SingleTaskGP``: Matern-5/2 ARD kernel, standardised outcome),
each trained on the rows where that property was measured. Inputs are component fractions
x / total over every component of the space. Acquisition:

* one optimised objective → ``qLogNoisyExpectedImprovement`` ("logei", default) or
  ``qUpperConfidenceBound`` ("ucb");
* several → ``qLogNoisyExpectedHypervolumeImprovement`` ("nehvi", default; Pareto front);
* ``target=VALUE`` objectives use the utility −|y − VALUE|; ``within=LO,HI`` objectives are
  outcome constraints (probability of feasibility folded into log-EI / log-NEHVI).

Optimisation runs over the free components in their bounds with Σ = total and the space's
linear constraints (``optimize_acqf`` with equality/inequality constraints); forbidden and
fixed components are held with ``FixedFeatureAcquisitionFunction``. With fewer than
``min_observations`` measured rows of any objective, no model is fitted and space-filling
(maximin) feasible points are returned instead, with a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from matloop.design.objectives import Objective, objective_values, pareto_mask
from matloop.design.space import Space, UnitBoxProblem, observed_compositions, unit_box_problem
from matloop.errors import ConfigError, FitError

ACQUISITIONS = ("auto", "logei", "ucb", "nehvi")


@dataclass
class Suggestion:
    """Result of :func:`suggest`: a table (pandas DataFrame) and how it was produced."""

    table: object  # pandas.DataFrame
    mode: str  # "bo" or "space-filling"
    acquisition: str
    messages: list[str] = field(default_factory=list)
    pareto_observed: int | None = None


def _polytope_samples(prob: UnitBoxProblem, n: int, seed: int):
    import torch
    from botorch.utils.sampling import get_polytope_samples

    ineq, eq = prob.botorch_constraints()
    bounds = torch.tensor(prob.zbounds, dtype=torch.double)
    x0 = torch.tensor(prob.feasible_point(), dtype=torch.double)
    try:
        samples = get_polytope_samples(
            n, bounds, inequality_constraints=ineq, equality_constraints=eq, seed=seed,
            n_burnin=200, n_thinning=4,
        )
    except Exception:  # degenerate polytope (e.g. one free direction): use the centre
        samples = x0.repeat(n, 1)
    return samples.numpy()


def space_filling(prob: UnitBoxProblem, n: int, seed: int, existing_u=None):
    """`n` feasible points (free-variable fractions), greedy maximin w.r.t. `existing_u`."""
    cand = _polytope_samples(prob, max(512, 64 * n), seed)
    t = prob.space.total
    width = np.maximum(prob.hi[prob.free] - prob.lo[prob.free], 1e-12) / t
    scaled = cand / width
    chosen_pts: list[np.ndarray] = []
    if existing_u is not None and len(existing_u):
        chosen_pts = list(np.atleast_2d(existing_u)[:, prob.free] / width)
    picks, dists = [], []
    for _ in range(n):
        if chosen_pts:
            ref = np.array(chosen_pts)
            d = np.min(np.linalg.norm(scaled[:, None, :] - ref[None], axis=2), axis=1)
            i = int(np.argmax(d))
            dists.append(float(d[i]))
        else:
            centre = scaled.mean(axis=0)
            d = np.linalg.norm(scaled - centre, axis=1)
            i = int(np.argmin(d))
            dists.append(float("nan"))
        picks.append(i)
        chosen_pts.append(scaled[i])
    return cand[picks], np.array(dists)


def fit_gp_list(u, Y):
    """One ``SingleTaskGP`` per column of `Y` (rows with NaN dropped per column) → ModelListGP."""
    import torch
    from botorch.exceptions.errors import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import ModelListGP, SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.kernels import MaternKernel, ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood, SumMarginalLogLikelihood

    models = []
    for j in range(Y.shape[1]):
        ok = np.isfinite(Y[:, j])
        X = torch.tensor(u[ok], dtype=torch.double)
        y = torch.tensor(Y[ok, j : j + 1], dtype=torch.double)
        kernel = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=X.shape[1]))
        models.append(SingleTaskGP(X, y, covar_module=kernel, outcome_transform=Standardize(1)))
    model = ModelListGP(*models)
    mll = SumMarginalLogLikelihood(model.likelihood, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fit_gpytorch_mll(mll)
        except (ModelFittingError, RuntimeError, ValueError):
            # one hard objective must not spoil the others: fit each model on its own
            for j, m in enumerate(models):
                try:
                    fit_gpytorch_mll(ExactMarginalLogLikelihood(m.likelihood, m))
                except (ModelFittingError, RuntimeError, ValueError) as exc:
                    raise FitError(
                        f"the Gaussian process of objective column {j} could not be fitted "
                        f"({type(exc).__name__}: {exc}); check that column for constant or "
                        "non-finite values"
                    ) from exc
    return model


def _predict(model, u):
    import torch

    with torch.no_grad():
        post = model.posterior(torch.tensor(u, dtype=torch.double), observation_noise=True)
        mean = post.mean.numpy()
        std = post.variance.clamp_min(0).sqrt().numpy()
    return mean, std


def suggest(
    data,
    space: Space,
    objectives: list[Objective],
    *,
    batch: int = 1,
    seed: int = 0,
    acquisition: str = "auto",
    beta: float = 4.0,
    min_observations: int = 3,
    num_restarts: int = 8,
    raw_samples: int = 256,
    mc_samples: int = 256,
    source: str = "data",
) -> Suggestion:
    """Propose `batch` new compositions (ask). `data` is a DataFrame of observed rows."""
    # cheap checks first, so bad input fails fast (before torch is imported)
    unit_box_problem(space)
    observed_compositions(data, space, source=source)
    objective_values(data, objectives, source=source)
    import torch

    # GP matrices here are tiny: one thread avoids costly oversubscription on shared cores
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _suggest(data, space, objectives, batch=batch, seed=seed, acquisition=acquisition,
                        beta=beta, min_observations=min_observations, num_restarts=num_restarts,
                        raw_samples=raw_samples, mc_samples=mc_samples, source=source)
    finally:
        torch.set_num_threads(prev)


def _suggest(data, space, objectives, *, batch, seed, acquisition, beta, min_observations,
             num_restarts, raw_samples, mc_samples, source) -> Suggestion:
    import pandas as pd
    import torch

    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if acquisition not in ACQUISITIONS:
        raise ConfigError(f"unknown acquisition {acquisition!r}; choose from {ACQUISITIONS}")
    if not objectives:
        raise ConfigError("give at least one objective, e.g. --objective 'nd:max'")
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise ConfigError(f"objective names repeat: {names}")
    opt = [o for o in objectives if o.optimised]
    if not opt:
        raise ConfigError("all objectives are 'within' limits; add one to max/min/target")

    prob = unit_box_problem(space)  # ConfigError when infeasible
    x_obs = observed_compositions(data, space, source=source)
    Y = objective_values(data, objectives, source=source)
    u_obs = prob.to_u(x_obs) if len(x_obs) else np.zeros((0, len(space.names)))
    counts = np.isfinite(Y).sum(axis=0) if len(Y) else np.zeros(len(objectives), int)
    torch.manual_seed(seed)
    messages: list[str] = []
    comp_cols = space.names
    t = space.total

    if int(counts.min()) < min_observations:
        few = ", ".join(f"{o.name}: {int(c)}" for o, c in zip(objectives, counts, strict=True))
        msg = (
            f"only {few} observation(s) (need >= {min_observations} per objective for a model); "
            f"suggesting {batch} space-filling composition(s) instead of model-based ones"
        )
        warnings.warn(msg, stacklevel=2)
        messages.append(msg)
        z, dist = space_filling(prob, batch, seed, u_obs if len(u_obs) else None)
        x = prob.round(prob.to_x(z))
        table = pd.DataFrame(x, columns=comp_cols)
        for o in objectives:
            table[f"pred_{o.name}_mean"] = np.nan
            table[f"pred_{o.name}_std"] = np.nan
        table["acquisition"] = dist
        table["acquisition_function"] = "space-filling (maximin distance)"
        return Suggestion(table, "space-filling", "space-filling", messages)

    model = fit_gp_list(u_obs, Y)
    n_opt = len(opt)
    if acquisition == "auto":
        acquisition = "logei" if n_opt == 1 else "nehvi"
    if n_opt > 1 and acquisition != "nehvi":
        raise ConfigError(f"{n_opt} objectives to optimise need acquisition 'nehvi'")
    if n_opt == 1 and acquisition == "nehvi":
        acquisition = "logei"

    opt_idx = [objectives.index(o) for o in opt]
    cons = [(objectives.index(o), o) for o in objectives if not o.optimised]
    constraints = []
    for j, o in cons:
        constraints.append(lambda Z, j=j, hi=o.high: Z[..., j] - hi)
        constraints.append(lambda Z, j=j, lo=o.low: lo - Z[..., j])
    if constraints and acquisition == "ucb":
        raise ConfigError("'within' limits need acquisition logei or nehvi, not ucb")

    from botorch.acquisition import qLogNoisyExpectedImprovement, qUpperConfidenceBound
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective
    from botorch.acquisition.objective import GenericMCObjective
    from botorch.optim import optimize_acqf
    from botorch.sampling import SobolQMCNormalSampler

    sampler = SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
    Xb = torch.tensor(u_obs, dtype=torch.double)
    analytic = n_opt == 1 and batch == 1 and not constraints and opt[0].kind in ("max", "min")
    if analytic:  # closed-form acquisition: exact and much cheaper than MC
        from botorch.acquisition import LogExpectedImprovement, UpperConfidenceBound

        o, j = opt[0], opt_idx[0]
        sub = model.models[j]
        maximize = o.kind == "max"
        if acquisition == "logei":
            with torch.no_grad():
                mu = sub.posterior(Xb).mean.squeeze(-1)
            best = mu.max() if maximize else mu.min()
            acq = LogExpectedImprovement(sub, best_f=best, maximize=maximize)
        else:
            acq = UpperConfidenceBound(sub, beta=beta, maximize=maximize)
    elif n_opt == 1:
        o, j = opt[0], opt_idx[0]
        objective = GenericMCObjective(lambda Z, X=None, o=o, j=j: o.utility(Z[..., j]))
        if acquisition == "logei":
            acq = qLogNoisyExpectedImprovement(
                model, Xb, sampler=sampler, objective=objective,
                constraints=constraints or None, prune_baseline=True,
            )
        else:
            acq = qUpperConfidenceBound(model, beta=beta, sampler=sampler, objective=objective)
    else:
        def mo(Z, X=None):
            return torch.stack([o.utility(Z[..., j]) for o, j in zip(opt, opt_idx, strict=True)],
                               dim=-1)

        util = np.column_stack([o.utility(Y[:, j]) for o, j in zip(opt, opt_idx, strict=True)])
        ok = np.all(np.isfinite(util), axis=1)
        if ok.sum() == 0:
            raise ConfigError("no observed row has all optimised objectives measured")
        lo, hi = util[ok].min(axis=0), util[ok].max(axis=0)
        ref = lo - 0.1 * np.maximum(hi - lo, 1e-9)
        acq = qLogNoisyExpectedHypervolumeImprovement(
            model, ref_point=torch.tensor(ref, dtype=torch.double), X_baseline=Xb,
            sampler=sampler, objective=GenericMCMultiOutputObjective(mo),
            constraints=constraints or None, prune_baseline=True,
        )
        pm = pareto_mask(util)
        messages.append(f"{int(pm.sum())} observed composition(s) are on the Pareto front")

    # optimise over all components; fixed ones (forbidden, min == max) via fixed_features
    fixed = prob.fixed
    ineq, eq = prob.botorch_constraints()
    free_t = torch.tensor(prob.free, dtype=torch.long)

    def to_full(cons):
        return [(free_t[i], c, r) for i, c, r in cons] if cons else None

    lo_all, hi_all = prob.lo / t, prob.hi / t
    bounds = torch.tensor(np.stack([lo_all, hi_all]), dtype=torch.double)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u_best, _ = optimize_acqf(
            acq, bounds=bounds, q=batch, num_restarts=num_restarts,
            raw_samples=raw_samples, inequality_constraints=to_full(ineq),
            equality_constraints=to_full(eq),
            fixed_features={int(i): float(lo_all[i]) for i in fixed} or None,
            sequential=batch > 1,
            options={"n_burnin": 500, "n_thinning": 4, "maxiter": 200},
        )
    z = u_best[:, prob.free]
    z_np = z.detach().numpy()
    x = prob.round(prob.to_x(z_np))
    viol = [v for row in x for v in space.check_point(row, atol=1e-6 * max(1.0, t))]
    if viol:  # optimiser drifted outside (rare): fall back to feasible space-filling points
        messages.append("optimiser result violated constraints; replaced by feasible points")
        z_np, _ = space_filling(prob, batch, seed, u_obs)
        x = prob.round(prob.to_x(z_np))
    u_new = prob.to_u(x)
    mean, std = _predict(model, u_new)
    with torch.no_grad():
        per_point = []
        for row in torch.tensor(u_new, dtype=torch.double):
            per_point.append(float(acq(row[None, None, :]).item()))
    table = pd.DataFrame(x, columns=comp_cols)
    for j, o in enumerate(objectives):
        table[f"pred_{o.name}_mean"] = mean[:, j]
        table[f"pred_{o.name}_std"] = std[:, j]
    name = {"logei": "qLogNEI", "ucb": f"qUCB(beta={beta:g})", "nehvi": "qLogNEHVI"}[acquisition]
    if analytic:
        name = "LogEI" if acquisition == "logei" else f"UCB(beta={beta:g})"
    table["acquisition"] = per_point
    table["acquisition_function"] = name
    pm_n = int(pareto_mask(np.column_stack(
        [o.utility(Y[:, j]) for o, j in zip(opt, opt_idx, strict=True)])).sum())
    return Suggestion(table, "bo", name, messages, pareto_observed=pm_n if n_opt > 1 else None)
