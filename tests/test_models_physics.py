"""Every model family passes the shared physics checks (float64, random but scaled weights)."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk
from conftest import TINY_BPNN_PARAMS
from helpers import physics as checks

from matloop.calculators.potential import MatloopCalculator
from matloop.models import FAMILIES, get_family

FAMILY_PARAMS = {
    "bpnn": TINY_BPNN_PARAMS,
    "painn": {"features": 8, "layers": 2, "n_radial": 6, "cutoff": 4.0},
    "kernel": {"n_sparse": 40, "descriptor": {"cutoff": 4.0, "n_max": 4, "l_max": 3}},
    "mace": {
        "r_max": 4.0,
        "num_bessel": 6,
        "max_ell": 2,
        "correlation": 2,
        "hidden_irreps": "8x0e+8x1o",
        "mlp_irreps": "8x0e",
        "radial_mlp": [16],
    },
}


def _float64_calculator(family: str, dataset) -> MatloopCalculator:
    torch.manual_seed(0)
    cls = get_family(family)
    model = cls(["Cu"], cls.Params.model_validate(FAMILY_PARAMS.get(family, {}))).double()
    # closed-form families have no weights until fitted (a pretrained one, chgnet, has them)
    if cls.custom_fit and not getattr(cls, "pretrained", False):
        from matloop.training import TrainConfig

        model.fit(dataset, None, TrainConfig(), out_dir=None, progress=False)
    else:
        graphs = [model.prepare(a) for a in list(dataset)[:4]]
        model.fit_normalization(graphs, torch.linspace(-0.01, 0.01, 4, dtype=torch.float64))
    model.set_reference_energies({"Cu": -3.5})
    return MatloopCalculator(model)


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    if not FAMILIES[request.param].installed:  # optional families need their package
        pytest.skip(f"{request.param} needs {FAMILIES[request.param].requires} (not installed)")
    return request.param


@pytest.fixture
def structure():
    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 1)
    atoms.rattle(0.1, seed=3)
    return atoms


def test_forces_are_minus_energy_gradient(family, emt_cu_dataset, structure):
    checks.assert_forces_are_gradient(_float64_calculator(family, emt_cu_dataset), structure)


def test_energy_invariant_under_translation_rotation_permutation(family, emt_cu_dataset, structure):
    checks.assert_invariances(_float64_calculator(family, emt_cu_dataset), structure)


def test_stress_is_finite_strain_derivative(family, emt_cu_dataset, structure):
    checks.assert_stress_is_strain_derivative(
        _float64_calculator(family, emt_cu_dataset), structure
    )


def test_energy_continuous_across_cutoff(family, emt_cu_dataset):
    calc = _float64_calculator(family, emt_cu_dataset)
    checks.assert_smooth_cutoff(calc, "Cu", calc.cutoff)


def test_supercell_energy_per_atom_matches_primitive(family, emt_cu_dataset):
    calc = _float64_calculator(family, emt_cu_dataset)
    checks.assert_supercell_consistent(calc, bulk("Cu", "fcc", 3.6))


def test_training_path_matches_autograd_path(family, emt_cu_dataset, structure):
    """The cached-derivative training path gives the same forces/virial as plain autograd."""
    calc = _float64_calculator(family, emt_cu_dataset)
    model = calc.model
    reference = model.predict(model.graph(structure))
    cached = model.predict(model.prepare(structure))
    torch.testing.assert_close(cached["energy"], reference["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(cached["forces"], reference["forces"], rtol=0, atol=1e-10)
    torch.testing.assert_close(cached["virial"], reference["virial"], rtol=0, atol=1e-9)


def test_physics_checks_can_fail(emt_cu_dataset, structure):
    """A calculator with wrong forces is caught by the shared helper."""
    from ase.calculators.calculator import Calculator, all_changes

    inner = _float64_calculator("bpnn", emt_cu_dataset)

    class WrongForces(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            work = atoms.copy()
            work.calc = inner
            self.results = {
                "energy": work.get_potential_energy(),
                "forces": 1.01 * work.get_forces(),
            }

    with pytest.raises(AssertionError):
        checks.assert_forces_are_gradient(WrongForces(), structure)
