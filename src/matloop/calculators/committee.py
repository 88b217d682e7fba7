"""A committee (ensemble) of calculators: mean prediction plus disagreement as uncertainty.

``CommitteeCalculator`` results:

- ``energy`` / ``free_energy`` (eV), ``forces`` (eV/Å), ``stress`` (eV/Å³): the committee mean;
  a stress as :class:`~matloop.calculators.potential.MatloopCalculator` gives it (slabs and wires
  too, over the whole cell: :func:`~matloop.neighbors.stress_volume`), refused in one
  line for a structure without one or a member that gives none;
- ``energy_std`` (eV/atom): standard deviation over members of the energy per atom;
- ``forces_std`` (eV/Å, shape (n_atoms,)): per atom, the root mean over x, y, z of the member
  standard deviation of that force component — on the scale of a per-component force error;
- ``energies_committee`` (eV, shape (n_members,)).

Standard deviations use ddof=1 and are multiplied by the fitted scales (``energy_scale``,
``forces_scale``; 1 by default) that :func:`calibrate` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase.calculators.calculator import (
    BaseCalculator,
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from matloop.neighbors import no_stress_message, stress_volume


class CommitteeCalculator(Calculator):
    """Mean and spread of a list of ASE calculators (see module docstring for the results)."""

    implemented_properties = [
        "energy",
        "free_energy",
        "forces",
        "stress",
        "energy_std",
        "forces_std",
        "energies_committee",
    ]

    def __init__(
        self,
        calculators: Sequence[BaseCalculator],
        *,
        energy_scale: float = 1.0,
        forces_scale: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(calculators) < 1:
            raise ValueError("a committee needs at least one calculator")
        self.calculators = list(calculators)
        self.energy_scale = float(energy_scale)
        self.forces_scale = float(forces_scale)

    def __len__(self) -> int:
        return len(self.calculators)

    @property
    def elements(self) -> list[str] | None:
        return getattr(self.calculators[0], "elements", None)

    @property
    def cutoff(self) -> float | None:
        return getattr(self.calculators[0], "cutoff", None)

    def get_descriptors(self, atoms) -> np.ndarray:
        """Per-atom descriptor of the first member (needs a matloop potential)."""
        return self.calculators[0].get_descriptors(atoms)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        n = len(self.atoms)
        want_stress = "stress" in properties
        if want_stress and stress_volume(self.atoms) is None:
            raise PropertyNotImplementedError(no_stress_message(self.atoms))
        energies, forces, stresses = [], [], []
        for k, calc in enumerate(self.calculators):
            work = self.atoms.copy()
            work.calc = calc
            energies.append(work.get_potential_energy())
            forces.append(work.get_forces())
            if want_stress:
                try:
                    stresses.append(work.get_stress(voigt=True))
                except PropertyNotImplementedError as exc:
                    raise PropertyNotImplementedError(
                        f"committee member {k} ({type(calc).__name__}) gives no stress for "
                        f"{work.get_chemical_formula()} (pbc={work.pbc.tolist()}): "
                        f"{exc or 'not implemented'}; the committee's stress needs every member's"
                    ) from None
        e = np.asarray(energies, dtype=float)
        f = np.asarray(forces, dtype=float)  # (m, n, 3)
        ddof = 1 if len(e) > 1 else 0
        self.results["energy"] = float(e.mean())
        self.results["free_energy"] = float(e.mean())
        self.results["forces"] = f.mean(axis=0)
        self.results["energies_committee"] = e
        self.results["energy_std"] = self.energy_scale * float(e.std(ddof=ddof)) / max(n, 1)
        self.results["forces_std"] = self.forces_scale * np.sqrt(
            f.var(axis=0, ddof=ddof).mean(axis=1)
        )
        if stresses:
            self.results["stress"] = np.asarray(stresses, dtype=float).mean(axis=0)

    def uncertainty(self, atoms) -> dict[str, float]:
        """Energy std (eV/atom) and max / mean atomic force std (eV/Å) for `atoms`."""
        self.calculate(atoms, ["energy", "forces"])
        fs = self.results["forces_std"]
        return {
            "energy_std": float(self.results["energy_std"]),
            "forces_std_max": float(fs.max()) if len(fs) else 0.0,
            "forces_std_mean": float(fs.mean()) if len(fs) else 0.0,
        }


@dataclass
class Calibration:
    """How well committee spreads match actual errors on a validation set.

    coverage_95: fraction of errors inside ±1.96 σ (ideal 0.95); nll: mean Gaussian negative
    log-likelihood per value (lower is better); scale: factor on σ that maximises the likelihood
    (σ → scale·σ); *_scaled: the same after applying it.
    """

    energy_coverage_95: float
    energy_nll: float
    energy_scale: float
    energy_coverage_95_scaled: float
    energy_nll_scaled: float
    forces_coverage_95: float
    forces_nll: float
    forces_scale: float
    forces_coverage_95_scaled: float
    forces_nll_scaled: float
    n_structures: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _gauss_stats(err: np.ndarray, sigma: np.ndarray) -> tuple[float, float, float]:
    sigma = np.maximum(sigma, 1e-12)
    z2 = (err / sigma) ** 2
    coverage = float(np.mean(np.abs(err) <= 1.96 * sigma))
    nll = float(np.mean(0.5 * z2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)))
    scale = float(np.sqrt(np.mean(z2)))
    return coverage, nll, scale


def calibrate(committee: CommitteeCalculator, dataset: Sequence[Any]) -> Calibration:
    """Evaluate the committee's σ against reference labels in `dataset` and fit scales.

    Uses the unscaled σ (the committee's current scales are ignored); apply the result with
    :meth:`Calibration` fields ``energy_scale`` / ``forces_scale`` on the calculator.
    """
    e_err, e_sig, f_err, f_sig = [], [], [], []
    saved = committee.energy_scale, committee.forces_scale
    committee.energy_scale = committee.forces_scale = 1.0
    try:
        for ref in dataset:
            n = len(ref)
            e_ref = ref.get_potential_energy() / n
            f_ref = ref.get_forces()
            atoms = ref.copy()
            atoms.calc = committee
            e_pred = atoms.get_potential_energy() / n
            f_pred = atoms.get_forces()
            e_err.append(e_pred - e_ref)
            e_sig.append(committee.results["energy_std"])
            f_err.append((f_pred - f_ref).ravel())
            f_sig.append(np.repeat(committee.results["forces_std"], 3))
    finally:
        committee.energy_scale, committee.forces_scale = saved
    ee, es = np.asarray(e_err), np.asarray(e_sig)
    fe, fs = np.concatenate(f_err), np.concatenate(f_sig)
    ec, en, esc = _gauss_stats(ee, es)
    fc, fn, fsc = _gauss_stats(fe, fs)
    ec2, en2, _ = _gauss_stats(ee, es * esc)
    fc2, fn2, _ = _gauss_stats(fe, fs * fsc)
    return Calibration(ec, en, esc, ec2, en2, fc, fn, fsc, fc2, fn2, len(ee))
