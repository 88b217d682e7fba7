"""Acquisition functions (the *acquisition* part of BoTorch's split), shared by continuous
(:mod:`matloop.design.bo`) and pool-based (:mod:`matloop.design.pool`) suggestion.

Names (all on the objectives' utilities, larger is better; ``min`` objectives are negated):

* ``ucb`` — upper confidence bound μ + √β σ (on a minimised property this is the lower
  confidence bound μ − κσ with κ = √β, Liang et al.'s "LCB");
* ``ei``, ``logei`` — expected improvement / its logarithm (numerically safe);
* ``pi`` — probability of improvement;
* ``nehvi`` — noisy expected hypervolume improvement (several objectives, Pareto front).

One objective, one point and no limits → closed-form BoTorch acquisitions; otherwise Monte-Carlo
``q``-acquisitions (batch q > 1, ``target=`` objectives, ``within=`` limits as outcome constraints).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from matloop.design.objectives import Objective
from matloop.errors import ConfigError

ACQUISITIONS = ("auto", "logei", "ei", "pi", "ucb", "nehvi")


@dataclass
class Acquisition:
    """A built acquisition function and how to describe it."""

    function: object  # botorch AcquisitionFunction
    name: str
    analytic: bool


def check_objectives(objectives: list[Objective], acquisition: str) -> list[Objective]:
    """Validate the objective list and acquisition name; return the optimised objectives."""
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
    if len(opt) > 1 and acquisition not in ("auto", "nehvi"):
        raise ConfigError(f"{len(opt)} objectives to optimise need acquisition 'nehvi'")
    if any(not o.optimised for o in objectives) and acquisition in ("ucb", "pi", "ei"):
        raise ConfigError(f"'within' limits need acquisition logei or nehvi, not {acquisition}")
    return opt


def resolve(acquisition: str, n_opt: int) -> str:
    if acquisition == "auto" or (n_opt == 1 and acquisition == "nehvi"):
        return "logei" if n_opt == 1 else "nehvi"
    return acquisition


def _submodel(model, j: int):
    """Model of output `j` alone (ModelListGP member or a one-output view)."""
    if hasattr(model, "models"):
        return model.models[j]
    if hasattr(model, "forests"):
        return type(model)([model.forests[j]], model.n_train)
    return model


def build_acquisition(
    model,
    X_baseline,
    objectives: list[Objective],
    Y: np.ndarray,
    *,
    acquisition: str = "auto",
    batch: int = 1,
    beta: float = 4.0,
    seed: int = 0,
    mc_samples: int = 256,
) -> Acquisition:
    """Acquisition over `model` (outputs in the order of `objectives`) for a q = `batch` batch.

    `X_baseline` (torch, n × d) are the observed inputs, `Y` (n × objectives) their values.
    """
    import torch
    from botorch.sampling import SobolQMCNormalSampler

    if not beta >= 0:
        raise ConfigError(f"beta (UCB exploration weight) must be >= 0, got {beta}")
    opt = check_objectives(objectives, acquisition)
    acquisition = resolve(acquisition, len(opt))
    opt_idx = [objectives.index(o) for o in opt]
    constraints = []
    for j, o in ((objectives.index(o), o) for o in objectives if not o.optimised):
        constraints.append(lambda Z, j=j, hi=o.high: Z[..., j] - hi)
        constraints.append(lambda Z, j=j, lo=o.low: lo - Z[..., j])
    is_forest = hasattr(model, "forests")
    sampler = None if is_forest else SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
    if len(opt) == 1 and batch == 1 and not constraints and opt[0].kind in ("max", "min"):
        return _analytic(model, X_baseline, opt[0], opt_idx[0], Y, acquisition, beta)
    if len(opt) == 1:
        return _mc_single(
            model, X_baseline, opt[0], opt_idx[0], acquisition, beta, sampler, constraints
        )
    return _mc_multi(model, X_baseline, opt, opt_idx, Y, sampler, constraints)


def _analytic(model, Xb, o: Objective, j: int, Y, acquisition: str, beta: float) -> Acquisition:
    import torch
    from botorch.acquisition import (
        ExpectedImprovement,
        LogExpectedImprovement,
        ProbabilityOfImprovement,
        UpperConfidenceBound,
    )

    sub = _submodel(model, j)
    maximize = o.kind == "max"
    if acquisition == "ucb":
        return Acquisition(
            UpperConfidenceBound(sub, beta=beta, maximize=maximize), f"UCB(beta={beta:g})", True
        )
    if hasattr(sub, "forests"):  # no smoothing posterior mean: best observed value
        yj = Y[:, j][np.isfinite(Y[:, j])]
        best = torch.tensor(float(yj.max() if maximize else yj.min()), dtype=torch.double)
    else:
        with torch.no_grad():
            mu = sub.posterior(Xb).mean.squeeze(-1)
        best = mu.max() if maximize else mu.min()
    cls, name = {
        "logei": (LogExpectedImprovement, "LogEI"),
        "ei": (ExpectedImprovement, "EI"),
        "pi": (ProbabilityOfImprovement, "PI"),
    }[acquisition]
    return Acquisition(cls(sub, best_f=best, maximize=maximize), name, True)


def _mc_single(model, Xb, o, j, acquisition, beta, sampler, constraints) -> Acquisition:
    from botorch.acquisition import (
        qLogNoisyExpectedImprovement,
        qProbabilityOfImprovement,
        qUpperConfidenceBound,
    )
    from botorch.acquisition.objective import GenericMCObjective

    objective = GenericMCObjective(lambda Z, X=None, o=o, j=j: o.utility(Z[..., j]))
    if acquisition == "ucb":
        return Acquisition(
            qUpperConfidenceBound(model, beta=beta, sampler=sampler, objective=objective),
            f"qUCB(beta={beta:g})",
            False,
        )
    if acquisition == "pi":
        import torch

        with torch.no_grad():
            best = objective(model.posterior(Xb).mean).max()
        return Acquisition(
            qProbabilityOfImprovement(model, best_f=best, sampler=sampler, objective=objective),
            "qPI",
            False,
        )
    return Acquisition(
        qLogNoisyExpectedImprovement(
            model,
            Xb,
            sampler=sampler,
            objective=objective,
            constraints=constraints or None,
            prune_baseline=True,
        ),
        "qLogNEI",
        False,
    )


def _mc_multi(model, Xb, opt, opt_idx, Y, sampler, constraints) -> Acquisition:
    import torch
    from botorch.acquisition.multi_objective.logei import (
        qLogNoisyExpectedHypervolumeImprovement,
    )
    from botorch.acquisition.multi_objective.objective import GenericMCMultiOutputObjective

    def mo(Z, X=None):
        return torch.stack(
            [o.utility(Z[..., j]) for o, j in zip(opt, opt_idx, strict=True)], dim=-1
        )

    util = utilities(Y, opt, opt_idx)
    ok = np.all(np.isfinite(util), axis=1)
    if ok.sum() == 0:
        raise ConfigError("no observed row has all optimised objectives measured")
    lo, hi = util[ok].min(axis=0), util[ok].max(axis=0)
    ref = lo - 0.1 * np.maximum(hi - lo, 1e-9)
    keep = baseline_rows(util, ok)
    acq = qLogNoisyExpectedHypervolumeImprovement(
        model,
        ref_point=torch.tensor(ref, dtype=torch.double),
        X_baseline=Xb[torch.as_tensor(keep)],
        sampler=sampler,
        objective=GenericMCMultiOutputObjective(mo),
        constraints=constraints or None,
        prune_baseline=True,
    )
    return Acquisition(acq, "qLogNEHVI", False)


def baseline_rows(util: np.ndarray, ok: np.ndarray, cap: int = 256) -> np.ndarray:
    """Observed rows that matter for hypervolume improvement: the Pareto front, then the next
    non-dominated layers, up to `cap` rows (NEHVI's cost grows with the baseline size)."""
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    idx = np.flatnonzero(ok)
    if len(idx) <= cap:
        return idx
    keep: list[int] = []
    rest = idx
    while len(keep) < cap and len(rest):
        front = is_non_dominated(torch.tensor(util[rest], dtype=torch.double)).numpy()
        keep.extend(rest[front].tolist())
        rest = rest[~front]
    return np.array(sorted(keep))


def utilities(Y: np.ndarray, opt: list[Objective], opt_idx: list[int]) -> np.ndarray:
    """Rows × optimised objectives, larger is better."""
    return np.column_stack([o.utility(Y[:, j]) for o, j in zip(opt, opt_idx, strict=True)])


def score_points(acq: Acquisition, X) -> np.ndarray:
    """Acquisition value of each row of `X` (torch, n × d) taken alone."""
    import torch

    with torch.no_grad():
        return np.array([float(acq.function(row[None, None, :]).item()) for row in X])
