"""Edge cases of matloop potentials used as ASE calculators (found in a user-side review)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from helpers.small_models import untrained_bpnn

from matloop.calculators.potential import MatloopCalculator
from matloop.errors import DataError, ModelFileError
from matloop.models import get_family
from matloop.models.chgnet_family import padded_cell
from matloop.models.io import load_model, save_model


def _slab(pbc=(True, True, False)) -> Atoms:
    slab = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
    slab.rattle(0.05, seed=3)
    slab.pbc = pbc
    slab.center(vacuum=1.0, axis=2)
    return slab


@pytest.mark.parametrize(
    ("cell", "pbc"),
    [
        (np.zeros((3, 3)), True),
        ([5.0, 5.0, 0.0], True),
        ([[4, 0, 0], [8, 0, 0], [0, 0, 4]], (True, True, False)),
    ],
)
def test_periodic_axes_without_a_cell_are_one_clear_error(cell, pbc):
    """pbc=True with a zero or degenerate cell was vesin's 'the box matrix is not invertible'."""
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=cell, pbc=pbc)
    atoms.calc = untrained_bpnn()
    with pytest.raises(DataError, match="periodic along .* (zero|linearly dependent)"):
        atoms.get_potential_energy()


def test_neighbor_list_refuses_dependent_periodic_vectors():
    """Training and descriptors build graphs without the calculator: vesin's SIGFPE killed them."""
    from matloop.neighbors import neighbor_list

    atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[[4, 0, 0], [8, 0, 0], [0, 0, 4]])
    atoms.pbc = (True, True, False)
    with pytest.raises(DataError, match="periodic along a, b but cell vectors a, b are linear"):
        neighbor_list(atoms, 4.0)


def test_nan_position_is_one_clear_error():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 0, 0]], cell=[5, 5, 5], pbc=True)
    atoms.calc = untrained_bpnn()
    with pytest.raises(DataError, match="atom 1 has a NaN or inf position"):
        atoms.get_potential_energy()


def test_open_axis_without_cell_vector_is_accepted():
    """A slab periodic in x, y with no c vector is valid: same energy as with a vacuum c."""
    slab = _slab()
    flat = slab.copy()
    flat.cell[2] = 0.0
    calc = untrained_bpnn()
    energies = []
    for atoms in (slab, flat):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], abs=1e-10)


@pytest.mark.parametrize("pbc", [(True, True, False), (True, False, False), (False,) * 3])
def test_padded_cell_keeps_periodic_vectors_and_isolates_open_axes(pbc):
    """Open axes get vectors orthogonal to the periodic ones, longer than extent + 2·pad."""
    atoms = bulk("Cu", "fcc", 3.6) * (2, 2, 2)  # triclinic (primitive fcc) cell
    atoms.rattle(0.1, seed=1)
    atoms.pbc = pbc
    pad = 7.0
    cell = padded_cell(atoms, pad)
    mask = np.asarray(pbc)
    np.testing.assert_array_equal(cell[mask], atoms.cell.array[mask])
    assert np.linalg.det(cell) > 0
    for k in np.flatnonzero(~mask):
        unit = cell[k] / np.linalg.norm(cell[k])
        np.testing.assert_allclose(cell[mask] @ unit, 0.0, atol=1e-10)
        extent = np.ptp(atoms.positions @ unit)
        assert np.linalg.norm(cell[k]) == pytest.approx(extent + 2 * pad)


def test_chgnet_family_slab_keeps_in_plane_images():
    """A pbc (T, T, F) slab was evaluated as an isolated cluster (18 eV off on 32 atoms)."""
    pytest.importorskip("chgnet")
    calc = MatloopCalculator(get_family("chgnet")(["Cu"]))
    slab = _slab()
    periodic = slab.copy()
    periodic.pbc = True
    periodic.cell[2, 2] += 20.0  # 21 Å of vacuum: no interaction across z
    cluster = slab.copy()
    cluster.pbc = False
    energies = []
    for atoms in (slab, periodic, cluster):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], abs=1e-3)
    assert abs(energies[0] - energies[2]) > 1.0


def test_pretrained_chgnet_molecule_without_cell():
    """resolve_calculator('chgnet') on a molecule with no cell was numpy's 'Singular matrix'."""
    pytest.importorskip("chgnet")
    from matloop.calculators import resolve_calculator

    calc = resolve_calculator("chgnet")
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [2.4, 0, 0]])
    boxed = dimer.copy()
    boxed.cell = [30, 30, 30]
    energies = []
    for atoms in (dimer, boxed):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert np.isfinite(energies[0])
    assert energies[0] == pytest.approx(energies[1], abs=1e-4)
    with pytest.raises(PropertyNotImplementedError):
        dimer.get_stress()
    dimer.positions[1, 0] = 2.6  # the cache follows the caller's atoms, not the padded copy
    assert dimer.get_potential_energy() != pytest.approx(energies[0], abs=1e-6)


def test_model_of_another_family_is_refused_in_one_line(tmp_path):
    model = untrained_bpnn().model
    path = save_model(model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["family"] = "painn"
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "other.pt")
    message = str(info.value)
    assert "\n" not in message and "'painn'" in message and "hyperparameters" in message
    payload["family"] = "bpnn"
    payload["elements"] = ["Cu", "Ni"]  # weights of a one-element network
    torch.save(payload, tmp_path / "elements.pt")
    with pytest.raises(ModelFileError) as info:
        load_model(tmp_path / "elements.pt")
    assert "\n" not in str(info.value) and len(str(info.value)) < 500


def test_atoms_on_top_of_each_other_raise_instead_of_nan():
    """Coincident atoms gave a finite BPNN energy with NaN forces (NaN energy in other families)."""
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [0, 0, 0], [2.5, 0, 0]], cell=[6, 6, 6], pbc=True)
    atoms.calc = untrained_bpnn()
    with pytest.raises(DataError, match="atoms 0 and 1 are 0 Å apart"):
        atoms.get_forces()


@pytest.mark.parametrize("family", ["bpnn", "mace"])
def test_empty_structure_has_zero_energy(family):
    """An empty Atoms crashed the mace family inside a reshape; the others returned 0."""
    if family == "mace":
        if importlib.util.find_spec("mace") is None:  # importing mace itself leaks an env var
            pytest.skip("mace-torch is not installed")
        calc = MatloopCalculator(get_family("mace")(["Cu"]))
    else:
        calc = untrained_bpnn()
    for atoms in (Atoms(), Atoms(cell=[5, 5, 5], pbc=True)):
        atoms.calc = calc
        assert atoms.get_potential_energy() == 0.0
        assert atoms.get_forces().shape == (0, 3)
    np.testing.assert_array_equal(atoms.get_stress(), np.zeros(6))
