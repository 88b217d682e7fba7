"""Closed-form fit of a linear potential (the ``ace`` family): no learning rate, no epochs.

:func:`fit_ace` streams the training structures in chunks of about ``chunk_atoms`` atoms,
accumulates the normal equations of energies per atom, force components and (when weighted)
stresses (:class:`~matloop.models.ace.solver.NormalEquations`; memory O(P²)), then chooses the
regularisation with no user knob:

1. **evidence**: prior precision α and noise precision β by evidence maximisation (MacKay), for
   each of five force/energy precision ratios (the loss-weight ratio × 0.1 … 10); the
   ratio with the highest evidence wins; optionally one α per correlation order (ARD);
2. **validation**: the ratio α/β (and the force/energy ratio) with the lowest validation loss
   w_E·MSE(E/atom) + w_F·MSE(F) (+ w_S·MSE(σ)) — computed from validation normal equations,
   so the validation structures are never held in memory either.

With ``regularisation: auto`` (default) the one with the lower validation loss is kept; both
are reported. The posterior (covariance root, noise variances) then gives ``energy_std`` /
``forces_std``, scaled so that a new error lies within ±1.96σ with probability 95 %
(split-conformal quantile; forces from the validation split, energies from the validation
energies pooled with the training energies' leave-one-out (PRESS) errors, which the linear
model gives without refits), and the MaxVol active set of training atoms gives the
extrapolation grade (:mod:`matloop.models.ace.uncertainty`).

Basis choice (``fit.basis_degrees`` / ``basis_cutoffs`` / ``basis_radial_scales``, or
``cutoff_search``: the cutoff and 0.5 Å more when there are 10 validation structures or more):
one pass
over the data per cutoff and radial scale computes the rows of the model's basis; the
candidates truncated at a lower total degree are nested in it (their rows are columns of it,
:func:`~matloop.models.ace.basis.nested_columns`), so each is fitted from sub-blocks of the same
normal equations. The candidate with the lowest validation loss (or the fewest coefficients
within ``basis_tolerance`` of it) replaces the model's basis; all are listed in
``basis_search``.

Loss weights → relative row precisions, as in the ``kernel`` family: σ_E = 1 meV/atom at
w_E = 1, σ_F = 0.03 eV/Å at w_F = 0.02, σ_S = 1 meV/Å³ at w_S = 1 (σ ∝ 1/√w); only the ratios
matter, the overall noise level is fitted.

Interface with ``family.py``: the model has ``basis`` (``design_rows``, ``atom_features``,
``n_coefficients``, ``describe``), a float64 buffer ``coefficients`` (P,), the submodule
``posterior`` (:class:`~matloop.models.ace.uncertainty.AcePosterior`) and its params may hold
``fit: AceFitParams``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import torch
from ase import Atoms
from threadpoolctl import threadpool_limits

from matloop.errors import ConfigError, DataError
from matloop.models.ace.solver import (
    NormalEquations,
    Posterior,
    ard_fit,
    evidence_fit,
    posterior_for_ratio,
    profile_transform,
    ridge_path,
    validation_score,
)
from matloop.models.ace.uncertainty import (
    FeatureSample,
    basis_of,
    calibration_scale,
    coverage_stats,
    force_variance,
    grade_map,
    group_press_z,
    posterior_of,
    press_z,
)
from matloop.models.graph import collate
from matloop.models.params import AceFitParams
from matloop.units import EV_PER_A3_TO_GPA

# row precision per unit loss weight: 1/σ² with σ_E = 1e-3 eV/atom at w_E = 1,
# σ_F = 0.03 eV/Å at w_F = 0.02 and σ_S = 1e-3 eV/Å³ at w_S = 1
PRECISION_PER_WEIGHT = {"energy": 1e6, "forces": 1.0 / (0.02 * 0.03**2), "stress": 1e6}
FORCE_RATIO_FACTORS = (0.1, 1 / 3, 1.0, 3.0, 10.0)


def kind_weights_from_loss(loss: Any) -> dict[str, float]:
    """Row precisions (relative) of energy/atom, force and stress rows from the loss weights."""
    out = {}
    for kind, per_weight in PRECISION_PER_WEIGHT.items():
        w = float(getattr(loss, kind, 0.0) or 0.0)
        if w > 0:
            out[kind] = w * per_weight
    return out


def _chunks(structures: Iterable[Atoms], chunk_atoms: int) -> Iterator[list[Atoms]]:
    chunk, n = [], 0
    for atoms in structures:
        chunk.append(atoms)
        n += len(atoms)
        if n >= chunk_atoms:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def composition_counts(graph, n_elements: int) -> np.ndarray:
    """Atoms of each element per structure (S, n_elements): the E0 columns of energy rows."""
    counts = np.zeros((graph.n_structures, n_elements))
    np.add.at(counts, (graph.structure.numpy(), graph.species.numpy()), 1.0)
    return counts


def _pad(rows: np.ndarray, n_extra: int) -> np.ndarray:
    """Rows with `n_extra` zero columns appended (E0 does not act on forces or stress)."""
    return np.hstack([rows, np.zeros((len(rows), n_extra))])


def chunk_graph(model, chunk: list[Atoms]):
    """One float64 graph of a list of structures."""
    return collate([model.graph(a).to(torch.float64) for a in chunk])


def _labels(atoms: Atoms) -> tuple[float, np.ndarray | None, np.ndarray | None]:
    from matloop.data.dataset import energy_of, forces_of, stress_of

    return energy_of(atoms), forces_of(atoms), stress_of(atoms)


def chunk_rows(model, chunk: list[Atoms], kinds: set[str], graph=None) -> dict[str, tuple]:
    """Design rows and targets {kind: (rows (R, P), targets (R,))} of a list of structures.

    Targets have the fixed (non-fitted) part and Σ E0 removed; energy rows are per atom; rows
    of structures without that label get NaN targets (dropped by NormalEquations.add). Rows
    have P + n_elements columns: the last ones, the composition fractions, correct E0.
    """
    if graph is None:
        graph = chunk_graph(model, chunk)
    want_f, want_s = "forces" in kinds, "stress" in kinds
    d = basis_of(model).design_rows(graph, forces=want_f, stress=want_s)
    n = d.n_atoms.double().numpy()
    labels = [_labels(a) for a in chunk]
    e_ref = np.array(
        [e - model.reference_energy(a) for (e, _, _), a in zip(labels, chunk, strict=True)]
    )
    n_el = len(model.elements)
    out = {
        "energy": (
            np.hstack([d.energy.double().numpy(), composition_counts(graph, n_el)]) / n[:, None],
            (e_ref - d.offset_energy.double().numpy()) / n,
        )
    }
    if want_f and d.forces is not None:
        f_ref = np.concatenate(
            [
                f if f is not None else np.full((len(a), 3), np.nan)
                for (_, f, _), a in zip(labels, chunk, strict=True)
            ]
        ).reshape(-1)
        offset = 0.0 if d.offset_forces is None else d.offset_forces.double().numpy()
        out["forces"] = (_pad(d.forces.double().numpy(), n_el), f_ref - offset)
    if want_s and d.virial is not None:
        volumes = graph.volumes.double().numpy()
        rows, targets = [], []
        for s, (_, _, stress) in enumerate(labels):
            ok = stress is not None and volumes[s] > 0
            v = volumes[s] if volumes[s] > 0 else 1.0
            rows.append(_pad(d.virial[s].double().numpy() / v, n_el))
            off = 0.0 if d.offset_virial is None else d.offset_virial[s].double().numpy() / v
            targets.append(stress - off if ok else np.full(6, np.nan))
        out["stress"] = (np.concatenate(rows), np.concatenate(targets))
    return out


# floats of training design rows kept for leave-one-structure-out errors (160 MB)
PRESS_GROUP_VALUES = 20_000_000


class PressSample:
    """Training rows kept for leave-one-out (PRESS) errors of the energies.

    Every structure's energy and force rows while they fit in `max_values` floats (then each
    structure is left out whole), else a uniform sample (reservoir) of at most `capacity`
    energy rows (each energy is left out, its structure's forces stay in the fit).
    """

    def __init__(self, capacity: int, seed: int = 0, max_values: int = PRESS_GROUP_VALUES):
        self.capacity, self.max_values = int(capacity), int(max_values)
        self.rows: list[np.ndarray] = []
        self.targets: list[float] = []
        self.groups: list[tuple] | None = [] if capacity > 0 else None
        self.n_values, self.seen = 0, 0
        self.rng = np.random.default_rng(seed)

    def add(
        self, sizes: list[int], energy: tuple, forces: tuple | None, stress: tuple | None = None
    ) -> None:
        """Rows of one chunk: atoms per structure, (rows, targets) of energies, forces and
        (optional) stresses."""
        x_e, y_e = energy
        if self.groups is not None and forces is not None:
            x_f, y_f = forces
            self.n_values += x_e.size + x_f.size + (0 if stress is None else stress[0].size)
            if self.n_values <= self.max_values:
                ends = np.cumsum([3 * n for n in sizes])
                for s, (lo, hi) in enumerate(zip(ends - 3 * np.asarray(sizes), ends, strict=True)):
                    group = [x_e[s].copy(), y_e[s], x_f[lo:hi].copy(), y_f[lo:hi], None, None]
                    if stress is not None:
                        group[4:] = (
                            stress[0][6 * s : 6 * s + 6].copy(),
                            stress[1][6 * s : 6 * s + 6],
                        )
                    self.groups.append(tuple(group))
            else:
                self.groups = None  # too large: energies only
        for row, y in zip(x_e, y_e, strict=True):
            self._add_energy(row, y)

    def _add_energy(self, row: np.ndarray, y: float) -> None:
        if not np.isfinite(y) or self.capacity == 0:
            return
        self.seen += 1
        if len(self.rows) < self.capacity:
            self.rows.append(row.copy())
            self.targets.append(float(y))
        else:
            slot = int(self.rng.integers(self.seen))
            if slot < self.capacity:
                self.rows[slot], self.targets[slot] = row.copy(), float(y)

    def z_scores(self, columns, coefficients, root, noise_e: float, noise_f: float) -> np.ndarray:
        """PRESS z-scores of the energies per atom for the coefficient columns `columns`."""
        if self.groups:
            out = []
            for x_e, y_e, x_f, y_f, *_ in self.groups:
                if not np.isfinite(y_e):
                    continue
                keep = np.isfinite(y_f)
                x = np.vstack([x_e[None, columns], x_f[keep][:, columns]])
                y = np.concatenate([[y_e], y_f[keep]])
                noise = np.concatenate([[noise_e], np.full(int(keep.sum()), noise_f)])
                out.append(group_press_z(x, y, coefficients, root, noise))
            return np.array(out)
        if not self.rows:
            return np.zeros(0)
        x = np.asarray(self.rows)[:, columns]
        return press_z(x, np.asarray(self.targets), coefficients, root, noise_e)

    def n_stress_groups(self) -> int:
        """Structures kept whole (:meth:`loo_errors`) that carry a stress."""
        return sum(g[5] is not None and np.isfinite(g[5]).all() for g in self.groups or [])

    def loo_errors(
        self, columns, coefficients, root, noise_variance: dict[str, float]
    ) -> dict[str, tuple[float, int]]:
        """{kind: (sum of squared errors, count)} of every training structure kept whole,
        predicted by the fit without it (rows of the kinds in `noise_variance` were fitted).

        Leaving out the rows X (noise D) of a structure moves the posterior mean m to
        m − ΣXᵀM⁻¹r with M = D − XΣXᵀ and r = y − Xm (α, β held), so no refit is needed.
        """
        out = {k: [0.0, 0] for k in ("energy", "forces", "stress")}
        for x_e, y_e, x_f, y_f, x_s, y_s in self.groups or []:
            rows = {
                "energy": (x_e[None, columns], np.atleast_1d(y_e)),
                "forces": (x_f[:, columns], y_f),
            }
            if x_s is not None:
                rows["stress"] = (x_s[:, columns], y_s)
            rows = {k: (x[np.isfinite(y)], y[np.isfinite(y)]) for k, (x, y) in rows.items()}
            fitted = [k for k in rows if k in noise_variance and len(rows[k][1])]
            if not fitted:
                continue
            x = np.vstack([rows[k][0] for k in fitted])
            y = np.concatenate([rows[k][1] for k in fitted])
            d = np.concatenate([np.full(len(rows[k][1]), noise_variance[k]) for k in fitted])
            proj = x @ root
            m = np.diag(d) - proj @ proj.T
            try:
                chol = scipy.linalg.cho_factor(m, lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                continue
            u = scipy.linalg.cho_solve(chol, y - x @ coefficients, check_finite=False)
            left_out = coefficients - root @ (proj.T @ u)
            for kind, (xk, yk) in rows.items():
                out[kind][0] += float(np.sum((yk - xk @ left_out) ** 2))
                out[kind][1] += len(yk)
        return {k: (sse, n) for k, (sse, n) in out.items() if n}


def accumulate(
    model,
    structures: Iterable[Atoms],
    kinds: set[str],
    *,
    chunk_atoms: int = 512,
    sample: FeatureSample | None = None,
    press: PressSample | None = None,
    progress: bool = False,
    desc: str = "ace: design rows",
) -> NormalEquations:
    """Normal equations of every kind in `kinds` over any iterable of labelled structures.

    Memory is O(P²) plus one chunk of design rows; `sample` (optional) collects per-atom
    features for the active set on the way, `press` (optional) rows for leave-one-out errors.
    """
    from tqdm.auto import tqdm

    basis = basis_of(model)
    eqs = NormalEquations(int(basis.n_coefficients) + len(model.elements))
    total = len(structures) if hasattr(structures, "__len__") else None
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for chunk in _chunks(structures, chunk_atoms):
        graph = chunk_graph(model, chunk)
        rows = chunk_rows(model, chunk, kinds, graph)
        for kind, (x, y) in rows.items():
            eqs.add(kind, x, y)
        if press is not None:
            press.add(
                [len(a) for a in chunk], rows["energy"], rows.get("forces"), rows.get("stress")
            )
        if sample is not None:
            with torch.no_grad():
                feats = basis.atom_features(graph).double().numpy()
            sample.add(feats, graph.species.numpy())
        bar.update(len(chunk))
    bar.close()
    return eqs


def choose_posterior(
    train: NormalEquations,
    valid: NormalEquations | None,
    kind_weights: dict[str, float],
    score_weights: dict[str, float],
    params: AceFitParams,
    groups: np.ndarray | None = None,
) -> tuple[Posterior, dict[str, Any]]:
    """Evidence- and validation-chosen posteriors; returns the kept one and a report of both."""
    factors = (1.0,)
    if params.weight_search and {"energy", "forces"} <= set(train.kinds) & set(kind_weights):
        factors = FORCE_RATIO_FACTORS
    has_valid = valid is not None and valid.n_rows() > 0
    evidence_runs, best_ev, best_val = [], None, None
    for factor in factors:
        kw = dict(kind_weights)
        if "forces" in kw:
            kw["forces"] *= factor
        post, system = evidence_fit(train, kw)
        score = validation_score(post.coefficients, valid, score_weights) if has_valid else None
        evidence_runs.append(
            {"force_ratio_factor": factor, "log_evidence": post.log_evidence, "valid_score": score}
        )
        if best_ev is None or post.log_evidence > best_ev[0].log_evidence:
            best_ev = (post, kw, score, factor)
        if has_valid:
            for ratio, val in ridge_path(system, valid, score_weights):
                if best_val is None or val < best_val[2]:
                    best_val = (ratio, factor, val, system, kw)
    post_ev, kw_ev, score_ev, factor_ev = best_ev
    report: dict[str, Any] = {
        "evidence": {**post_ev.summary(), "valid_score": score_ev, "force_ratio_factor": factor_ev}
    }
    report["evidence"]["runs"] = evidence_runs
    if params.ard == "order" and groups is not None and len(np.unique(groups)) > 1:
        ard = ard_fit(train, kw_ev, groups, per_kind_noise=False, start=post_ev)
        score = validation_score(ard.coefficients, valid, score_weights) if has_valid else None
        report["ard"] = {**ard.summary(), "valid_score": score}
        if ard.log_evidence > post_ev.log_evidence:
            post_ev, score_ev = ard, score
    chosen, method, kept_score, kept_factor = post_ev, "evidence", score_ev, factor_ev
    if has_valid:
        ratio, factor, score_val, system, kw = best_val
        post_val = posterior_for_ratio(system, kw, ratio)
        report["validation"] = {
            **post_val.summary(),
            "ratio_alpha_over_beta": ratio,
            "force_ratio_factor": factor,
            "valid_score": score_val,
        }
        use_val = params.regularisation == "validation" or (
            params.regularisation == "auto" and score_val < score_ev
        )
        if use_val:
            chosen, method, kept_score, kept_factor = post_val, "validation", score_val, factor
    report["kept"] = method
    report["kept_valid_score"] = kept_score
    report["kept_force_ratio_factor"] = kept_factor
    return chosen, report


#: stress loss weights tried by ``fit.stress_search`` beside the fit without stress rows
STRESS_SEARCH_WEIGHTS = (1.0, 0.1)
#: weight of the stress MSE ((eV/Å³)²) in the validation loss that chooses among them: a stress
#: RMSE of 1 GPa counts like an energy RMSE of 0.62 meV/atom (or 4.4 meV/Å of force RMSE
#: at the default force weight), so stresses are fitted where that pays for what the energies
#: and forces lose, and left out where they disagree with the energies (a Pulay offset)
STRESS_SCORE_WEIGHT = 0.01
#: validation structures with a stress below which their loss is pooled with the training
#: structures' leave-one-out errors: with one, the search kept stresses with a 0.5 GPa offset in
#: 6 of 15 random 10 % splits of 12 strained EMT Cu cells (0 of 15 pooled)
MIN_STRESS_STRUCTURES = 3


def stress_search_applies(params: AceFitParams, kind_weights: dict[str, float], has_valid: bool):
    """Whether `fit_ace` accumulates stress rows to try them (see ``fit.stress_search``)."""
    return (
        params.stress_search
        and has_valid
        and "stress" not in kind_weights
        and {"energy", "forces"} & set(kind_weights) != set()
    )


def with_stress_rows(
    train: NormalEquations,
    valid: NormalEquations | None,
    kind_weights: dict[str, float],
    score_weights: dict[str, float],
    params: AceFitParams,
    groups: np.ndarray | None,
    chosen: tuple[Posterior, dict[str, Any]],
    loo: Callable[[Posterior], dict[str, tuple[float, int]]] | None = None,
    n_loo_stress: int = 0,
) -> tuple[Posterior, dict[str, Any]]:
    """`chosen` (fitted without stress rows) or a fit with stress rows (loss weights
    STRESS_SEARCH_WEIGHTS), whichever has the lowest validation loss when the stress MSE counts
    with STRESS_SCORE_WEIGHT; the report gains ``stress_search``. Stress rows must be in
    `train` and `valid` but not in `kind_weights`.

    With fewer than MIN_STRESS_STRUCTURES validation structures with a stress, one or two
    structures would decide: the losses then pool the validation errors with the leave-one-out
    errors of the training structures (`loo`, `n_loo_stress` of them with a stress), or, with
    too few of those as well, the search is skipped (``stress_search["skipped"]`` says why).
    """
    post, report = chosen
    base = report.get("kept_valid_score")
    if (
        valid is None
        or train.n_rows("stress") == 0
        or valid.n_rows("stress") == 0
        or base is None
        or not math.isfinite(base)
    ):
        return chosen
    n_valid = valid.n_rows("stress") // 6
    pool = None
    if n_valid < MIN_STRESS_STRUCTURES:
        if loo is None or n_valid + n_loo_stress < MIN_STRESS_STRUCTURES:
            n_loo = n_loo_stress if loo is not None else 0
            report["stress_search"] = {
                "skipped": f"{n_valid} validation and {n_loo} leave-one-out training "
                f"structure(s) with a stress, fewer than {MIN_STRESS_STRUCTURES}: too few to "
                "tell stresses consistent with the energies from offset ones",
                "stress_weight": 0.0,
            }
            return post, report
        pool = loo
    factor = float(report.get("kept_force_ratio_factor") or 1.0)
    kw = dict(kind_weights)
    if "forces" in kw:
        kw["forces"] *= factor
    fixed = params.model_copy(update={"weight_search": False})

    def mse(post: Posterior, kind: str, extra: dict) -> float:
        n = valid.n_rows(kind)
        sse = valid.mse(post.coefficients, kind) * n if n else 0.0
        sse_loo, n_loo = extra.get(kind, (0.0, 0))
        return (sse + sse_loo) / max(n + n_loo, 1)

    def entry(weight: float, post: Posterior, score: float) -> dict[str, float]:
        stress_mse = valid.mse(post.coefficients, "stress")
        out = {
            "stress_weight": weight,
            "valid_score": score,
            "valid_score_with_stress": score + STRESS_SCORE_WEIGHT * stress_mse,
            "stress_rmse_gpa": EV_PER_A3_TO_GPA * math.sqrt(stress_mse),
        }
        out["score"] = out["valid_score_with_stress"]
        if pool is not None:
            extra = pool(post)
            loss = sum(w * mse(post, k, extra) for k, w in score_weights.items() if w > 0)
            out["score"] = loss + STRESS_SCORE_WEIGHT * mse(post, "stress", extra)
        return out

    tried = [entry(0.0, post, base)]
    best = (tried[0]["score"], post, report)
    for weight in STRESS_SEARCH_WEIGHTS:
        kw_s = {**kw, "stress": weight * PRECISION_PER_WEIGHT["stress"]}
        post_s, report_s = choose_posterior(train, valid, kw_s, score_weights, fixed, groups)
        if report_s["kept_valid_score"] is None:
            continue
        tried.append(entry(weight, post_s, float(report_s["kept_valid_score"])))
        if tried[-1]["score"] < best[0]:
            report_s["kept_force_ratio_factor"] = factor
            best = (tried[-1]["score"], post_s, report_s)
    _, post, report = best
    kept = min(tried, key=lambda t: t["score"])["stress_weight"]
    report["stress_search"] = {
        "tried": tried,
        "stress_weight": kept,
        "stress_score_weight": STRESS_SCORE_WEIGHT,
        "scored_on": "validation" if pool is None else "validation+loo",
    }
    return post, report


def _store(model, post: Posterior, t_matrix: np.ndarray, t_offset: np.ndarray) -> dict:
    """Coefficients, E0 corrections and posterior into the model; returns the ΔE0 (eV)."""
    p = int(basis_of(model).n_coefficients)
    full = t_matrix @ post.coefficients + t_offset
    coef = torch.as_tensor(full[:p], dtype=torch.float64)
    setter = getattr(model, "set_coefficients", None)
    if setter is not None:
        setter(coef)
    else:
        model.coefficients = coef
    shift = dict(zip(model.elements, full[p:].tolist(), strict=True))
    model.set_reference_energies({el: model.e0[el] + shift[el] for el in model.elements})
    target = posterior_of(model)
    if target is None:
        raise TypeError("the model has no AcePosterior submodule 'posterior'")
    # rows of the root for the E0 columns too: energy σ includes E0's dependence on c
    target.set_posterior(t_matrix @ post.covariance_root, post.noise_variance)
    return shift


def _press_z(model, chosen) -> np.ndarray:
    """PRESS z-scores (:class:`PressSample`) of the training energies for the chosen basis."""
    n_el = len(model.elements)
    p_big = len(chosen.data.train.blocks["energy"].rhs) - n_el
    post = chosen.post
    return chosen.data.press.z_scores(
        np.concatenate([chosen.columns, p_big + np.arange(n_el)]),
        chosen.t_matrix @ post.coefficients + chosen.t_offset,
        chosen.t_matrix @ post.covariance_root,
        float(post.noise_variance["energy"]),
        float(post.noise_variance.get("forces", 0.0)),
    )


def _calibrate(
    model, structures: Iterable[Atoms], chunk_atoms: int, press: np.ndarray | None = None
) -> dict[str, Any]:
    """Errors and unscaled σ on `structures`; sets the σ scales for 95 % coverage.

    Forces: the validation force components. Energies: the validation energies per atom
    pooled with the training energies' PRESS z-scores (`press`): 20–30 validation energies
    alone leave the 95 % quantile, hence the scale, uncertain by tens of per cent.
    """
    post = posterior_of(model)
    root = post.covariance_root.numpy()
    noise_e, noise_f = (float(x) for x in post.noise_variance[:2])
    coef = np.concatenate([_coefficients(model), np.zeros(len(model.elements))])
    e_err, e_sig, f_err, f_sig = [], [], [], []
    for chunk in _chunks(structures, chunk_atoms):
        rows = chunk_rows(model, chunk, {"forces"})
        x, y = rows["energy"]
        keep_e = np.isfinite(y)
        e_err.append((x @ coef - y)[keep_e])
        e_sig.append(np.sqrt(((x @ root) ** 2).sum(1) + noise_e)[keep_e])
        if "forces" in rows:
            xf, yf = rows["forces"]
            var = (((xf @ root) ** 2).sum(1) + noise_f).reshape(-1, 3)
            sig = np.repeat(np.sqrt(var.mean(1)), 3)
            keep = np.isfinite(yf)
            f_err.append((xf @ coef - yf)[keep])
            f_sig.append(sig[keep])
    out: dict[str, Any] = {}
    scales = [1.0, 1.0]
    press = np.zeros(0) if press is None else np.asarray(press, float)
    press = press[np.isfinite(press)]
    for k, (name, err, sig) in enumerate((("energy", e_err, e_sig), ("forces", f_err, f_sig))):
        err = np.concatenate(err) if err else np.zeros(0)
        sig = np.concatenate(sig) if sig else np.zeros(0)
        extra = press if name == "energy" else np.zeros(0)
        if len(err) + len(extra) == 0:
            continue
        # z-scores of both sources: the scale is the same whatever σ they came with
        z = np.concatenate([err / np.maximum(sig, 1e-300), extra])
        scales[k] = calibration_scale(z, np.ones_like(z))
        out[name] = {"scale": scales[k], "n_validation": len(err)}
        if len(err):
            out[name]["unscaled"] = coverage_stats(err, sig)
            out[name]["scaled"] = coverage_stats(err, scales[k] * sig)
        if len(extra):
            out[name]["n_press"] = len(extra)
            out[name]["press_unscaled"] = coverage_stats(extra, np.ones_like(extra))
            ratio = np.abs(err) / np.maximum(sig, 1e-300)
            # the earlier rule (plain 95 % quantile of the validation energies), for comparison
            out[name]["validation_quantile_scale"] = (
                float(np.quantile(ratio, 0.95)) / 1.959964 if len(err) else None
            )
    post.sigma_scale = torch.tensor(scales, dtype=torch.float64)
    return out


_ERROR_NAMES = {
    "energy": ("energy_rmse_mev_per_atom", 1000.0),
    "forces": ("force_rmse_ev_per_a", 1.0),
    "stress": ("stress_rmse_gpa", EV_PER_A3_TO_GPA),
}


def _valid_errors(valid: NormalEquations | None, coef: np.ndarray) -> dict[str, float]:
    """RMSE of each kind on the validation normal equations (meV/atom, eV/Å, GPa)."""
    if valid is None:
        return {}
    out = {}
    for kind in valid.kinds:
        name, factor = _ERROR_NAMES[kind]
        out[name] = factor * math.sqrt(valid.mse(coef, kind))
    return out


def _coefficients(model) -> np.ndarray:
    return model.coefficients.detach().double().numpy()


@dataclass
class _Pass:
    """Everything one pass over the data gives for one (superset) basis."""

    params: Any  # AceParams of the basis the rows were computed with
    train: NormalEquations
    valid: NormalEquations | None
    sample: FeatureSample
    press: PressSample


@dataclass
class _Candidate:
    params: Any
    data: _Pass
    columns: np.ndarray  # coefficient columns of the candidate in its pass's basis
    n_coefficients: int
    post: Posterior
    report: dict
    t_matrix: np.ndarray
    t_offset: np.ndarray
    score: float
    valid_errors: dict


def _grade_reference(
    model,
    train_data,
    valid_data,
    grade_info: dict,
    chunk_atoms: int,
    max_atoms: int,
    seed: int = 0,
) -> torch.Tensor:
    """(n_elements,) eV/Å: for each element graded by the ``sigma`` rule (``grade_info``), the
    largest epistemic force std of its validation and training atoms (0 for the others).

    The validation atoms set it: with fewer atoms than features a fitted atom's own σ is
    lowered by its being fitted (measured, EMT Cu–Au, 974 atoms: training atoms ≤ 0.0012 eV/Å,
    validation atoms up to 0.055 eV/Å, so held-out frames of the same kind grade 0.1–0.3). An
    element without validation atoms therefore gets no grade (``"rule": "none"``). One more
    pass over the data (force rows only; its time is in the fit facts as
    ``active_set[k]["reference_seconds"]``); it stops once every such element has had
    `max_atoms` atoms, taking the training structures in a seeded random order when the set can
    be indexed (data files are often sorted by kind).
    """
    wanted = [k for k, v in grade_info.items() if v.get("rule") == "sigma"]
    n_el = len(model.elements)
    reference = torch.zeros(n_el, dtype=torch.float64)
    if not wanted:
        return reference
    start = time.perf_counter()
    root = posterior_of(model).covariance_root[: int(basis_of(model).n_coefficients)]
    seen = np.zeros(n_el, dtype=int)
    in_valid = np.zeros(n_el, dtype=int)
    structures = train_data
    if isinstance(train_data, Sequence):
        order = np.random.default_rng(seed).permutation(len(train_data))
        structures = (train_data[int(i)] for i in order)
    sources = [(True, valid_data or ()), (False, structures)]
    for is_valid, data in sources:
        for chunk in _chunks(data, chunk_atoms):
            graph = chunk_graph(model, chunk)
            with torch.no_grad():
                rows = basis_of(model).design_rows(graph, forces=True, stress=False)
                sigma = force_variance(rows.forces.double(), root).clamp(min=0).sqrt()
            species = graph.species.long()
            for k in wanted:
                mine = sigma[species == k]
                if len(mine):
                    reference[k] = max(float(reference[k]), float(mine.max()))
            counts = np.bincount(species.numpy(), minlength=n_el)
            seen += counts
            if is_valid:
                in_valid += counts
            elif all(seen[k] >= max_atoms for k in wanted):
                break
    for k in wanted:
        if in_valid[k] == 0:
            reference[k] = 0.0
            grade_info[k]["rule"] = "none"
            grade_info[k]["why"] = "no validation atoms of this element to set the σ scale"
            continue
        grade_info[k]["reference_force_std"] = float(reference[k])
        grade_info[k]["validation_atoms"] = int(in_valid[k])
        grade_info[k]["reference_seconds"] = round(time.perf_counter() - start, 2)
    return reference


def _one_pass(model, train_data, valid_data, kinds, params: AceFitParams, seed: int, progress):
    sample = FeatureSample(len(model.elements), params.active_set_atoms, seed=seed)
    press = PressSample(params.press_energies, seed=seed)
    train = accumulate(
        model,
        train_data,
        kinds,
        chunk_atoms=params.chunk_atoms,
        sample=sample,
        press=press,
        progress=progress,
        desc="ace: training rows",
    )
    if train.n_rows() == 0:
        raise DataError("the training set is empty")
    valid = None
    if valid_data is not None:
        valid = accumulate(
            model,
            valid_data,
            kinds,
            chunk_atoms=params.chunk_atoms,
            progress=progress,
            desc="ace: validation rows",
        )
    return _Pass(model.params, train, valid, sample, press)


#: Å added to the model's cutoff by ``fit.cutoff_search``
CUTOFF_SEARCH_STEP = 0.5
#: validation structures below which ``fit.cutoff_search`` is skipped: a few structures would
#: choose the cutoff (and a small fit gains little from it)
MIN_CUTOFF_SEARCH_STRUCTURES = 10


def searched_cutoffs(model_params, fit: AceFitParams, valid_data) -> list[float] | None:
    """The candidate cutoffs (Å) of a fit: ``fit.basis_cutoffs``, else with ``fit.cutoff_search``
    and enough validation structures the model's cutoff and CUTOFF_SEARCH_STEP more, else None
    (the model's own cutoff only)."""
    if fit.basis_cutoffs is not None:
        return list(fit.basis_cutoffs)
    n_valid = len(valid_data) if hasattr(valid_data, "__len__") else 0
    if fit.cutoff_search and n_valid >= MIN_CUTOFF_SEARCH_STRUCTURES:
        return [model_params.cutoff, model_params.cutoff + CUTOFF_SEARCH_STEP]
    return None


def _search_grid(
    model_params, fit: AceFitParams, n_el: int, cutoffs: list[float] | None = None
) -> list[tuple[Any, list[Any]]]:
    """[(superset params of one pass, [candidate params nested in it])]."""
    own = model_params.degrees(n_el)
    degrees = sorted(set(fit.basis_degrees or [max(own)]))
    if max(degrees) > max(own) + 1e-9:
        raise ConfigError(
            f"basis_degrees {degrees} go above the model's max degree {max(own)}: "
            "the candidates are truncations of the model's basis"
        )
    grid = []
    for rc in cutoffs or [model_params.cutoff]:
        for lam in fit.basis_radial_scales or [model_params.radial_scale]:
            top = model_params.model_copy(update={"cutoff": rc, "radial_scale": lam})
            subs = [
                top.model_copy(
                    update={
                        "max_degree_per_order": [min(d, o) for o in own],
                        "n_radial": min(top.radial_count(n_el), max(1, int(d))),
                    }
                )
                for d in degrees
            ]
            grid.append((top, subs))
    return grid


def _solve_candidate(model, data: _Pass, params, kind_weights, score_weights, fit_params):
    """Fit the candidate basis `params` (nested in `data`'s basis) from `data`'s rows."""
    from matloop.models.ace.basis import nested_columns

    # the model holds `data`'s (largest) basis while its nested candidates are solved
    sub = model.basis_for(params)
    cols = nested_columns(sub, basis_of(model))
    n_el = len(model.elements)
    p_big = int(basis_of(model).n_coefficients)
    full_cols = np.concatenate([cols, p_big + np.arange(n_el)])
    train = data.train.subset(full_cols)
    t_matrix, t_offset = profile_transform(train, len(cols))
    train_t = train.transformed(t_matrix, t_offset)
    valid = None
    if data.valid is not None:
        valid = data.valid.subset(full_cols).transformed(t_matrix, t_offset)
    groups = np.array([len(f.ls) for f in sub.functions] * n_el)
    post, report = choose_posterior(train_t, valid, kind_weights, score_weights, fit_params, groups)
    if "stress" not in kind_weights and "stress" in train_t.kinds:
        press = data.press

        def loo(post: Posterior) -> dict[str, tuple[float, int]]:
            return press.loo_errors(
                full_cols,
                t_matrix @ post.coefficients + t_offset,
                t_matrix @ post.covariance_root,
                post.noise_variance,
            )

        post, report = with_stress_rows(
            train_t,
            valid,
            kind_weights,
            score_weights,
            fit_params,
            groups,
            (post, report),
            loo,
            press.n_stress_groups(),
        )
    kept = report["kept_valid_score"]
    score = math.inf if kept is None else float(kept)
    return _Candidate(
        params,
        data,
        cols,
        len(cols),
        post,
        report,
        t_matrix,
        t_offset,
        score,
        _valid_errors(valid, post.coefficients),
    )


def _pick(candidates: list[_Candidate], tolerance: float) -> _Candidate:
    """The fewest coefficients within `tolerance` of the lowest validation loss."""
    best = min(c.score for c in candidates)
    if not math.isfinite(best):
        return candidates[-1]
    ok = [c for c in candidates if c.score <= (1.0 + tolerance) * best]
    return min(ok, key=lambda c: (c.n_coefficients, c.score))


def _describe(c: _Candidate) -> dict[str, Any]:
    return {
        "cutoff": c.params.cutoff,
        "radial_scale": c.params.radial_scale,
        "max_degree_per_order": list(c.params.max_degree_per_order),
        "n_coefficients": c.n_coefficients,
        "valid_score": c.score,
        "valid_errors": c.valid_errors,
        "kept": c.report["kept"],
    }


# P × P float64 matrices a fit holds at once: normal equations per kind and split, and the
# eigendecomposition's copies (measured 10.7 GB at P = 12,605 with energies, forces, validation)
_MATRICES_PER_KIND_AND_SPLIT, _SOLVER_MATRICES = 1, 4


def check_fit_memory(model, n_kinds: int, has_valid: bool) -> None:
    """Refuse, before any work, a basis whose fit needs more memory than is available."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - a dependency of dask.distributed
        return
    n_coef = int(basis_of(model).n_coefficients) + len(model.elements)
    splits = 2 if has_valid else 1
    matrices = _MATRICES_PER_KIND_AND_SPLIT * n_kinds * splits + _SOLVER_MATRICES
    need = 8.0 * n_coef**2 * matrices
    available = float(psutil.virtual_memory().available)
    if need > available:
        degree = max(model.params.max_degree_per_order or [0.0])
        raise ConfigError(
            f"the ace basis has {n_coef:,} coefficients: fitting it needs about "
            f"{need / 2**30:.1f} GiB but {available / 2**30:.1f} GiB are available; lower "
            f"model.params.max_degree (now {degree:g}) or correlation_order"
        )


def fit_ace(
    model,
    train_data: Iterable[Atoms],
    valid_data: Iterable[Atoms] | None,
    config: Any,
    *,
    out_dir: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the coefficients and posterior of `model` in place (E0 must already be set).

    `train_data` and `valid_data` are any iterables of labelled structures (a Dataset, a list,
    a lazy reader; `valid_data` is read once per candidate cutoff/radial scale and once more to
    calibrate). With ``fit.basis_*`` candidates the model's basis is replaced by the chosen
    one (recorded in ``basis_search``). Returns JSON-able facts about the fit.
    """
    start = time.perf_counter()
    params = getattr(model.params, "fit", None) or AceFitParams()
    from matloop.models import family_loss

    loss = family_loss(config, "ace")
    kind_weights = kind_weights_from_loss(loss) if loss is not None else {"energy": 1e6}
    if not kind_weights:
        raise DataError("the ace fit needs a positive training.loss weight (energy/forces/stress)")
    score_weights = {
        k: float(getattr(loss, k, 0.0)) if loss is not None else 1.0 for k in kind_weights
    }
    if posterior_of(model) is None:
        raise TypeError("the model has no AcePosterior submodule 'posterior'")
    cutoffs = searched_cutoffs(model.params, params, valid_data)
    searching = bool(params.basis_degrees or cutoffs or params.basis_radial_scales)
    grid = _search_grid(model.params, params, len(model.elements), cutoffs) if searching else None
    kinds = set(kind_weights)
    if stress_search_applies(params, kind_weights, valid_data is not None):
        kinds.add("stress")
    check_fit_memory(model, len(kinds), valid_data is not None)
    if searching and valid_data is None:
        raise ConfigError("choosing the ace basis (fit.basis_*) needs validation data")
    dtype = model.dtype
    model.to(torch.float64)  # design rows in float64 whatever the model's evaluation dtype
    # BLAS threads as many as torch's (default 1): on a shared 2-core machine an
    # oversubscribed eigendecomposition was measured 10–20× slower than on one thread
    limits = threadpool_limits(limits=torch.get_num_threads(), user_api="blas")
    try:
        seed = int(getattr(getattr(config, "training", None), "seed", 0) or 0)
        candidates, t_rows = [], 0.0
        for top, subs in grid or [(model.params, [model.params])]:
            t0 = time.perf_counter()
            if top is not model.params:
                model.set_basis(top)
            data = _one_pass(model, train_data, valid_data, kinds, params, seed, progress)
            t_rows += time.perf_counter() - t0
            for sub in subs:
                candidates.append(
                    _solve_candidate(model, data, sub, kind_weights, score_weights, params)
                )
        chosen = _pick(candidates, params.basis_tolerance)
        if searching:
            model.set_basis(chosen.params)
        post, report = chosen.post, chosen.report
        e0_shift = _store(model, post, chosen.t_matrix, chosen.t_offset)
        n_coef = int(basis_of(model).n_coefficients)
        grades, grade_info = grade_map(chosen.data.sample.columns(chosen.columns), n_coef)
        posterior_of(model).grade_map = torch.as_tensor(grades, dtype=torch.float64)
        posterior_of(model).grade_reference = _grade_reference(
            model,
            train_data,
            valid_data,
            grade_info,
            params.chunk_atoms,
            params.active_set_atoms,
            seed,
        )
        t_solve = time.perf_counter() - start - t_rows
        calibration = None
        if params.calibrate:
            press = _press_z(model, chosen)
            has_valid = chosen.data.valid is not None and chosen.data.valid.n_rows() > 0
            calibration = _calibrate(
                model, valid_data if has_valid else [], params.chunk_atoms, press
            )
    finally:
        model.to(dtype)
        limits.restore_original_limits()
    out = {
        "n_coefficients": int(chosen.n_coefficients),
        "n_rows": {k: chosen.data.train.n_rows(k) for k in chosen.data.train.kinds},
        "e0_correction_ev": e0_shift,
        "row_precision_per_kind": kind_weights,
        "stress_search": report.get("stress_search"),
        "regularisation": report,
        "kept": report["kept"],
        "alpha": post.summary()["alpha"],
        "beta": post.summary()["beta"],
        "effective_parameters": float(post.gamma),
        "noise_std": {k: math.sqrt(v) for k, v in post.noise_variance.items()},
        "valid_errors": chosen.valid_errors,
        "calibration": calibration,
        "active_set": grade_info,
        "rows_seconds": round(t_rows, 2),
        "solve_seconds": round(t_solve, 2),
        "fit_seconds": round(time.perf_counter() - start, 2),
    }
    if searching:
        out["basis_search"] = {
            "candidates": [_describe(c) for c in candidates],
            "tolerance": params.basis_tolerance,
            "chosen": _describe(chosen),
        }
    return out
