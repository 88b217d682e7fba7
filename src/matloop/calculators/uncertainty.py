"""One interface to a model's uncertainty and features, whatever provides them.

Sources, in order of preference:

- ``forces_std`` (eV/Å, per atom; committees and the ``ace`` posterior): kind ``"forces"``, the
  per-structure σ is the largest atomic one;
- ``energy_std`` (eV/atom) with ``energies_std`` (eV, per atom; the ``kernel`` GP variance):
  kind ``"energy"``, the per-structure σ is ``energy_std``.

A calibration ``scale`` multiplies every σ (σ → scale·σ). Per-atom features are the calculator's
``atom_features`` property when it has one (linear models: the energy is features · coefficients),
else its ``get_descriptors``; ``extrapolation_grade`` (per atom, > 1 outside the training data:
MaxVol / D-optimality, or the force σ relative to the validation atoms' for small training sets,
see :mod:`matloop.models.ace.uncertainty`) is passed on where the calculator publishes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError

Kind = Literal["forces", "energy"]


@dataclass
class Uncertainty:
    """σ of one structure: per structure (``kind`` units) and per atom (eV/Å or eV)."""

    kind: Kind
    structure: float
    atoms: np.ndarray
    grade: np.ndarray | None = None


def _props(calc: Any) -> set[str]:
    return set(getattr(calc, "implemented_properties", ()) or ())


def uncertainty_kind(calc: Any) -> Kind | None:
    """Which σ `calc` offers (None: none)."""
    props = _props(calc)
    if "forces_std" in props:
        return "forces"
    if "energy_std" in props:
        return "energy"
    return None


def require_uncertainty(calc: Any, what: str = "the model") -> Kind:
    """The kind of σ, or a ConfigError naming the families that have one."""
    kind = uncertainty_kind(calc)
    if kind is None:
        raise ConfigError(
            f"{what} has no uncertainty (no forces_std or energy_std): use a committee, the "
            "kernel family or the ace family"
        )
    return kind


def predict_uncertainty(calc: Any, atoms: Atoms, scale: float = 1.0) -> Uncertainty:
    """σ of `atoms` under `calc` (attached to it; energies/forces are computed once)."""
    kind = require_uncertainty(calc)
    if atoms.calc is not calc:
        atoms = atoms.copy()
        atoms.calc = calc
    grade = None
    if "extrapolation_grade" in _props(calc):
        grade = np.asarray(calc.get_property("extrapolation_grade", atoms), dtype=float)
    if kind == "forces":
        per_atom = scale * np.asarray(calc.get_property("forces_std", atoms), dtype=float)
        top = float(per_atom.max()) if per_atom.size else 0.0
        return Uncertainty(kind, top, per_atom, grade)
    structure = scale * float(calc.get_property("energy_std", atoms))
    if "energies_std" in _props(calc):
        per_atom = scale * np.asarray(calc.get_property("energies_std", atoms), dtype=float)
    else:
        per_atom = np.full(len(atoms), structure)
    return Uncertainty(kind, structure, per_atom, grade)


def has_linear_features(calc: Any) -> bool:
    """True when the energy is linear in the calculator's per-atom features: it publishes
    ``atom_features``, or it is a linear model with a posterior (``ace``)."""
    if "atom_features" in _props(calc):
        return True
    return getattr(getattr(calc, "model", None), "posterior", None) is not None


def atom_features(calc: Any, atoms: Atoms) -> np.ndarray | None:
    """Per-atom features (n_atoms, n_features), or None when the calculator has none."""
    if "atom_features" in _props(calc):
        work = atoms.copy()
        work.calc = calc
        return np.asarray(calc.get_property("atom_features", work), dtype=float)
    if hasattr(calc, "get_descriptors"):
        return np.asarray(calc.get_descriptors(atoms), dtype=float)
    return None


@dataclass
class CalibrationData:
    """Errors and σ of labelled structures: per value (for coverage and the scale) and per
    structure or atom (for the rank correlation). Forces: per component / per atom, eV/Å;
    energies: per structure, eV/atom."""

    kind: Kind
    errors: np.ndarray
    sigmas: np.ndarray
    rank_errors: np.ndarray
    rank_sigmas: np.ndarray

    @classmethod
    def empty(cls, kind: Kind) -> CalibrationData:
        e = np.zeros(0)
        return cls(kind, e, e, e, e)

    def extend(self, other: CalibrationData) -> CalibrationData:
        cat = np.concatenate
        return CalibrationData(
            self.kind,
            cat([self.errors, other.errors]),
            cat([self.sigmas, other.sigmas]),
            cat([self.rank_errors, other.rank_errors]),
            cat([self.rank_sigmas, other.rank_sigmas]),
        )


def calibration_data(
    calc: Any, labelled: Iterable[Atoms], predictions: list[Atoms] | None = None
) -> CalibrationData:
    """Unscaled σ of `calc` against the reference labels of `labelled`.

    `predictions`, when given, receives each structure with `calc` attached (its energy and
    forces already computed), so callers can score the predictions without a second pass.
    """
    kind = require_uncertainty(calc)
    err, sig, r_err, r_sig = [], [], [], []
    for ref in labelled:
        work = ref.copy()
        work.calc = calc
        unc = predict_uncertainty(calc, work)
        if predictions is not None:
            from ase.calculators.singlepoint import SinglePointCalculator

            done = work.copy()
            done.calc = SinglePointCalculator(
                done, energy=work.get_potential_energy(), forces=work.get_forces()
            )
            predictions.append(done)
        if kind == "forces":
            df = work.get_forces() - ref.get_forces()
            err.append(df.ravel())
            sig.append(np.repeat(unc.atoms, 3))
            r_err.append(np.sqrt((df**2).mean(axis=1)))
            r_sig.append(unc.atoms)
        else:
            de = (work.get_potential_energy() - ref.get_potential_energy()) / len(ref)
            err.append([de])
            sig.append([unc.structure])
            r_err.append([abs(de)])
            r_sig.append([unc.structure])
    if not err:
        return CalibrationData.empty(kind)
    cat = np.concatenate
    return CalibrationData(kind, cat(err), cat(sig), cat(r_err), cat(r_sig))


def fit_scale(data: CalibrationData) -> float:
    """Maximum-likelihood factor on σ for Gaussian errors: sqrt(mean((error/σ)²)); 1 if no data."""
    if data.errors.size == 0:
        return 1.0
    z2 = (data.errors / np.maximum(data.sigmas, 1e-12)) ** 2
    return float(np.sqrt(np.mean(z2)))


def calibration_metrics(data: CalibrationData, scale: float = 1.0) -> dict[str, float | None]:
    """95 % coverage of ±1.96·scale·σ and the Spearman rank correlation of σ with |error|."""
    from scipy.stats import spearmanr

    if data.errors.size == 0:
        return {"coverage_95": None, "spearman": None, "n": 0}
    sigma = scale * np.maximum(data.sigmas, 1e-12)
    coverage = float(np.mean(np.abs(data.errors) <= 1.96 * sigma))
    rho = None
    if data.rank_errors.size > 2 and np.ptp(data.rank_sigmas) > 0 and np.ptp(data.rank_errors) > 0:
        rho = float(spearmanr(data.rank_sigmas, data.rank_errors).statistic)
    return {"coverage_95": coverage, "spearman": rho, "n": int(data.rank_errors.size)}
