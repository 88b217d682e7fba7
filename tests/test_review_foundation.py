"""Review of the foundation calculators (CHGNet, MACE-MP), CHGNet fine-tuning and delta bases."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from conftest import TINY_MACE_PARAMS

from matloop.calculators import resolve_calculator
from matloop.errors import ConfigError, UnknownElementError
from matloop.models import get_family

needs_chgnet = pytest.mark.skipif(
    importlib.util.find_spec("chgnet") is None, reason="chgnet is not installed"
)
needs_mace = pytest.mark.skipif(
    importlib.util.find_spec("mace") is None, reason="mace-torch is not installed"
)


def _strained_cu() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.5, cubic=True)  # compressed: a clearly non-zero stress
    atoms.rattle(0.05, seed=1)
    return atoms


def _left_handed(atoms: Atoms) -> Atoms:
    """The same structure (same Cartesian positions) described by a left-handed cell."""
    mirrored = atoms.copy()
    mirrored.set_cell(atoms.cell.array[[1, 0, 2]], scale_atoms=False)
    assert np.linalg.det(mirrored.cell.array) < 0
    return mirrored


@needs_chgnet
def test_chgnet_stress_does_not_flip_sign_in_a_left_handed_cell(chgnet):
    """CHGNet divides ∂E/∂ε by the signed cell volume: the same crystal described by a
    left-handed cell used to come back with the opposite stress (σ_xx +19.2 GPa, not −19.2)."""
    atoms = _strained_cu()
    atoms.calc = chgnet
    stress = atoms.get_stress()
    energy = atoms.get_potential_energy()
    mirrored = _left_handed(atoms)
    mirrored.calc = chgnet
    assert mirrored.get_potential_energy() == pytest.approx(energy, abs=1e-4)
    assert abs(stress[:3]).min() > 0.01  # eV/Å³: the check below is not about zeros
    np.testing.assert_allclose(mirrored.get_stress(), stress, atol=2e-5)
    # and the calculator itself hands out ASE's Voigt stress (xx yy zz yz xz xy)
    assert chgnet.get_stress(mirrored).shape == (6,)


@needs_chgnet
def test_chgnet_element_it_lacks_is_one_clear_error(chgnet, tmp_path):
    """CHGNet embeds Z = 1..94: americium used to end in a torch traceback ("mat1 and mat2 shapes
    cannot be multiplied (1x95 and 94x1)"), was accepted by the fine-tuning family and was not
    checked as a delta base."""
    from matloop.training.delta import base_predictions

    atoms = Atoms("CuAm", positions=[[0, 0, 0], [2.5, 0, 0]], cell=[8, 8, 8], pbc=True)
    atoms.calc = chgnet
    with pytest.raises(UnknownElementError, match=r"Am .*'chgnet'"):
        atoms.get_potential_energy()
    with pytest.raises(UnknownElementError, match=r"Am in training structure 0 .*'chgnet'"):
        base_predictions([atoms], "chgnet")
    with pytest.raises(UnknownElementError, match=r"Am not described by the pretrained CHGNet"):
        get_family("chgnet")(["Cu", "Am"])
    assert "Pu" in chgnet.elements and "Am" not in chgnet.elements


@needs_chgnet
def test_chgnet_finetune_keeps_stress_of_periodic_structures_in_a_mixed_batch():
    """A training batch holding a periodic cell and an open cluster used to lose the stress of
    the periodic one (no virial at all), so `loss.stress` silently did nothing for it."""
    from matloop.models.graph import collate
    from matloop.models.outputs import stress_from_virial

    cls = get_family("chgnet")
    model = cls(["Cu"], cls.Params()).to(torch.float64)
    crystal = _strained_cu()
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.4, 0, 0], [0, 2.4, 0], [0, 0, 2.4]])
    alone = model.predict(model.graph(crystal))
    batch = collate([model.graph(crystal), model.graph(cluster)])
    both = model.predict(batch)
    assert "virial" in both
    stress = stress_from_virial(both["virial"], batch.volumes)
    expected = stress_from_virial(alone["virial"], model.graph(crystal).volumes)
    torch.testing.assert_close(stress[0], expected[0], atol=1e-8, rtol=1e-6)
    assert torch.isnan(stress[1]).all()  # an open structure has no stress
    torch.testing.assert_close(both["energy"][0], alone["energy"][0])


@pytest.fixture(scope="module")
def mace_file(tmp_path_factory):
    """A real (tiny, untrained) MACE model file for Cu, written offline."""
    if importlib.util.find_spec("mace") is None:
        pytest.skip("mace-torch is not installed")
    cls = get_family("mace")
    torch.manual_seed(0)
    params = TINY_MACE_PARAMS
    model = cls(["Cu"], cls.Params.model_validate(params)).to(torch.float64)
    path = tmp_path_factory.mktemp("mace") / "cu.model"
    torch.save(model.mace, path)
    return path


@needs_mace
def test_mace_mp_element_outside_its_table_is_one_clear_error(mace_file):
    """mace-torch used to fail on an element its model lacks with `ValueError: 47 is not in
    list` from its data code; a delta base check could not see its elements at all."""
    from matloop.training.delta import base_predictions

    calc = resolve_calculator("mace_mp", model=str(mace_file))
    assert calc.elements == ["Cu"]
    cu = bulk("Cu", "fcc", a=3.6)
    cu.calc = calc
    assert np.isfinite(cu.get_potential_energy())
    ag = bulk("Ag", "fcc", a=4.1)
    ag.calc = calc
    with pytest.raises(UnknownElementError, match=r"Ag .*'mace_mp'"):
        ag.get_potential_energy()
    with pytest.raises(UnknownElementError, match=r"Ag in training structure 0"):
        base_predictions([bulk("Ag", "fcc", a=4.1)], "mace_mp", model=str(mace_file))


@needs_mace
def test_mace_mp_missing_local_model_says_so(tmp_path):
    """A mistyped local path used to be reported as a failed download needing internet."""
    missing = tmp_path / "nowhere.model"
    with pytest.raises(ConfigError, match=r"model file .*nowhere.model.* not found") as err:
        resolve_calculator("mace_mp", model=str(missing))
    assert "internet" not in str(err.value) and "\n" not in str(err.value)
