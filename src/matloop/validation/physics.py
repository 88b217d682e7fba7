"""Physics checks that any ASE calculator should pass; shared by tests and validation reports.

Each function returns numbers (no assertions), so tests can assert on them and reports can show
them with pass/fail thresholds.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from scipy.spatial.transform import Rotation


def _energy_forces(calc, atoms: Atoms) -> tuple[float, np.ndarray]:
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy()), np.array(work.get_forces())


#: the smallest force scale (eV/Å) of :func:`force_gradient_error`: near equilibrium (forces
#: ~0) a relative error would divide finite-difference noise by ~0 and fail an exact model
FORCE_SCALE_FLOOR_EV_PER_A = 0.1


def force_gradient_error(
    calc, atoms: Atoms, delta: float = 1e-4, atom_indices: list[int] | None = None
) -> float:
    """max |F − (−∇E)_finite-difference| / max(max |F|, 0.1 eV/Å) over the checked atoms.

    Dimensionless; the force scale is the largest |F| of the structure, but at least
    :data:`FORCE_SCALE_FLOOR_EV_PER_A`. Central differences of step `delta` (Å);
    `atom_indices` limits the check to some atoms (in any order).
    """
    work = atoms.copy()
    work.calc = calc
    forces = np.array(work.get_forces())
    idx = list(range(len(atoms))) if atom_indices is None else [int(i) for i in atom_indices]
    numeric = calculate_numerical_forces(work, eps=delta, iatoms=idx)  # one row per idx entry
    scale = max(float(np.abs(forces).max()), FORCE_SCALE_FLOOR_EV_PER_A)
    return float(np.abs(forces[idx] - numeric).max() / scale)


def invariance_errors(calc, atoms: Atoms, seed: int = 0) -> dict[str, float]:
    """Energy (eV) and force (eV/Å) changes under translation, rotation and permutation."""
    rng = np.random.default_rng(seed)
    e0, f0 = _energy_forces(calc, atoms)
    out: dict[str, float] = {}

    moved = atoms.copy()
    moved.translate(rng.normal(size=3))
    if moved.pbc.any():
        moved.wrap()
    e, f = _energy_forces(calc, moved)
    out["translation_energy_ev"] = abs(e - e0)
    out["translation_force_ev_per_a"] = float(np.abs(f - f0).max())

    rotation = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rotation.T
    e, f = _energy_forces(calc, rotated)
    out["rotation_energy_ev"] = abs(e - e0)
    out["rotation_force_ev_per_a"] = float(np.abs(f - f0 @ rotation.T).max())

    perm = rng.permutation(len(atoms))
    permuted = atoms[perm]
    e, f = _energy_forces(calc, permuted)
    out["permutation_energy_ev"] = abs(e - e0)
    out["permutation_force_ev_per_a"] = float(np.abs(f - f0[perm]).max())
    return out


def stress_strain_error(calc, atoms: Atoms, delta: float = 1e-5) -> float:
    """max |σ − (1/V) ∂E/∂ε|_finite-difference| (eV/Å³) for a fully periodic cell."""
    work = atoms.copy()
    work.calc = calc
    stress = np.array(work.get_stress(voigt=True))
    numeric = calculate_numerical_stress(work, eps=delta, voigt=True)
    return float(np.abs(stress - numeric).max())


def cutoff_smoothness(
    calc, symbol: str, cutoff: float, width: float = 1e-3, n_points: int = 21
) -> dict[str, float]:
    """A dimer pulled through the cutoff: the energy must not jump and the force must vanish.

    Returns the largest energy step between neighbouring distances (eV), the energy difference
    across the cutoff (eV) and the largest |force| just inside it (eV/Å).
    """
    distances = np.linspace(cutoff - width, cutoff + width, n_points)
    energies, forces = [], []
    for r in distances:
        dimer = Atoms(f"{symbol}2", positions=[[0, 0, 0], [r, 0, 0]], pbc=False)
        e, f = _energy_forces(calc, dimer)
        energies.append(e)
        forces.append(np.abs(f).max())
    energies = np.array(energies)
    inside = distances < cutoff
    return {
        "max_energy_step_ev": float(np.abs(np.diff(energies)).max()),
        "energy_jump_across_cutoff_ev": float(abs(energies[inside][-1] - energies[~inside][0])),
        "max_force_near_cutoff_ev_per_a": float(np.max(np.array(forces)[inside][-3:])),
    }


def supercell_consistency(calc, atoms: Atoms, repeat: tuple[int, int, int] = (2, 2, 2)) -> float:
    """|E/N (supercell) − E/N (cell)| in eV/atom for a periodic structure."""
    e_cell, _ = _energy_forces(calc, atoms)
    e_super, _ = _energy_forces(calc, atoms.repeat(repeat))
    return abs(e_super / (len(atoms) * int(np.prod(repeat))) - e_cell / len(atoms))
