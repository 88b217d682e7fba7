"""Errors of any ASE calculator against a labelled dataset, per structure kind, and parity plots.

Energies are compared per atom (meV/atom in reports), forces per component (eV/Å), stresses per
Voigt component (GPa in reports).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import PropertyNotImplementedError

from matloop.data import Dataset
from matloop.data.dataset import config_type_of, energy_of, forces_of, stress_of
from matloop.errors import DataError
from matloop.units import EV_PER_A3_TO_GPA


@dataclass
class Predictions:
    """Reference and predicted values, aligned. Energies in eV/atom, forces eV/Å, stress eV/Å³."""

    energy_ref: np.ndarray  # (S,)
    energy_pred: np.ndarray  # (S,)
    n_atoms: np.ndarray  # (S,)
    forces_ref: np.ndarray | None  # (N, 3)
    forces_pred: np.ndarray | None  # (N, 3)
    stress_ref: np.ndarray | None  # (S, 6), NaN rows where the reference has no stress
    stress_pred: np.ndarray | None  # (S, 6)
    config_types: list[str]

    def atom_config_types(self) -> np.ndarray:
        return np.repeat(np.array(self.config_types, dtype=object), self.n_atoms)

    def select(self, mask: np.ndarray) -> Predictions:
        """Predictions of the structures where `mask` is True."""
        atom_mask = np.repeat(mask, self.n_atoms)
        return Predictions(
            self.energy_ref[mask],
            self.energy_pred[mask],
            self.n_atoms[mask],
            None if self.forces_ref is None else self.forces_ref[atom_mask],
            None if self.forces_pred is None else self.forces_pred[atom_mask],
            None if self.stress_ref is None else self.stress_ref[mask],
            None if self.stress_pred is None else self.stress_pred[mask],
            [c for c, m in zip(self.config_types, mask, strict=True) if m],
        )


def predict(calc, dataset: Dataset, progress: bool = False) -> Predictions:
    """Run `calc` on every structure of `dataset`."""
    from tqdm.auto import tqdm

    predicted = []
    with_forces = _any_forces(dataset)
    for atoms in tqdm(dataset, desc="predicting", disable=not progress, leave=False):
        work = atoms.copy()
        work.calc = calc
        predicted.append(_single_point(work, with_forces, dataset.has_stress))
    return compare(dataset, predicted)


def _any_forces(dataset: Dataset) -> bool:
    """True when any structure has reference forces (the force errors cover those)."""
    return any(forces_of(atoms) is not None for atoms in dataset)


def _single_point(work, with_forces: bool, with_stress: bool):
    """A copy of `work` carrying its calculator's energy, forces and (if any) stress."""
    from ase.calculators.singlepoint import SinglePointCalculator

    results = {"energy": work.get_potential_energy()}
    if with_forces:
        results["forces"] = work.get_forces()
    if with_stress and work.pbc.all():
        try:
            results["stress"] = work.get_stress()
        except PropertyNotImplementedError:
            pass
    done = work.copy()
    done.calc = SinglePointCalculator(done, **results)
    return done


def compare(dataset: Dataset, predicted: list) -> Predictions:
    """Predictions from structures already computed (each with a calculator holding energy,
    forces and optionally stress), aligned with the reference `dataset`."""
    if len(dataset) == 0:  # else every metric is a NaN mean of nothing
        raise DataError(
            f"{getattr(dataset, 'source', None) or 'the dataset'}: no structures to evaluate"
        )
    e_ref, e_pred, n_atoms, f_ref, f_pred, s_ref, s_pred = [], [], [], [], [], [], []
    # structures without reference forces (or stress) get NaN rows: the errors cover the rest
    with_forces = _any_forces(dataset)
    with_stress = dataset.has_stress
    for atoms, work in zip(dataset, predicted, strict=True):
        n = len(atoms)
        e_ref.append(energy_of(atoms) / n)
        e_pred.append(work.get_potential_energy() / n)
        n_atoms.append(n)
        if with_forces:
            ref_forces = forces_of(atoms)
            f_ref.append(ref_forces if ref_forces is not None else np.full((n, 3), np.nan))
            f_pred.append(work.get_forces())
        if with_stress:
            ref = stress_of(atoms)
            s_ref.append(ref if ref is not None else np.full(6, np.nan))
            stress = work.calc.results.get("stress") if work.calc is not None else None
            s_pred.append(np.asarray(stress) if stress is not None else np.full(6, np.nan))
    return Predictions(
        np.array(e_ref),
        np.array(e_pred),
        np.array(n_atoms),
        np.concatenate(f_ref) if with_forces else None,
        np.concatenate(f_pred) if with_forces else None,
        np.array(s_ref) if with_stress else None,
        np.array(s_pred) if with_stress else None,
        [config_type_of(a) for a in dataset],
    )


def metrics_from_predictions(pred: Predictions) -> dict:
    """Error metrics (meV/atom, eV/Å, GPa) of one set of predictions."""
    de = pred.energy_pred - pred.energy_ref
    out = {
        "n_structures": int(len(de)),
        "n_atoms": int(pred.n_atoms.sum()),
        "energy_mae_mev_per_atom": float(1000 * np.abs(de).mean()),
        "energy_rmse_mev_per_atom": float(1000 * np.sqrt((de**2).mean())),
    }
    rows = (
        np.isfinite(pred.forces_ref).all(1)
        if pred.forces_ref is not None and len(pred.forces_ref)
        else np.zeros(0, dtype=bool)
    )
    if rows.any():
        df = pred.forces_pred[rows] - pred.forces_ref[rows]
        out["force_mae_ev_per_a"] = float(np.abs(df).mean())
        out["force_rmse_ev_per_a"] = float(np.sqrt((df**2).mean()))
        out["max_abs_force_error_ev_per_a"] = float(np.abs(df).max())
    if pred.stress_ref is not None:
        mask = np.isfinite(pred.stress_ref).all(1) & np.isfinite(pred.stress_pred).all(1)
        if mask.any():
            ds = (pred.stress_pred[mask] - pred.stress_ref[mask]) * EV_PER_A3_TO_GPA
            out["stress_mae_gpa"] = float(np.abs(ds).mean())
            out["stress_rmse_gpa"] = float(np.sqrt((ds**2).mean()))
    return out


def unmeasured(dataset: Dataset, metrics: dict) -> dict[str, str]:
    """The errors `metrics` (of `dataset`) lack, each with why: ``forces`` when no structure has
    reference forces, ``stress`` when periodic structures are there but no stress error is."""
    out = {}
    if "force_mae_ev_per_a" not in metrics:
        out["forces"] = "no reference forces"
    if "stress_mae_gpa" not in metrics and any(a.pbc.all() for a in dataset):
        out["stress"] = (
            "no predicted stress for the structures with a reference stress"
            if dataset.has_stress
            else "no reference stresses"
        )
    return out


def evaluate(calc, dataset: Dataset, progress: bool = False) -> dict:
    """Metrics over the whole dataset plus ``per_config_type`` with the same keys."""
    pred = predict(calc, dataset, progress=progress)
    return evaluate_predictions(pred)


def evaluate_predictions(pred: Predictions) -> dict:
    out = metrics_from_predictions(pred)
    kinds = np.array(pred.config_types, dtype=object)
    out["per_config_type"] = {
        str(kind): metrics_from_predictions(pred.select(kinds == kind))
        for kind in sorted(set(pred.config_types))
    }
    return out


def parity_plot(pred: Predictions, path: str | os.PathLike, title: str | None = None) -> None:
    """Energy (meV/atom... shown as eV/atom) and force parity plots, coloured by config_type."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matloop.utils.files import atomic_path

    has_forces = pred.forces_ref is not None
    fig, axes = plt.subplots(1, 2 if has_forces else 1, figsize=(10 if has_forces else 5, 4.5))
    axes = np.atleast_1d(axes)
    kinds = sorted(set(pred.config_types))
    colors = plt.get_cmap("tab10")
    metrics = metrics_from_predictions(pred)
    for k, kind in enumerate(kinds):
        mask = np.array([c == kind for c in pred.config_types])
        axes[0].scatter(
            pred.energy_ref[mask],
            pred.energy_pred[mask],
            s=12,
            alpha=0.8,
            color=colors(k % 10),
            label=kind,
        )
        if has_forces:
            atom_mask = np.repeat(mask, pred.n_atoms)
            axes[1].scatter(
                pred.forces_ref[atom_mask].ravel(),
                pred.forces_pred[atom_mask].ravel(),
                s=3,
                alpha=0.4,
                color=colors(k % 10),
                label=kind,
            )
    panels = [
        (
            "energy (eV/atom)",
            pred.energy_ref,
            pred.energy_pred,
            f"MAE {metrics['energy_mae_mev_per_atom']:.2f} meV/atom",
        )
    ]
    if has_forces:
        panels.append(
            (
                "force component (eV/Å)",
                pred.forces_ref,
                pred.forces_pred,
                f"MAE {metrics['force_mae_ev_per_a']:.3f} eV/Å",
            )
        )
    for ax, (label, ref, prd, text) in zip(axes, panels, strict=True):
        lo = float(min(np.nanmin(ref), np.nanmin(prd)))
        hi = float(max(np.nanmax(ref), np.nanmax(prd)))
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(text)
    axes[0].legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
