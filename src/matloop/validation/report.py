"""The validation report of a trained potential: DIR/report.json and a self-contained report.html.

Checks (each pass/fail against :class:`~matloop.validation.config.Thresholds`): test errors,
test/train error ratio, F = −∇E by finite differences, translation/rotation/permutation
invariance and stress = strain derivative on real test structures, NVE energy drift, the largest
force seen. With a reference calculator: an equation of state and an RDF of the model beside the
reference's.
"""

from __future__ import annotations

import json
import math
import platform
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError, MatloopError
from matloop.units import EV_PER_A3_TO_GPA, EV_TO_MEV
from matloop.utils.files import atomic_write_text
from matloop.utils.jsonable import to_jsonable
from matloop.validation.config import ReportSettings, Thresholds

DataLike = str | Path | Sequence[Atoms]


def _dataset(data: DataLike, what: str, st: ReportSettings):
    """A Dataset or labelled Atoms as given; a path read with the label keys of `st`."""
    from matloop.data import Dataset, read_dataset

    if isinstance(data, Dataset):
        return data
    # energies are all a test set needs (as for `matloop evaluate`); the report says what it lacks
    if isinstance(data, str | Path):
        keys = {k: getattr(st, k) for k in ("energy_key", "forces_key", "stress_key")}
        return read_dataset(data, require_forces=False, **keys)
    if not data:
        raise ConfigError(f"the {what} set is empty")
    return Dataset(list(data), source=what, require_forces=False)


def _data_notes(train, checks: list[dict[str, Any]]) -> list[str]:
    """What the training data cannot teach, in words; the checks it explains point to it."""
    note = None if train is None else train.volume_coverage_warning()
    if note is None:
        return []
    for c in checks:
        if c["name"].startswith(("EOS:", "test stress")):
            c["detail"] = "; ".join(
                filter(None, [c.get("detail"), "see the note on training data"])
            )
    return [f"training data: {note}"]


def _largest_force_limit(configured: float | None, reference_max: float) -> float | None:
    """The default 'no absurd forces' limit (eV/Å), or 1.5 × the largest reference |F| of the
    test set where that is larger (forces the reference data has are not absurd)."""
    if configured is None or math.isnan(reference_max):
        return configured
    return max(configured, 1.5 * reference_max)


def _check(
    name: str,
    value: float | None,
    threshold: float | None,
    unit: str,
    summary: str | None = None,
    detail: Any = None,
) -> dict[str, Any]:
    """One check: passed is None when there is no threshold or no value."""
    ok: bool | None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        ok = None if threshold is None else False
    else:
        ok = None if threshold is None else bool(value <= threshold)
    if summary is None:
        if value is None:
            summary = "not computed"
        else:
            summary = f"{value:.4g} {unit}".strip()
        if threshold is not None:
            summary += f" (limit {threshold:g} {unit}".rstrip() + ")"
    return {
        "name": name,
        "value": None if value is None else float(value),
        "threshold": threshold,
        "unit": unit,
        "passed": ok,
        "summary": summary,
        "detail": detail,
    }


def _error_checks(metrics: dict, test, th: Thresholds) -> list[dict[str, Any]]:
    """The test-set MAE checks; an error the test set cannot give is a row saying why."""
    from matloop.evaluation import unmeasured

    missing = unmeasured(test, metrics)
    checks = []
    for key, unit, limit, kind in (
        ("energy_mae_mev_per_atom", "meV/atom", th.max_energy_mae_mev_per_atom, "energy"),
        ("force_mae_ev_per_a", "eV/Å", th.max_force_mae_ev_per_a, "forces"),
        ("stress_mae_gpa", "GPa", th.max_stress_mae_gpa, "stress"),
    ):
        name = f"test {key.split('_')[0]} MAE"
        if key in metrics:
            checks.append(_check(name, metrics[key], limit, unit))
        elif kind in missing:
            unjudged = "" if limit is None else f"; limit {limit:g} {unit} not judged"
            summary = f"not measured: {missing[kind]} in the test set{unjudged}"
            checks.append(_check(name, None, None, unit, summary=summary))
    return checks


def _largest_predicted_force(calc, test, pred) -> float:
    """Largest predicted |F| (eV/Å) on the test structures, computed here when the test set
    has no reference forces (the predictions then hold none)."""
    if pred.forces_pred is not None:
        return float(np.linalg.norm(pred.forces_pred, axis=1).max())
    norms = []
    for atoms in test:
        work = atoms.copy()
        work.calc = calc
        norms.append(np.linalg.norm(work.get_forces(), axis=1))
    return float(np.concatenate(norms).max())  # NaN stays NaN, as from the predictions


def _shown(value: float, missing: str) -> str:
    """`value` to 3 digits, or what its absence means (not "nan")."""
    return missing if math.isnan(value) else f"{value:.3g}"


def _non_finite_check(pred, label: str) -> dict[str, Any]:
    """Structures of `pred` whose predicted energy or forces hold NaN/inf: must be none (the
    error metrics and the largest force would otherwise silently skip them)."""
    bad = ~np.isfinite(np.asarray(pred.energy_pred, dtype=float))
    if pred.forces_pred is not None and len(pred.forces_pred):
        atom_bad = ~np.isfinite(np.asarray(pred.forces_pred, dtype=float)).all(1)
        owner = np.repeat(np.arange(len(bad)), pred.n_atoms)
        bad |= np.bincount(owner, weights=atom_bad, minlength=len(bad)) > 0
    kinds = sorted({str(pred.config_types[i]) for i in np.flatnonzero(bad)})
    return _check(
        f"finite predictions ({label} set)",
        float(bad.sum()),
        0.0,
        "structures",
        summary=f"{int(bad.sum())} of {len(bad)} structures with NaN/inf energy or forces",
        detail=f"config_type: {', '.join(kinds)}" if kinds else None,
    )


# --------------------------------------------------------------------------------------- plots


def _parity_and_hist(pred, label: str) -> dict[str, str]:
    """Parity plots and error histograms (energy, forces, stress) as base64 PNGs."""
    from matloop.analysis.plots import _plt, figure_to_base64

    plt = _plt()
    kinds = sorted(set(pred.config_types))
    colors = plt.get_cmap("tab10")
    panels = [("energy", "eV/atom", pred.energy_ref, pred.energy_pred, None)]
    if pred.forces_ref is not None:
        panels.append(("force component", "eV/Å", pred.forces_ref, pred.forces_pred, "atoms"))
    if pred.stress_ref is not None and pred.stress_pred is not None:
        mask = np.isfinite(pred.stress_ref).all(1) & np.isfinite(pred.stress_pred).all(1)
        if mask.any():
            panels.append(
                (
                    "stress component",
                    "GPa",
                    np.where(mask[:, None], pred.stress_ref, np.nan) * EV_PER_A3_TO_GPA,
                    np.where(mask[:, None], pred.stress_pred, np.nan) * EV_PER_A3_TO_GPA,
                    None,
                )
            )
    figs: dict[str, str] = {}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), dpi=100)
    axes = np.atleast_1d(axes)
    fig_h, axes_h = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), dpi=100)
    axes_h = np.atleast_1d(axes_h)
    for ax, axh, (name, unit, ref, prd, per) in zip(axes, axes_h, panels, strict=True):
        for k, kind in enumerate(kinds):
            mask = np.array([c == kind for c in pred.config_types])
            if per == "atoms":
                mask = np.repeat(mask, pred.n_atoms)
            r, p = np.asarray(ref)[mask].ravel(), np.asarray(prd)[mask].ravel()
            ok = np.isfinite(r) & np.isfinite(p)
            ax.scatter(r[ok], p[ok], s=6, alpha=0.6, color=colors(k % 10), label=kind)
        r_all, p_all = np.asarray(ref).ravel(), np.asarray(prd).ravel()
        ok = np.isfinite(r_all) & np.isfinite(p_all)
        lo, hi = (
            float(min(r_all[ok].min(), p_all[ok].min())),
            float(max(r_all[ok].max(), p_all[ok].max())),
        )
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"reference {name} ({unit})")
        ax.set_ylabel(f"predicted {name} ({unit})")
        err = p_all[ok] - r_all[ok]
        scale = EV_TO_MEV if name == "energy" else 1.0
        eunit = "meV/atom" if name == "energy" else unit
        ax.set_title(f"{name}: MAE {np.abs(err).mean() * scale:.3g} {eunit}", fontsize=10)
        axh.hist(err * scale, bins=50, color="tab:blue", alpha=0.8)
        axh.set_xlabel(f"{name} error ({eunit})")
        axh.set_ylabel("count")
        if err.size > 200:
            axh.set_yscale("log")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Parity, {label} set")
    fig.tight_layout()
    fig_h.suptitle(f"Error distribution, {label} set")
    fig_h.tight_layout()
    figs[f"parity_{label}"] = figure_to_base64(fig)
    figs[f"error_histogram_{label}"] = figure_to_base64(fig_h)
    return figs


# ------------------------------------------------------------------------------ structure picks


def _pick_physics_structures(ds, n: int) -> list[int]:
    """Up to `n` test structures, one per config_type first, smallest first (cheap checks)."""
    if n <= 0:
        return []
    order = sorted(range(len(ds)), key=lambda i: len(ds[i]))
    picked: list[int] = []
    seen: set[str] = set()
    for i in order:
        ct = ds[i].info.get("config_type", "default")
        if ct not in seen:
            picked.append(i)
            seen.add(ct)
        if len(picked) == n:
            return picked
    for i in order:
        if i not in picked:
            picked.append(i)
        if len(picked) == n:
            break
    return picked


def _pick_md_structure(ds, settings: ReportSettings) -> tuple[Atoms, str]:
    """The structure for MD/EOS/RDF: given, or the periodic bulk-like test structure (preferably
    with at most `nve_max_atoms` atoms, for cost) with the lowest reference energy per atom
    (near equilibrium, so a sensible start for MD and EOS)."""
    from matloop.data import energy_of
    from matloop.md import read_structure

    if settings.nve_structure is not None:
        atoms = read_structure(settings.nve_structure)
        label = str(settings.nve_structure)
    else:
        # periodic cells first; a test set of molecules/clusters runs its MD without a cell
        candidates = [i for i in range(len(ds)) if all(ds[i].pbc)] or list(range(len(ds)))
        # prefer bulk-like structures: skip those whose config_type mentions a surface
        bulk = [i for i in candidates if "surf" not in str(ds[i].info.get("config_type")).lower()]
        pool = bulk or candidates
        small = [i for i in pool if len(ds[i]) <= settings.nve_max_atoms]
        best = min(small or pool, key=lambda i: energy_of(ds[i]) / len(ds[i]))
        atoms = ds[best]
        label = f"test structure {best} ({atoms.info.get('config_type', 'default')})"
    clean = Atoms(
        atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )
    if len(clean) < settings.nve_min_atoms and all(clean.pbc):
        k = math.ceil((settings.nve_min_atoms / len(clean)) ** (1 / 3))
        clean = clean.repeat(k)
        label += f" repeated {k}×{k}×{k}"
    return clean, label


# ----------------------------------------------------------------------------------- sections


def _float64(calc):
    """A float64 copy of a matloop calculator (finite differences need double precision), or
    `calc` itself for any other calculator."""
    import copy

    model = getattr(calc, "model", None)
    if model is None or not hasattr(model, "double"):
        return calc, None
    try:
        return type(calc)(
            copy.deepcopy(model), metadata=getattr(calc, "metadata", None), dtype="float64"
        ), "float64"
    except TypeError:
        return calc, None


def _physics_section(calc, ds, settings: ReportSettings, th: Thresholds) -> tuple[list, dict]:
    from tqdm.auto import tqdm

    from matloop.validation import physics

    calc, precision = _float64(calc)

    idx = _pick_physics_structures(ds, settings.n_physics_structures)
    rows = []
    bar = tqdm(
        idx, desc="physics checks", unit="structure", disable=not settings.progress, leave=False
    )
    for i in bar:
        atoms = ds[i]
        clean = Atoms(
            atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
        )
        n_fd = min(settings.fd_atoms, len(clean))
        fd_idx = sorted(
            np.random.default_rng(settings.seed + i).choice(len(clean), n_fd, replace=False)
        )
        row: dict[str, Any] = {
            "index": int(i),
            "config_type": str(atoms.info.get("config_type", "default")),
            "n_atoms": len(clean),
            "force_gradient_error": physics.force_gradient_error(
                calc, clean, atom_indices=[int(j) for j in fd_idx]
            ),
        }
        inv = physics.invariance_errors(calc, clean, seed=settings.seed)
        row.update({k: float(v) for k, v in inv.items()})
        if all(clean.pbc) and "stress" in getattr(calc, "implemented_properties", ()):
            row["stress_strain_error_gpa"] = (
                physics.stress_strain_error(calc, clean) * EV_PER_A3_TO_GPA
            )
        rows.append(row)
    checks = []
    if rows:
        where = f"{len(rows)} test structures ({', '.join(r['config_type'] for r in rows)})"
        if precision:
            where += f", model evaluated in {precision}"
        fge = max(r["force_gradient_error"] for r in rows)
        checks.append(
            _check(
                "F = −∇E (finite differences)",
                fge,
                th.max_force_gradient_error,
                "",
                summary=None,
                detail=where,
            )
        )
        inv_e = max(
            r[f"{op}_energy_ev"] / r["n_atoms"] * EV_TO_MEV
            for r in rows
            for op in ("translation", "rotation", "permutation")
        )
        inv_f = max(
            r[f"{op}_force_ev_per_a"]
            for r in rows
            for op in ("translation", "rotation", "permutation")
        )
        checks.append(
            _check(
                "invariance: energy (translation/rotation/permutation)",
                inv_e,
                th.max_invariance_energy_mev_per_atom,
                "meV/atom",
                detail=where,
            )
        )
        checks.append(
            _check(
                "invariance: forces (translation/rotation/permutation)",
                inv_f,
                th.max_invariance_force_ev_per_a,
                "eV/Å",
                detail=where,
            )
        )
        sse = [r["stress_strain_error_gpa"] for r in rows if "stress_strain_error_gpa" in r]
        if sse:
            checks.append(
                _check(
                    "stress = (1/V) ∂E/∂ε (finite strain)",
                    max(sse),
                    th.max_stress_strain_error_gpa,
                    "GPa",
                    detail=where,
                )
            )
    cutoff_checks, cutoff_info = _cutoff_checks(calc, ds, settings, th)
    checks += cutoff_checks
    info = {"structures": rows, "precision": precision or "as given", "cutoff": cutoff_info}
    return checks, info


def _cutoff_checks(calc, ds, settings: ReportSettings, th: Thresholds) -> tuple[list, dict]:
    """A dimer of each test element pulled through the cutoff: no energy step, no force."""
    from matloop.validation import physics

    cutoff = settings.cutoff_a or getattr(getattr(calc, "model", None), "cutoff", None)
    names = ("smooth cutoff: energy step", "smooth cutoff: force at the cutoff")
    if cutoff is None:
        why = "skipped: the calculator states no cutoff (settings.cutoff_a)"
        return [_check(n, None, None, "", summary=why) for n in names], {"skipped": why}
    symbols = sorted({s for atoms in ds for s in atoms.get_chemical_symbols()})
    per_element = {s: physics.cutoff_smoothness(calc, s, float(cutoff)) for s in symbols}
    jump = max(r["energy_jump_across_cutoff_ev"] for r in per_element.values()) * EV_TO_MEV
    force = max(r["max_force_near_cutoff_ev_per_a"] for r in per_element.values())
    where = f"{'-'.join(symbols)} dimers at {float(cutoff):g} Å"
    checks = [
        _check(names[0], jump, th.max_cutoff_energy_jump_mev, "meV", detail=where),
        _check(names[1], force, th.max_cutoff_force_ev_per_a, "eV/Å", detail=where),
    ]
    return checks, {"cutoff_a": float(cutoff), "per_element": per_element}


def _nve_section(calc, atoms: Atoms, label: str, settings: ReportSettings, th: Thresholds):
    from matloop.analysis.plots import figure_to_base64, plot_md
    from matloop.md import run_md

    info: dict[str, Any] = {"structure": label, "n_atoms": len(atoms)}
    figs: dict[str, str] = {}
    if settings.nve_ps <= 0:
        return (
            [_check("NVE energy drift", None, None, "meV/atom/ps", summary="skipped")],
            info,
            figs,
        )
    dt = settings.nve_timestep_fs
    try:
        start = atoms
        if settings.nve_equilibration_ps > 0:
            eq = run_md(
                atoms,
                calc,
                "nvt",
                temperature_k=settings.nve_temperature_k,
                timestep_fs=dt,
                steps=max(1, round(settings.nve_equilibration_ps * 1000 / dt)),
                progress=settings.progress,
                seed=settings.seed,
                friction_per_fs=0.02,
            )
            start = eq.atoms
            start.set_constraint()
        res = run_md(
            start,
            calc,
            "nve",
            temperature_k=settings.nve_temperature_k,
            timestep_fs=dt,
            steps=max(2, round(settings.nve_ps * 1000 / dt)),
            progress=settings.progress,
            seed=settings.seed,
            keep_velocities=settings.nve_equilibration_ps > 0,
            max_force_ev_per_a=None
            if th.max_force_ev_per_a is None
            else 100 * th.max_force_ev_per_a,
        )
    except MatloopError as exc:
        info["error"] = str(exc)
        return (
            [
                _check(
                    "NVE energy drift",
                    float("nan"),
                    th.max_nve_drift_mev_per_atom_per_ps,
                    "meV/atom/ps",
                    summary=f"MD failed: {exc}",
                )
            ],
            info,
            figs,
        )
    s = res.summary()
    info.update(s)
    drift = abs(s["nve_drift_mev_per_atom_per_ps"])
    figs["nve"] = figure_to_base64(
        plot_md(res, title=f"NVE {settings.nve_ps:g} ps, {len(atoms)} atoms")
    )
    check = _check(
        "NVE energy drift",
        drift,
        th.max_nve_drift_mev_per_atom_per_ps,
        "meV/atom/ps",
        detail=f"{settings.nve_ps:g} ps at {settings.nve_temperature_k:g} K, {dt:g} fs, {label}; "
        f"mean T {s['mean_temperature_k_second_half']:.0f} K",
    )
    return [check], info, figs


def _reference_section(
    calc,
    ref_calc,
    ref_name: str,
    atoms: Atoms,
    label: str,
    settings: ReportSettings,
    th: Thresholds,
):
    from matloop.analysis import compute_rdf, equation_of_state
    from matloop.analysis.plots import figure_to_base64, plot_eos, plot_rdfs
    from matloop.md import check_elements, run_md

    check_elements(atoms, ref_calc, ref_name, where=label)
    info: dict[str, Any] = {"reference": ref_name, "structure": label}
    figs: dict[str, str] = {}
    checks = []
    if not all(atoms.pbc):  # EOS and RDF are defined for periodic cells only
        why = f"skipped: {label} is not periodic (EOS and RDF need a periodic cell)"
        return [_check("EOS and RDF vs reference", None, None, "", summary=why)], info, figs
    curves = {}
    try:
        curves = {
            "model": equation_of_state(atoms, calc, settings.eos_volume_range, settings.eos_points),
            f"reference ({ref_name})": equation_of_state(
                atoms, ref_calc, settings.eos_volume_range, settings.eos_points
            ),
        }
    except MatloopError as exc:
        info["eos_error"] = str(exc)
        checks.append(
            _check("EOS vs reference", float("nan"), None, "", summary=f"EOS failed: {exc}")
        )
    if curves:
        m, r = curves.values()
        info["eos"] = {k: c.to_dict() for k, c in curves.items()}
        dv = abs(m.v0_a3_per_atom - r.v0_a3_per_atom) / r.v0_a3_per_atom
        db = abs(m.b0_gpa - r.b0_gpa) / abs(r.b0_gpa)
        checks.append(
            _check(
                "EOS: V0 vs reference",
                dv,
                th.max_eos_v0_rel_diff,
                "(relative)",
                summary=f"V0 {m.v0_a3_per_atom:.3f} vs {r.v0_a3_per_atom:.3f} Å³/atom "
                f"({100 * dv:.1f} %)"
                + (f", limit {100 * th.max_eos_v0_rel_diff:g} %" if th.max_eos_v0_rel_diff else ""),
            )
        )
        checks.append(
            _check(
                "EOS: B0 vs reference",
                db,
                th.max_eos_b0_rel_diff,
                "(relative)",
                summary=f"B0 {m.b0_gpa:.1f} vs {r.b0_gpa:.1f} GPa ({100 * db:.1f} %)"
                + (f", limit {100 * th.max_eos_b0_rel_diff:g} %" if th.max_eos_b0_rel_diff else ""),
            )
        )
        figs["eos"] = figure_to_base64(plot_eos(curves, title=f"EOS of {label}"))
    if settings.rdf_ps > 0:
        rdfs = {}
        steps = max(10, round(settings.rdf_ps * 1000 / settings.nve_timestep_fs))
        for name, c in (("model", calc), (f"reference ({ref_name})", ref_calc)):
            try:
                res = run_md(
                    atoms,
                    c,
                    "nvt",
                    temperature_k=settings.nve_temperature_k,
                    timestep_fs=settings.nve_timestep_fs,
                    steps=steps,
                    progress=settings.progress,
                    seed=settings.seed,
                    friction_per_fs=0.02,
                    keep_frames=True,
                    traj_interval=max(1, steps // 50),
                )
            except MatloopError as exc:
                info[f"rdf_error_{name}"] = str(exc)
                continue
            frames = res.frames[len(res.frames) // 4 :]  # drop the first quarter (equilibration)
            rdfs[name] = compute_rdf(frames, rmax=settings.rdf_rmax_a, nbins=120)
        if len(rdfs) == 2:
            (gm, gr) = rdfs.values()
            diff = float(np.trapezoid(np.abs(gm.g - gr.g), gm.r) / np.trapezoid(gr.g, gr.r))
            info["rdf"] = {k: v.to_dict() for k, v in rdfs.items()}
            info["rdf"]["relative_l1_difference"] = diff
            checks.append(
                _check(
                    "RDF vs reference",
                    diff,
                    None,
                    "",
                    summary=f"first peak {gm.first_peak:.2f} vs {gr.first_peak:.2f} Å; "
                    f"relative ∫|Δg| {diff:.3f}",
                )
            )
            figs["rdf"] = figure_to_base64(
                plot_rdfs(
                    rdfs,
                    title=f"RDF, NVT {settings.rdf_ps:g} ps at {settings.nve_temperature_k:g} K",
                )
            )
    return checks, info, figs


# ------------------------------------------------------------------------------------- report


def build_report(
    calc,
    test_ds: DataLike,
    train_ds: DataLike | None = None,
    reference=None,
    out_dir: str | Path = "report",
    thresholds: Thresholds | dict | None = None,
    settings: ReportSettings | dict | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Validate `calc` (any ASE calculator, usually a matloop model) and write the report.

    `test_ds`/`train_ds`: a Dataset, a list of labelled Atoms, or a path readable by
    :func:`matloop.data.read_dataset` (labels under the settings' ``energy_key``,
    ``forces_key`` and ``stress_key``). `reference`: an ASE calculator or a name for
    :func:`~matloop.calculators.resolve_calculator` (``emt``, ``module:function``). Writes
    ``out_dir/report.json`` and ``out_dir/report.html`` (plots embedded) and returns the JSON dict.
    """
    from matloop.evaluation import evaluate_predictions, predict

    t0 = time.perf_counter()
    th = (
        thresholds
        if isinstance(thresholds, Thresholds)
        else Thresholds.model_validate(thresholds or {})
    )
    st = (
        settings
        if isinstance(settings, ReportSettings)
        else ReportSettings.model_validate(settings or {})
    )
    if isinstance(calc, str):
        from matloop.calculators import resolve_calculator

        model_name = model_name or calc
        calc = resolve_calculator(calc)
    model_name = model_name or getattr(calc, "path", None) or type(calc).__name__
    test = _dataset(test_ds, "test", st)
    train = _dataset(train_ds, "train", st) if train_ds is not None else None
    ref_name = None
    ref_calc = None
    if reference is not None:
        from matloop.calculators import resolve_calculator

        ref_name = reference if isinstance(reference, str) else type(reference).__name__
        ref_calc = resolve_calculator(reference)

    from matloop.md import check_elements

    for ds, what in ((test, "the test set"), (train, "the training set")):
        if ds is not None:
            check_elements(Atoms(ds.elements), calc, str(model_name), where=what)
    # everything MD and the reference need is checked before the first prediction
    md_atoms, md_label = _pick_md_structure(test, st)
    check_elements(md_atoms, calc, str(model_name), where=md_label)
    if ref_calc is not None:
        check_elements(md_atoms, ref_calc, ref_name, where=md_label)
    figures: dict[str, str] = {}
    checks: list[dict[str, Any]] = []
    sections: dict[str, Any] = {}

    # --- errors on the test (and training) set
    timings: dict[str, float] = {}
    tic = time.perf_counter()
    pred_test = predict(calc, test, progress=st.progress)
    m_test = evaluate_predictions(pred_test)
    sections["test_metrics"] = m_test
    figures.update(_parity_and_hist(pred_test, "test"))
    checks.append(_non_finite_check(pred_test, "test"))
    checks.extend(_error_checks(m_test, test, th))
    if train is not None:
        pred_train = predict(calc, train, progress=st.progress)
        m_train = evaluate_predictions(pred_train)
        checks.append(_non_finite_check(pred_train, "training"))
        sections["train_metrics"] = m_train
        ratios = {}
        for key in ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "stress_mae_gpa"):
            if key in m_test and key in m_train and m_train[key] > 0:
                ratios[key] = m_test[key] / m_train[key]
        sections["test_train_ratio"] = ratios
        if not ratios:
            checks.append(
                _check(
                    "test/train error ratio",
                    None,
                    None,
                    "×",
                    summary="training errors are zero; no ratio",
                )
            )
        else:
            # a NaN ratio (NaN test error) is the worst: max() would skip it by comparison
            nan_keys = [k for k, v in ratios.items() if math.isnan(v)]
            worst_key = nan_keys[0] if nan_keys else max(ratios, key=ratios.get)
            checks.append(
                _check(
                    "test/train error ratio",
                    ratios[worst_key],
                    th.max_test_train_ratio,
                    "×",
                    detail=", ".join(f"{k.split('_')[0]} {v:.2f}×" for k, v in ratios.items()),
                )
            )
    else:
        checks.append(
            _check(
                "test/train error ratio", None, None, "×", summary="no training set given (--train)"
            )
        )

    # --- largest predicted force on the test set
    fmax_test = _largest_predicted_force(calc, test, pred_test)
    fmax_ref = (
        float(np.nanmax(np.linalg.norm(pred_test.forces_ref, axis=1)))
        if pred_test.forces_ref is not None
        else float("nan")
    )

    # --- physics checks on real test structures
    timings["errors_s"] = time.perf_counter() - tic
    tic = time.perf_counter()
    phys_checks, sections["physics"] = _physics_section(calc, test, st, th)
    timings["physics_s"] = time.perf_counter() - tic
    tic = time.perf_counter()
    checks.extend(phys_checks)

    # --- NVE drift
    nve_checks, sections["nve"], figs = _nve_section(calc, md_atoms, md_label, st, th)
    timings["nve_s"] = time.perf_counter() - tic
    tic = time.perf_counter()
    checks.extend(nve_checks)
    figures.update(figs)
    fmax_md = sections["nve"].get("max_force_ev_per_a", float("nan"))
    largest = (
        float(np.nanmax([fmax_test, fmax_md]))
        if not (math.isnan(fmax_test) and math.isnan(fmax_md))
        else float("nan")
    )
    limit = (
        th.max_force_ev_per_a
        if "max_force_ev_per_a" in th.model_fields_set  # the user's own limit stands
        else _largest_force_limit(th.max_force_ev_per_a, fmax_ref)
    )
    checks.append(
        _check(
            "largest force",
            largest,
            limit,
            "eV/Å",
            detail=f"test set {fmax_test:.3g} (reference data "
            f"{_shown(fmax_ref, 'without forces')}), NVE MD {_shown(fmax_md, 'not run')}"
            + ("" if limit == th.max_force_ev_per_a else "; limit 1.5 × the reference's largest"),
        )
    )

    # --- comparison with a reference calculator
    if ref_calc is not None:
        ref_checks, sections["reference_comparison"], figs = _reference_section(
            calc, ref_calc, ref_name, md_atoms, md_label, st, th
        )
        checks.extend(ref_checks)
        figures.update(figs)
        timings["reference_s"] = time.perf_counter() - tic

    notes = _data_notes(train, checks)
    judged = [c["passed"] for c in checks if c["passed"] is not None]
    report = {
        "matloop_report_version": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": str(model_name),
        "model_family": getattr(calc, "family", None),
        "model_elements": list(getattr(calc, "elements", []) or []),
        "test_data": str(getattr(test, "source", None) or "test"),
        "train_data": None if train is None else str(getattr(train, "source", None) or "train"),
        "reference": ref_name,
        "passed": bool(all(judged)) if judged else None,
        "n_passed": sum(1 for j in judged if j),
        "n_failed": sum(1 for j in judged if not j),
        "checks": checks,
        "notes": notes,
        "thresholds": th.model_dump(mode="json"),
        "settings": st.model_dump(mode="json"),
        "largest_force_ev_per_a": {
            "test": fmax_test,
            "reference_data": fmax_ref,
            "nve_md": fmax_md,
        },
        **sections,
        "figures": sorted(figures),
        "seconds": time.perf_counter() - t0,
        "timings": timings,
        "host": platform.node(),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(to_jsonable(report), indent=2) + "\n")
    from matloop.validation.html import render_html

    atomic_write_text(out / "report.html", render_html(report, figures))
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if report["passed"] is False:
        failed = [c["name"] for c in checks if c["passed"] is False]
        warnings.warn(f"validation checks failed: {', '.join(failed)}", stacklevel=2)
    return report
