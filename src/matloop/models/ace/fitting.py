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
``forces_std``, scaled on the validation split so that 95 % of its errors lie within ±1.96σ,
and the MaxVol active set of training atoms gives the extrapolation grade
(:mod:`matloop.models.ace.uncertainty`).

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
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from ase import Atoms
from threadpoolctl import threadpool_limits

from matloop.errors import DataError
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
    grade_map,
    posterior_of,
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


def accumulate(
    model,
    structures: Iterable[Atoms],
    kinds: set[str],
    *,
    chunk_atoms: int = 512,
    sample: FeatureSample | None = None,
    progress: bool = False,
    desc: str = "ace: design rows",
) -> NormalEquations:
    """Normal equations of every kind in `kinds` over any iterable of labelled structures.

    Memory is O(P²) plus one chunk of design rows; `sample` (optional) collects per-atom
    features for the active set on the way.
    """
    from tqdm.auto import tqdm

    basis = basis_of(model)
    eqs = NormalEquations(int(basis.n_coefficients) + len(model.elements))
    total = len(structures) if hasattr(structures, "__len__") else None
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for chunk in _chunks(structures, chunk_atoms):
        graph = chunk_graph(model, chunk)
        for kind, (rows, targets) in chunk_rows(model, chunk, kinds, graph).items():
            eqs.add(kind, rows, targets)
        if sample is not None:
            with torch.no_grad():
                feats = basis.atom_features(graph).double().numpy()
            sample.add(feats, graph.species.numpy())
        bar.update(len(chunk))
    bar.close()
    return eqs


def _groups(model) -> np.ndarray | None:
    """Correlation order of every coefficient (from ``basis.describe()``), or None."""
    describe = getattr(basis_of(model), "describe", None)
    if describe is None:
        return None
    return np.array([int(entry["rank"]) for entry in describe()])


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
            best_ev = (post, kw, score)
        if has_valid:
            for ratio, val in ridge_path(system, valid, score_weights):
                if best_val is None or val < best_val[2]:
                    best_val = (ratio, factor, val, system, kw)
    post_ev, kw_ev, score_ev = best_ev
    report: dict[str, Any] = {"evidence": {**post_ev.summary(), "valid_score": score_ev}}
    report["evidence"]["runs"] = evidence_runs
    if params.ard == "order" and groups is not None and len(np.unique(groups)) > 1:
        ard = ard_fit(train, kw_ev, groups, per_kind_noise=False, start=post_ev)
        score = validation_score(ard.coefficients, valid, score_weights) if has_valid else None
        report["ard"] = {**ard.summary(), "valid_score": score}
        if ard.log_evidence > post_ev.log_evidence:
            post_ev, score_ev = ard, score
    chosen, method = post_ev, "evidence"
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
            chosen, method = post_val, "validation"
    report["kept"] = method
    return chosen, report


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


def _calibrate(model, structures: Iterable[Atoms], chunk_atoms: int) -> dict[str, Any]:
    """Errors and unscaled σ on `structures`; sets the σ scales for 95 % coverage."""
    post = posterior_of(model)
    root = post.covariance_root.numpy()
    noise_e, noise_f = (float(x) for x in post.noise_variance[:2])
    coef = np.concatenate([_coefficients(model), np.zeros(len(model.elements))])
    e_err, e_sig, f_err, f_sig = [], [], [], []
    for chunk in _chunks(structures, chunk_atoms):
        rows = chunk_rows(model, chunk, {"forces"})
        x, y = rows["energy"]
        e_err.append(x @ coef - y)
        e_sig.append(np.sqrt(((x @ root) ** 2).sum(1) + noise_e))
        if "forces" in rows:
            xf, yf = rows["forces"]
            var = (((xf @ root) ** 2).sum(1) + noise_f).reshape(-1, 3)
            sig = np.repeat(np.sqrt(var.mean(1)), 3)
            keep = np.isfinite(yf)
            f_err.append((xf @ coef - yf)[keep])
            f_sig.append(sig[keep])
    out: dict[str, Any] = {}
    scales = [1.0, 1.0]
    for k, (name, err, sig) in enumerate((("energy", e_err, e_sig), ("forces", f_err, f_sig))):
        if not err:
            continue
        err, sig = np.concatenate(err), np.concatenate(sig)
        if len(err) == 0:
            continue
        scales[k] = calibration_scale(err, sig)
        out[name] = {
            "scale": scales[k],
            "unscaled": coverage_stats(err, sig),
            "scaled": coverage_stats(err, scales[k] * sig),
        }
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
    a lazy reader; `valid_data` is read twice). Returns JSON-able facts about the fit.
    """
    start = time.perf_counter()
    params = getattr(model.params, "fit", None) or AceFitParams()
    loss = getattr(getattr(config, "training", None), "loss", None)
    kind_weights = kind_weights_from_loss(loss) if loss is not None else {"energy": 1e6}
    if not kind_weights:
        raise DataError("the ace fit needs a positive training.loss weight (energy/forces/stress)")
    score_weights = {
        k: float(getattr(loss, k, 0.0)) if loss is not None else 1.0 for k in kind_weights
    }
    if posterior_of(model) is None:
        raise TypeError("the model has no AcePosterior submodule 'posterior'")
    dtype = model.dtype
    model.to(torch.float64)  # design rows in float64 whatever the model's evaluation dtype
    # BLAS threads as many as torch's (default 1): on a shared 2-core machine an
    # oversubscribed eigendecomposition was measured 10–20× slower than on one thread
    limits = threadpool_limits(limits=torch.get_num_threads(), user_api="blas")
    try:
        kinds = set(kind_weights)
        seed = int(getattr(getattr(config, "training", None), "seed", 0) or 0)
        sample = FeatureSample(len(model.elements), params.active_set_atoms, seed=seed)
        train = accumulate(
            model,
            train_data,
            kinds,
            chunk_atoms=params.chunk_atoms,
            sample=sample,
            progress=progress,
            desc="ace: training rows",
        )
        if train.n_rows() == 0:
            raise DataError("the training set is empty")
        n_coef = int(basis_of(model).n_coefficients)
        t_matrix, t_offset = profile_transform(train, n_coef)
        train_full, train = train, train.transformed(t_matrix, t_offset)
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
        if valid is not None:
            valid = valid.transformed(t_matrix, t_offset)
        t_rows = time.perf_counter() - start
        post, report = choose_posterior(
            train, valid, kind_weights, score_weights, params, _groups(model)
        )
        e0_shift = _store(model, post, t_matrix, t_offset)
        grades, grade_info = grade_map(sample, n_coef)
        posterior_of(model).grade_map = torch.as_tensor(grades, dtype=torch.float64)
        t_solve = time.perf_counter() - start - t_rows
        calibration = None
        if params.calibrate and valid is not None and valid.n_rows() > 0:
            calibration = _calibrate(model, valid_data, params.chunk_atoms)
        valid_errors = _valid_errors(valid, post.coefficients)
    finally:
        model.to(dtype)
        limits.restore_original_limits()
    return {
        "n_coefficients": int(train.n_params),
        "n_rows": {k: train_full.n_rows(k) for k in train_full.kinds},
        "e0_correction_ev": e0_shift,
        "row_precision_per_kind": kind_weights,
        "regularisation": report,
        "kept": report["kept"],
        "alpha": post.summary()["alpha"],
        "beta": post.summary()["beta"],
        "effective_parameters": float(post.gamma),
        "noise_std": {k: math.sqrt(v) for k, v in post.noise_variance.items()},
        "valid_errors": valid_errors,
        "calibration": calibration,
        "active_set": grade_info,
        "rows_seconds": round(t_rows, 2),
        "solve_seconds": round(t_solve, 2),
        "fit_seconds": round(time.perf_counter() - start, 2),
    }
