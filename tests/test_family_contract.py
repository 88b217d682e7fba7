"""Every family meets the contract in `matloop.testing` with two elements, in float32 and float64,
and batched like single structures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from test_models_physics import FAMILY_PARAMS

from matloop import testing
from matloop.calculators import resolve_calculator
from matloop.calculators.potential import MatloopCalculator
from matloop.data import Dataset, label_with
from matloop.models import FAMILIES, get_family
from matloop.training import TrainConfig

ELEMENTS = ["Cu", "Ni"]
PARAMS = {**FAMILY_PARAMS, "ace": {"cutoff": 4.0, "correlation_order": 2, "max_degree": 5.0}}


def _alloy_dataset(n: int = 6) -> Dataset:
    calc = resolve_calculator("emt")
    return Dataset(
        [label_with(testing.two_element_structure(seed=s), calc) for s in range(n)],
        source="emt-cuni",
    )


@pytest.fixture(scope="module")
def alloy_data() -> Dataset:
    return _alloy_dataset()


# the pretrained CHGNet and MACE take ~10–20 s each here: labelled slow (still run in CI)
SLOW = {"chgnet", "mace"}
FAMILY_PARAMS_LIST = [
    pytest.param(f, marks=pytest.mark.slow) if f in SLOW else f for f in sorted(FAMILIES)
]


@pytest.fixture(scope="module", params=FAMILY_PARAMS_LIST)
def model(request, alloy_data):
    spec = FAMILIES[request.param]
    if not spec.installed:
        pytest.skip(f"{request.param} needs {spec.requires} (not installed)")
    torch.manual_seed(0)
    cls = get_family(request.param)
    m = cls(ELEMENTS, cls.Params.model_validate(PARAMS.get(request.param, {}))).double()
    if cls.custom_fit and not cls.pretrained:
        m.fit(alloy_data, None, TrainConfig(), out_dir=None, progress=False)
    else:
        graphs = [m.prepare(a) for a in list(alloy_data)[:4]]
        m.fit_normalization(graphs, torch.linspace(-0.01, 0.01, 4, dtype=torch.float64))
    m.set_reference_energies({"Cu": -3.5, "Ni": -4.0})
    return m.eval()


def test_capabilities_declared(model):
    testing.assert_capabilities_declared(model)


def test_two_element_physics(model):
    testing.assert_two_element_physics(
        MatloopCalculator(model), testing.two_element_structure(seed=9)
    )


def test_float32_matches_float64(model):
    testing.assert_dtype_consistent(model, testing.two_element_structure(seed=10))


def test_dtype_check_catches_a_table_left_in_half_precision(alloy_data):
    """The float32 check fails when float32 evaluation rounds the coefficients to float16."""
    cls = get_family("ace")

    class HalfPrecisionCoefficients(cls):
        def _coefficients(self, dtype):
            c = self.coefficients.to(dtype)
            return c.half().to(dtype) if dtype == torch.float32 else c

    m = HalfPrecisionCoefficients(ELEMENTS, cls.Params.model_validate(PARAMS["ace"]))
    m.fit(alloy_data, None, TrainConfig(), out_dir=None, progress=False)
    with pytest.raises(AssertionError, match="float32 energy differs"):
        testing.assert_dtype_consistent(m.eval(), testing.two_element_structure(seed=10))


def test_batch_equals_single_structures(model):
    pure = bulk("Ni", "fcc", 3.52, cubic=True)
    pure.rattle(0.05, seed=1)
    structures = [
        testing.two_element_structure(seed=11),
        pure,
        testing.two_element_structure(seed=12),
    ]
    testing.assert_batch_equals_single(model, structures)


def test_contract_checks_can_fail(alloy_data):
    """A species-blind calculator fails the species check; a broken batch fails batching."""
    from ase.calculators.emt import EMT

    class SpeciesBlind(EMT):
        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            work = atoms.copy()
            work.symbols[:] = "Cu"
            super().calculate(work, properties, system_changes)

    atoms = testing.two_element_structure(seed=3)
    with pytest.raises(AssertionError):
        testing.assert_species_matter(SpeciesBlind(), atoms)
    assert np.isfinite(alloy_data[0].get_potential_energy())
