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

from matloop.design.acquisition import (
    build_acquisition,
    check_objectives,
    score_points,
    utilities,
)
from matloop.design.objectives import (
    Objective,
    objective_values,
    pareto_mask,
    unmodelled_columns,
)
from matloop.design.space import Space, UnitBoxProblem, observed_compositions, unit_box_problem
from matloop.design.surrogates import fit_gp_list
from matloop.errors import ConfigError
from matloop.utils.progress import stage


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
            n,
            bounds,
            inequality_constraints=ineq,
            equality_constraints=eq,
            seed=seed,
            n_burnin=200,
            n_thinning=4,
        )
    except (ValueError, RuntimeError):  # degenerate polytope (one free direction): the centre
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


def _repeated_rows(x: np.ndarray, decimals: int = 4) -> list[int]:
    """Indices of rows of `x` equal (to `decimals` places) to an earlier row."""
    seen: set[tuple] = set()
    out = []
    for i, row in enumerate(np.round(np.atleast_2d(x), decimals)):
        key = tuple(row.tolist())
        if key in seen:
            out.append(i)
        seen.add(key)
    return out


FILLER = "space-filling (maximin distance)"


def _refill_repeats(prob: UnitBoxProblem, x: np.ndarray, u_obs, seed: int):
    """(`x` with the rows that repeat an earlier one replaced by space-filling points, number of
    rows kept first): a q-batch optimiser on a small space, or one with nothing left to gain,
    returns one composition q times, and q measurements of it teach little more than one.
    The fillers maximise the distance to the observed and the kept rows (`u_obs`: fractions);
    the batch keeps its size."""
    repeats = set(_repeated_rows(x, decimals=4))
    if not repeats:
        return x, len(x)
    keep = np.atleast_2d(x)[[i for i in range(len(x)) if i not in repeats]]
    existing = prob.to_u(keep)
    if len(u_obs):
        existing = np.vstack([u_obs, existing])
    z_fill, _ = space_filling(prob, len(repeats), seed, existing)
    return np.vstack([keep, prob.round(prob.to_x(z_fill))]), len(keep)


def _batch_repeats(x: np.ndarray, why: str) -> list[str]:
    """A warning line naming the suggestions (rows of `x`) that repeat an earlier one of the
    batch, followed by `why`."""
    repeats = _repeated_rows(x, decimals=4)
    if not repeats:
        return []
    return [
        f"warning: suggestion(s) {', '.join(str(i + 1) for i in repeats)} repeat an earlier "
        f"suggestion of this batch{why}"
    ]


def _observed_repeats(x: np.ndarray, x_obs: np.ndarray, total: float, name: str) -> list[str]:
    """A warning line for suggestions (rows of `x`, units of the total) that equal an observed
    composition (rows of `x_obs`) in every component to within 1e-4 of the total (0.01 mol %
    of 100: below what a lab weighs)."""
    if not len(x_obs):
        return []
    same = np.abs(np.atleast_2d(x)[:, None, :] - x_obs[None, :, :]).max(axis=2) <= 1e-4 * total
    pairs = [
        f"{i + 1} (= observed row {int(np.argmax(row)) + 1})"
        for i, row in enumerate(same)
        if row.any()
    ]
    if not pairs:
        return []
    return [
        f"warning: suggestion(s) {', '.join(pairs)} repeat an already measured composition "
        f"({name} expects nothing better elsewhere: it asks for a replicate); drop the row if "
        "you do not want a repeat measurement"
    ]


def _unused_columns(data, space: Space, objectives: list[Objective], source: str) -> list[str]:
    """A line naming the numeric columns the continuous design does not model, if any."""
    unused = unmodelled_columns(data, space.names, objectives)
    if not unused:
        return []
    return [
        f"{source}: numeric column(s) {unused} are neither components of the space nor "
        "objectives, so the model does not use them"
    ]


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
    progress: bool = False,
) -> Suggestion:
    """Propose `batch` new compositions (ask). `data` is a DataFrame of observed rows.

    ``progress=True`` writes one line on stderr as each long stage (GP fit, optimisation) starts.
    """
    # cheap checks first, so bad input fails fast (before torch is imported)
    unit_box_problem(space)
    observed_compositions(data, space, source=source, ignore=[o.name for o in objectives])
    objective_values(data, objectives, source=source)
    from matloop.utils.threads import torch_threads

    # GP matrices here are tiny: one thread avoids costly oversubscription on shared cores
    with torch_threads(1):  # the caller's setting is restored afterwards
        return _suggest(
            data,
            space,
            objectives,
            batch=batch,
            seed=seed,
            acquisition=acquisition,
            beta=beta,
            min_observations=min_observations,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            mc_samples=mc_samples,
            source=source,
            progress=progress,
        )


def _suggest(
    data,
    space,
    objectives,
    *,
    batch,
    seed,
    acquisition,
    beta,
    min_observations,
    num_restarts,
    raw_samples,
    mc_samples,
    source,
    progress=False,
) -> Suggestion:
    import pandas as pd
    import torch

    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    opt = check_objectives(objectives, acquisition)

    prob = unit_box_problem(space)  # ConfigError when infeasible
    x_obs = observed_compositions(data, space, source=source, ignore=[o.name for o in objectives])
    Y = objective_values(data, objectives, source=source)
    u_obs = prob.to_u(x_obs) if len(x_obs) else np.zeros((0, len(space.names)))
    counts = np.isfinite(Y).sum(axis=0) if len(Y) else np.zeros(len(objectives), int)
    torch.manual_seed(seed)
    messages: list[str] = _unused_columns(data, space, objectives, source)
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
        # e.g. an equality constraint that leaves a single composition
        messages += _batch_repeats(x, ": the space leaves no room for distinct ones")
        table = pd.DataFrame(x, columns=comp_cols)
        for o in objectives:
            table[f"pred_{o.name}_mean"] = np.nan
            table[f"pred_{o.name}_std"] = np.nan
        table["acquisition"] = dist
        table["acquisition_function"] = FILLER
        return Suggestion(table, "space-filling", "space-filling", messages)

    lo_b, hi_b = prob.lo / t, prob.hi / t
    stage(
        progress,
        f"fitting GP models of {', '.join(o.name for o in objectives)} ({len(u_obs)} rows)…",
    )
    model = fit_gp_list(u_obs, Y, bounds=np.stack([lo_b, np.where(hi_b > lo_b, hi_b, lo_b + 1)]))
    for objective, sub in zip(objectives, model.models, strict=True):
        if getattr(sub, "min_lengthscale", None) is not None:
            messages.append(
                f"note: the GP of {objective.name} was refitted with length scales >= "
                f"{sub.min_lengthscale:g} (unit cube) after its unconstrained fit failed"
            )
    Xb = torch.tensor(u_obs, dtype=torch.double)
    built = build_acquisition(
        model,
        Xb,
        objectives,
        Y,
        acquisition=acquisition,
        batch=batch,
        beta=beta,
        seed=seed,
        mc_samples=mc_samples,
    )
    acq = built.function
    opt_idx = [objectives.index(o) for o in opt]
    n_opt = len(opt)
    if n_opt > 1:
        pm = pareto_mask(utilities(Y, opt, opt_idx))
        messages.append(f"{int(pm.sum())} observed composition(s) are on the Pareto front")

    # optimise over all components; fixed ones (forbidden, min == max) via fixed_features
    fixed = prob.fixed
    ineq, eq = prob.botorch_constraints()
    free_t = torch.tensor(prob.free, dtype=torch.long)

    def to_full(cons):
        return [(free_t[i], c, r) for i, c, r in cons] if cons else None

    lo_all, hi_all = prob.lo / t, prob.hi / t
    bounds = torch.tensor(np.stack([lo_all, hi_all]), dtype=torch.double)
    from botorch.optim import optimize_acqf

    stage(progress, f"optimising {built.name} ({num_restarts} restarts, batch {batch})…")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u_best, _ = optimize_acqf(
            acq,
            bounds=bounds,
            q=batch,
            num_restarts=num_restarts,
            raw_samples=raw_samples,
            inequality_constraints=to_full(ineq),
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
    x, n_model = _refill_repeats(prob, x, u_obs, seed)
    if n_model < len(x):
        messages.append(
            f"note: {built.name} found only {n_model} distinct composition(s) worth measuring "
            f"(the space is small or the model sure of it); suggestion(s) "
            f"{', '.join(str(i + 1) for i in range(n_model, len(x)))} are instead the "
            "feasible compositions farthest from the observed and suggested ones"
        )
    messages += _observed_repeats(x, x_obs, t, built.name)
    messages += _batch_repeats(x, ": the space leaves no room for distinct ones")
    u_new = prob.to_u(x)
    mean, std = _predict(model, u_new)
    per_point = score_points(built, torch.tensor(u_new, dtype=torch.double))
    table = pd.DataFrame(x, columns=comp_cols)
    for j, o in enumerate(objectives):
        table[f"pred_{o.name}_mean"] = mean[:, j]
        table[f"pred_{o.name}_std"] = std[:, j]
    name = built.name
    table["acquisition"] = per_point
    table["acquisition_function"] = [name] * n_model + [FILLER] * (len(x) - n_model)
    pm_n = int(pareto_mask(utilities(Y, opt, opt_idx)).sum())
    return Suggestion(table, "bo", name, messages, pareto_observed=pm_n if n_opt > 1 else None)
