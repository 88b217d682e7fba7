"""Inverse design: compositions whose predicted properties meet a target property set.

Feasible compositions of a design space (bounds, Σ = total, forbidden components, linear
constraints, e.g. "no PbO, SiO2 ≥ 15 mol %") are sampled uniformly from the polytope; a fitted
:class:`~matloop.design.models.PropertyModel` predicts each property with a calibrated σ; the
candidates are ranked by the probability that every targeted property lies within its tolerance
(P = Π_j [Φ((t_j + tol_j − μ_j)/σ_j) − Φ((t_j − tol_j − μ_j)/σ_j)]), ties broken by the
standardised distance to the targets. For a model with Student-t intervals
(``kind="multitask"``) Φ is the t_ν distribution function with the fitted scale and ν.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as student_t

from matloop.errors import ConfigError, DataError


def parse_targets(specs: list[str], what: str = "--target") -> dict[str, float]:
    """``["nd=1.68", "abbe=38"]`` → {"nd": 1.68, "abbe": 38.0}."""
    out: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            number = float(value)
        except ValueError:
            raise ConfigError(f"{what} {spec!r}: write NAME=VALUE, e.g. nd=1.68") from None
        if not np.isfinite(number):
            raise ConfigError(f"{what} {spec!r}: the value must be a finite number")
        if name.strip() in out:
            raise ConfigError(f"{what} {name.strip()!r} is given more than once")
        out[name.strip()] = number
    return out


def inverse_design(
    model,
    space,
    targets: dict[str, float],
    *,
    tolerances: dict[str, float] | None = None,
    n_samples: int = 20000,
    top: int = 20,
    seed: int = 0,
    progress: bool = False,
):
    """Ranked DataFrame of `top` feasible compositions (space columns, in the space's units and
    basis; a ``basis: wt`` space is converted to mol % for the model) with ``pred_NAME_mean``,
    ``pred_NAME_lo95``/``hi95`` and ``p_within_tolerance``.

    ``progress=True`` writes one line on stderr as each long stage (sampling, scoring) starts."""
    import pandas as pd

    from matloop.compositions.core import wt_to_mol
    from matloop.design.bo import _polytope_samples
    from matloop.design.space import unit_box_problem
    from matloop.utils.progress import stage

    props = list(model.properties_)
    unknown = [t for t in targets if t not in props]
    if unknown:
        raise ConfigError(f"target(s) {unknown} are not properties of the model {props}")
    if not targets:
        raise ConfigError("give at least one --target NAME=VALUE")
    tolerances = tolerances or {}
    bad = [t for t in tolerances if t not in targets]
    if bad:
        raise ConfigError(f"tolerance(s) for {bad} without a --target")
    nonpositive = {k: v for k, v in tolerances.items() if not v > 0}
    if nonpositive:
        raise ConfigError(f"tolerances must be > 0, got {nonpositive}")
    comps = list(model.components_)
    missing = [c for c in space.names if c not in comps and space.upper()[space.names.index(c)] > 0]
    if missing:
        raise DataError(f"space component(s) {missing} are unknown to the model {comps}")
    prob = unit_box_problem(space)
    stage(progress, f"sampling {n_samples} feasible compositions…")
    z = _polytope_samples(prob, n_samples, seed)
    x = prob.round(prob.to_x(z))
    ok = np.array([not space.check_point(r, atol=1e-6 * max(1.0, space.total)) for r in x])
    x = np.unique(x[ok], axis=0)
    # the model takes mol % (`matloop design fit` converts --basis wt); a wt % space is converted
    x_mol = wt_to_mol(x, space.names, space.total) if space.basis == "wt" and len(x) else x
    X = np.zeros((len(x), len(comps)))
    for i, c in enumerate(space.names):
        if c in comps:
            X[:, comps.index(c)] = x_mol[:, i]
    stage(progress, f"predicting {len(x)} compositions…")
    mean, std = model.predict(X, return_std=True)
    mean, std = np.atleast_2d(mean.T).T, np.atleast_2d(std.T).T
    # Student-t predictive where the model fitted one (scale and ν), else Gaussian with std
    _, scale, nu = (
        model.predict_distribution(X)
        if hasattr(model, "predict_distribution")
        else (None, std, np.full(std.shape, np.inf))
    )
    logp = np.zeros(len(x))
    dist2 = np.zeros(len(x))
    p_all = np.ones(len(x))  # the probability reported (0 where it underflows)
    for name, t in targets.items():
        j = props.index(name)
        mu, sd = mean[:, j], np.maximum(std[:, j], 1e-12)
        sc, df = np.maximum(scale[:, j], 1e-12), nu[:, j]
        tol = tolerances.get(name, 0.5 * float(np.median(sd)))
        p = student_t.cdf((t + tol - mu) / sc, df) - student_t.cdf((t - tol - mu) / sc, df)
        logp += np.log(np.maximum(p, 1e-300))  # clipped for ranking only
        p_all *= np.clip(p, 0.0, 1.0)
        dist2 += ((mu - t) / np.sqrt(sd**2 + tol**2)) ** 2
    order = np.lexsort((dist2, -logp))[:top]
    _warn_if_unreachable(targets, props, mean, p_all)
    table = pd.DataFrame(x[order], columns=space.names)
    for j, name in enumerate(props):
        table[f"pred_{name}_mean"] = mean[order, j]
        table[f"pred_{name}_lo95"] = mean[order, j] - 1.96 * std[order, j]
        table[f"pred_{name}_hi95"] = mean[order, j] + 1.96 * std[order, j]
    table["p_within_tolerance"] = p_all[order]
    table["target_distance"] = np.sqrt(dist2[order] / len(targets))
    table.attrs["n_feasible_scored"] = len(x)
    return table


def _warn_if_unreachable(targets, props, mean, p_all, threshold: float = 0.01) -> None:
    """One warning when no scored composition has P(within tolerance) >= `threshold`, naming
    the predicted range of each targeted property over the scored compositions."""
    import warnings

    if len(p_all) and p_all.max() >= threshold:
        return
    ranges = ", ".join(
        f"{name} {mean[:, props.index(name)].min():.4g}..{mean[:, props.index(name)].max():.4g}"
        f" (target {t:g})"
        for name, t in targets.items()
    )
    best = p_all.max() if len(p_all) else 0.0
    warnings.warn(
        f"no feasible composition is likely to meet the targets (best P within tolerance "
        f"{best:.2g}); over the space the model predicts {ranges}: the ranked rows are the "
        "nearest predictions, not matches (revise the targets, widen --tolerance or the space)",
        stacklevel=3,
    )
