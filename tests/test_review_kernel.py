"""Review of the `kernel` family: SOAP descriptor defects and the GP's σ far from the data.

EMT Cu is the truth throughout (energies in eV, σ = ``energy_std`` in eV/atom).
"""

from __future__ import annotations

import numpy as np
import pydantic
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from helpers.reference_data import rattled_fcc_cu

from matloop.calculators.potential import MatloopCalculator
from matloop.data import Dataset, fit_reference_energies
from matloop.descriptors.params import SOAPParams
from matloop.descriptors.soap import SOAPDescriptor
from matloop.models.graph import build_graph
from matloop.models.kernel import KernelPotential
from matloop.models.params import KernelParams
from matloop.training import TrainConfig

PARAMS = {"n_sparse": 60, "descriptor": {"cutoff": 4.5, "n_max": 6, "l_max": 4}}


@pytest.fixture(scope="module")
def model() -> KernelPotential:
    train = Dataset(rattled_fcc_cu(8, seed=10))
    out = KernelPotential(["Cu"], KernelParams.model_validate(PARAMS))
    out.set_reference_energies(fit_reference_energies(train, ["Cu"]))
    out.fit(train, Dataset(rattled_fcc_cu(6, seed=11)), TrainConfig(), progress=False)
    return out


def soap_features(atoms: Atoms, params: SOAPParams) -> torch.Tensor:
    """q̂ of every atom (n_atoms, n_features) from the descriptor alone."""
    desc = SOAPDescriptor(1, params)
    g = build_graph(atoms, ["Cu"], params.cutoff)
    return desc(g.vectors, g.centers, g.neighbor_species, len(atoms))


def test_central_weight_zero_is_refused():
    """w_c = 0 gave q̂ = 0/0 (NaN) for an atom without neighbours, and an energy jump when the
    last neighbour left the cutoff; it is refused when the parameters are read."""
    with pytest.raises(pydantic.ValidationError, match="central_weight"):
        SOAPParams(central_weight=0.0)
    # any w_c > 0 keeps an isolated atom's descriptor finite: q̂ = (1, 0, ...)
    q = soap_features(Atoms("Cu", [[0, 0, 0]]), SOAPParams(central_weight=0.1))
    assert torch.isfinite(q).all() and float(q[0, 0]) == pytest.approx(1.0)


def test_descriptor_is_continuous_where_the_last_neighbour_leaves():
    """A dimer stretched through the cutoff: q̂ and its slope go smoothly to the isolated atom's."""
    params = SOAPParams(cutoff=4.0, cutoff_width=1.0, n_max=4, l_max=2)
    isolated = soap_features(Atoms("Cu", [[0, 0, 0]]), params)[0]
    for gap in (1e-3, 1e-4):
        dimer = Atoms("Cu2", [[0, 0, 0], [4.0 - gap, 0, 0]])
        # smoothstep: the density falls as gap³, so q̂ approaches the limit faster than gap
        assert float((soap_features(dimer, params)[0] - isolated).abs().max()) < 10 * gap**2


def test_cell_shorter_than_the_cutoff_matches_its_supercell(model):
    """The 4-atom cubic cell (3.6 Å < 4.5 Å cutoff) sees its own periodic images."""
    small = bulk("Cu", "fcc", 3.6, cubic=True)
    small.rattle(0.05, seed=1)
    big = small * (2, 2, 2)
    results = []
    for atoms in (small, big):
        atoms.calc = MatloopCalculator(model)
        e = atoms.get_potential_energy() / len(atoms)
        results.append((e, atoms.get_forces(), atoms.get_stress(), atoms.calc))
    (e1, f1, s1, c1), (e2, f2, s2, c2) = results
    assert e1 == pytest.approx(e2, abs=1e-10)
    np.testing.assert_allclose(np.tile(f1, (8, 1)), f2, atol=1e-10)
    np.testing.assert_allclose(s1, s2, atol=1e-12)
    # identical periodic structures: the same σ per atom (the supercell's σ_E is 8× larger)
    assert c1.get_property("energy_std", small) == pytest.approx(
        c2.get_property("energy_std", big), rel=1e-8
    )


def test_sigma_far_from_the_data_reaches_the_prior(model):
    """Guard (passes before and after): the projected-process (DTC) variance goes to the prior
    δ² per atom far from the training data; the subset-of-regressors variance φA⁻¹φᵀ alone
    would collapse to ~0 there (an isolated atom has no kernel overlap with the sparse points)."""
    atom = Atoms("Cu", [[0, 0, 0]])
    calc = MatloopCalculator(model)
    atom.calc = calc
    prior = float(model.sigma_scale) * float(model.delta)  # eV per atom
    assert calc.get_property("energy_std", atom) == pytest.approx(prior, rel=0.05)
    near = rattled_fcc_cu(1, seed=3)[0]
    near.calc = calc
    assert calc.get_property("energy_std", near) < 0.05 * prior
