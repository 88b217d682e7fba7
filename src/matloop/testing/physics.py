"""Physics assertions every potential family must pass (float64 calculators).

Each wraps a measurement of :mod:`matloop.validation.physics` with the project's tolerance;
failures raise ``AssertionError`` with the measured number.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk

from matloop.validation import physics


def assert_forces_are_gradient(calc, atoms: Atoms, rtol: float = 1e-6) -> None:
    err = physics.force_gradient_error(calc, atoms, delta=1e-4, atom_indices=[0, 1, len(atoms) - 1])
    assert err <= rtol, f"forces differ from −∇E by relative {err:.2e} > {rtol:.0e}"


def assert_invariances(
    calc, atoms: Atoms, energy_tol: float = 1e-8, force_tol: float = 1e-8
) -> None:
    errors = physics.invariance_errors(calc, atoms, seed=1)
    for kind in ("translation", "rotation", "permutation"):
        assert errors[f"{kind}_energy_ev"] <= energy_tol, (kind, errors)
        assert errors[f"{kind}_force_ev_per_a"] <= force_tol * 100, (kind, errors)


def assert_stress_is_strain_derivative(calc, atoms: Atoms, atol: float = 1e-6) -> None:
    err = physics.stress_strain_error(calc, atoms, delta=1e-5)
    assert err <= atol, f"stress differs from finite-strain derivative by {err:.2e} eV/Å³"


def assert_smooth_cutoff(calc, symbol: str, cutoff: float) -> None:
    result = physics.cutoff_smoothness(calc, symbol, cutoff)
    assert result["energy_jump_across_cutoff_ev"] <= 1e-8, result
    assert result["max_force_near_cutoff_ev_per_a"] <= 1e-4, result


def assert_supercell_consistent(calc, primitive: Atoms, tol: float = 1e-8) -> None:
    diff = physics.supercell_consistency(calc, primitive, (2, 2, 2))
    assert diff <= tol, f"supercell energy per atom differs by {diff:.2e} eV/atom"


def assert_potential_physics(
    calc, atoms: Atoms, symbol: str, cutoff: float, primitive: Atoms | None = None
) -> None:
    """All shared checks; `calc` should run in float64."""
    assert_forces_are_gradient(calc, atoms)
    assert_invariances(calc, atoms)
    assert_stress_is_strain_derivative(calc, atoms)
    assert_smooth_cutoff(calc, symbol, cutoff)
    assert_supercell_consistent(calc, primitive if primitive is not None else bulk(symbol))


def two_element_structure(
    symbols: tuple[str, str] = ("Cu", "Ni"), seed: int = 0, a: float = 3.6
) -> Atoms:
    """A rattled, slightly sheared 16-atom fcc cell with both elements (half each)."""
    rng = np.random.default_rng(seed)
    atoms = bulk(symbols[0], "fcc", a=a, cubic=True) * (2, 2, 1)
    atoms.symbols[rng.permutation(len(atoms))[: len(atoms) // 2]] = symbols[1]
    atoms.set_cell(atoms.cell @ (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3))), scale_atoms=True)
    atoms.rattle(0.08, seed=seed)
    return atoms


def _energy(calc, atoms: Atoms) -> float:
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy())


def assert_species_matter(calc, atoms: Atoms, min_change: float = 1e-6) -> None:
    """Swapping the elements of two unlike atoms changes the energy (eV)."""
    symbols = atoms.get_chemical_symbols()
    i = 0
    j = next(k for k, s in enumerate(symbols) if s != symbols[0])
    swapped = atoms.copy()
    swapped.symbols[i], swapped.symbols[j] = symbols[j], symbols[i]
    e0, e1 = _energy(calc, atoms), _energy(calc, swapped)
    assert abs(e1 - e0) >= min_change, f"swapping two unlike atoms changed E by {abs(e1 - e0):.1e}"


def assert_two_element_physics(calc, atoms: Atoms) -> None:
    """Gradient, invariances (permutations move species with atoms), stress, species sensitivity."""
    assert len(set(atoms.get_chemical_symbols())) >= 2, "needs a structure with two elements"
    assert_forces_are_gradient(calc, atoms)
    assert_invariances(calc, atoms)
    assert_stress_is_strain_derivative(calc, atoms)
    assert_species_matter(calc, atoms)
