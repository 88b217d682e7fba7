"""The `ace` family: physics of the potential, dtypes, batching, core repulsion, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from helpers.physics import assert_potential_physics

import matloop
from matloop.calculators.potential import MatloopCalculator
from matloop.models import get_family
from matloop.models.ace.family import AceParams, AcePotential
from matloop.models.graph import build_graph, collate
from matloop.models.io import load_model, save_model

ELEMENTS = ["Cu", "Au"]
PARAMS = {"cutoff": 4.5, "correlation_order": 4, "max_degree": 8, "max_l": 3}


def _model(seed: int = 0, scale: float = 0.01) -> AcePotential:
    model = AcePotential(ELEMENTS, AceParams(**PARAMS))
    g = torch.Generator().manual_seed(seed)
    model.set_coefficients(
        scale * torch.randn(model.n_coefficients, generator=g, dtype=torch.float64)
    )
    model.set_reference_energies({"Cu": -0.5, "Au": -1.0})
    return model


def _alloy(seed: int = 1, repeat=(2, 2, 2)) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.7) * repeat
    rng = np.random.default_rng(seed)
    atoms.symbols[rng.choice(len(atoms), len(atoms) // 3, replace=False)] = "Au"
    atoms.rattle(0.06, seed=seed)
    return atoms


@pytest.fixture(scope="module")
def model() -> AcePotential:
    return _model()


def test_family_is_registered():
    assert get_family("ace") is AcePotential
    assert AcePotential.custom_fit
    with pytest.raises(ValueError):
        AceParams(unknown=1)


def test_physics_float64_two_elements(model):
    calc = MatloopCalculator(model)
    assert_potential_physics(calc, _alloy(), "Cu", PARAMS["cutoff"])


def test_float32_agrees_with_float64(model):
    atoms = _alloy(3)
    graph = build_graph(atoms, ELEMENTS, model.cutoff)
    ref = model.predict(graph)
    m32 = _model().to(torch.float32)
    assert m32.dtype == torch.float32 and m32.coefficients.dtype == torch.float64
    out = m32.predict(graph.to(torch.float32))
    assert out["energy"].dtype == torch.float32
    np.testing.assert_allclose(out["energy"].double(), ref["energy"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["forces"].double(), ref["forces"], atol=1e-4)


def test_batch_equals_structures_one_by_one(model):
    structures = [_alloy(1), _alloy(2, repeat=(1, 2, 2)), _alloy(4, repeat=(2, 1, 1))]
    graphs = [build_graph(a, ELEMENTS, model.cutoff) for a in structures]
    batch = model.predict(collate(graphs))
    singles = [model.predict(g) for g in graphs]
    np.testing.assert_allclose(
        batch["energy"], torch.cat([s["energy"] for s in singles]), atol=1e-10
    )
    np.testing.assert_allclose(
        batch["forces"], torch.cat([s["forces"] for s in singles]), atol=1e-10
    )
    np.testing.assert_allclose(
        batch["virial"], torch.cat([s["virial"] for s in singles]), atol=1e-10
    )
    # the fast path equals autograd through the whole energy
    slow = {
        k: v.detach() for k, v in AcePotential.__mro__[1].predict(model, collate(graphs)).items()
    }
    np.testing.assert_allclose(batch["forces"], slow["forces"], atol=1e-10)
    np.testing.assert_allclose(batch["energy"], slow["energy"], atol=1e-10)


def test_new_coefficients_take_effect_in_float32():
    atoms = _alloy(6)
    m32 = _model(seed=2).to(torch.float32)
    graph = build_graph(atoms, ELEMENTS, m32.cutoff).to(torch.float32)
    first = m32.predict(graph)["energy"]
    m32.set_coefficients(2 * m32.coefficients)
    second = m32.predict(graph)["energy"]
    fresh = _model(seed=2)
    fresh.set_coefficients(2 * fresh.coefficients)
    ref = fresh.predict(graph.to(torch.float64))["energy"]
    assert abs(float(second[0] - first[0])) > 1e-3
    assert float(second[0]) == pytest.approx(float(ref[0]), rel=1e-5)


def test_params_are_validated():
    with pytest.raises(ValueError, match="inner_cutoff"):
        AceParams(cutoff=4.0, inner_cutoff=4.5)
    with pytest.raises(ValueError, match="one entry per correlation order"):
        AceParams(correlation_order=3, max_degree_per_order=[10, 8])


def test_core_repulsion_makes_close_atoms_repel():
    model = _model(seed=1, scale=0.5)  # even with large random coefficients
    r_in = float(model.basis.radial.inner_cutoff[0])
    calc = MatloopCalculator(model)
    distances = np.linspace(0.6, r_in - model.params.inner_width, 8)
    energies, forces = [], []
    for d in distances:
        dimer = Atoms("Cu2", positions=[[0, 0, 0], [d, 0, 0]])
        dimer.calc = calc
        energies.append(dimer.get_potential_energy())
        forces.append(dimer.get_forces()[1, 0])
    assert np.all(np.diff(energies) < 0), energies  # energy falls as the atoms separate
    assert np.all(np.array(forces) > 0), forces  # the outer atom is pushed away
    assert energies[0] - energies[-1] > 10.0  # steep: tens of eV over about an ångström


def test_save_load_and_matloop_load(model, tmp_path):
    path = save_model(model, tmp_path / "model.pt", {"note": "random coefficients"})
    loaded, meta = load_model(path)  # torch.load(weights_only=True) inside
    assert meta["note"] == "random coefficients"
    assert torch.equal(loaded.coefficients, model.coefficients)
    atoms = _alloy(5)
    calc = matloop.load(path)
    atoms.calc = calc
    ref = _alloy(5)
    ref.calc = MatloopCalculator(model)
    assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-9)


def test_saved_hyperparameters_pin_the_element_count_defaults():
    from matloop.models import get_family

    cls = get_family("ace")
    model = cls(["Cu", "Ni"])
    hp = model.hyperparameters()
    assert hp["max_degree_per_order"] == model.params.degrees(2)
    assert hp["n_radial"] == model.params.radial_count(2)
    rebuilt = cls.from_hyperparameters(["Cu", "Ni"], hp)
    assert rebuilt.basis.n_coefficients == model.basis.n_coefficients


def test_one_atom_cell_predicts_the_same_twice():
    # the reverse pass once wrote into the cached node weights when a block held one atom
    # (a broadcast of one column is already contiguous), so the second call differed
    torch.manual_seed(0)
    model = AcePotential(["Cu"], AceParams())
    model.set_coefficients(torch.randn(model.n_coefficients) * 1e-2)
    graph = model.graph(bulk("Cu", "fcc", 3.6))
    first = model.predict(graph)
    second = model.predict(graph)
    assert float(first["energy"]) == float(second["energy"])
    assert float(model.energy(graph)) == pytest.approx(float(first["energy"]), rel=1e-12)
