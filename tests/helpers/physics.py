"""Physics assertions that every potential family must pass (reuse them for new families).

Call :func:`assert_potential_physics` with a calculator in float64 and a periodic structure; it
checks F = −∇E, invariances, the stress/strain derivative, smoothness at the cutoff and the
supercell/primitive-cell consistency.
"""

from __future__ import annotations

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
