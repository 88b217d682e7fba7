"""Review: the committee, delta and CHGNet calculators give a slab (or wire) the stress
MatloopCalculator gives it — (1/V) ∂E/∂ε over the whole cell, vacuum included — and refuse a
structure without one in the same one line. Were: the committee refused any pbc not all True,
CHGNet dropped a slab's stress, and a delta on EMT refused a molecule with an empty message.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc111
from ase.calculators.calculator import PropertyNotImplementedError
from helpers.small_models import numerical_stress, stress_of, untrained_bpnn

from matloop.calculators import resolve_calculator
from matloop.calculators.committee import CommitteeCalculator
from matloop.calculators.foundation import DeltaCalculator

needs_chgnet = pytest.mark.skipif(
    importlib.util.find_spec("chgnet") is None, reason="chgnet is not installed"
)


def _slab(pbc=(True, True, False)) -> Atoms:
    atoms = fcc111("Cu", size=(2, 2, 3), vacuum=5.0, a=3.6)
    atoms.rattle(0.05, seed=1)
    atoms.pbc = pbc
    return atoms


def _committee() -> CommitteeCalculator:
    """Two different members: EMT and a random-weight BPNN."""
    return CommitteeCalculator([resolve_calculator("emt"), untrained_bpnn()])


def _delta() -> DeltaCalculator:
    return DeltaCalculator(resolve_calculator("emt"), untrained_bpnn(), "emt")


NO_STRESS = [
    Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]]),  # a molecule without a box
    Atoms(
        "Cu3",
        positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]],
        cell=[[5.1, 0, 0], [2.55, 4.4, 0], [0, 0, 0]],
        pbc=(True, True, False),
    ),  # a slab with a zero c vector
]


def _refusal(atoms: Atoms, calc) -> str:
    work = atoms.copy()
    work.calc = calc
    assert np.isfinite(work.get_potential_energy())  # the energy is fine, only the stress is not
    with pytest.raises(PropertyNotImplementedError) as info:
        work.get_stress()
    return str(info.value)


@pytest.mark.parametrize("make", [_committee, _delta], ids=["committee", "delta"])
@pytest.mark.parametrize("pbc", [(True, True, False), (True, False, False)], ids=["slab", "wire"])
def test_slab_and_wire_stress_is_the_strain_derivative(make, pbc):
    atoms = _slab(pbc)
    calc = make()
    want = numerical_stress(atoms, calc)
    assert np.abs(want).max() > 1e-3
    assert np.abs(stress_of(atoms, calc) - want).max() < 1e-9


@pytest.mark.parametrize("make", [_committee, _delta], ids=["committee", "delta"])
@pytest.mark.parametrize("atoms", NO_STRESS, ids=["molecule", "zero-c slab"])
def test_no_stress_is_refused_with_matloop_calculators_line(make, atoms):
    expected = _refusal(atoms, untrained_bpnn())
    assert "non-zero volume" in expected
    assert _refusal(atoms, make()) == expected


def test_committee_slab_stress_is_the_mean_of_its_members():
    slab = _slab()
    calc = _committee()
    members = [stress_of(slab, member) for member in calc.calculators]
    assert np.abs(members[0] - members[1]).max() > 1e-3  # the mean is not trivially either
    np.testing.assert_allclose(stress_of(slab, calc), np.mean(members, axis=0), atol=1e-14)


@needs_chgnet
def test_chgnet_slab_stress_is_that_of_the_same_cell_periodic_in_3d(chgnet):
    """Nothing reaches across 10 Å of vacuum (cutoff 5 Å): the slab and the same cell periodic
    along c have one ∂E/∂ε and one volume. The slab's comes from CHGNet's padded box rescaled to
    the caller's cell; it used to be dropped. (A finite-difference check takes CHGNet ~20 s:
    measured 1e-5 eV/Å³ off with h = 1e-3, float32 noise.)"""
    slab = _slab()
    periodic = stress_of(_slab((True, True, True)), chgnet)
    assert np.abs(periodic).max() > 1e-3
    np.testing.assert_allclose(stress_of(slab, chgnet), periodic, atol=2e-6)
    # σ·V does not depend on the vacuum
    wide = slab.copy()
    wide.center(vacuum=9.0, axis=2)
    np.testing.assert_allclose(
        stress_of(wide, chgnet) * wide.get_volume(),
        stress_of(slab, chgnet) * slab.get_volume(),
        atol=1e-3,
    )


@needs_chgnet
def test_chgnet_and_its_delta_refuse_a_molecule_stress_in_matloops_line(chgnet):
    molecule = NO_STRESS[0]
    expected = _refusal(molecule, untrained_bpnn())
    assert _refusal(molecule, chgnet) == expected
    assert _refusal(molecule, DeltaCalculator(chgnet, untrained_bpnn(), "chgnet")) == expected


@needs_chgnet
def test_delta_on_chgnet_gives_a_slab_the_sum_of_both_stresses(chgnet):
    slab = _slab()
    correction = untrained_bpnn()
    total = stress_of(slab, DeltaCalculator(chgnet, correction, "chgnet"))
    parts = stress_of(slab, chgnet) + stress_of(slab, correction)
    np.testing.assert_allclose(total, parts, atol=1e-12)
