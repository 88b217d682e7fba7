"""The kernel GP's energy σ is scaled on the validation energies at fit time: a prior scale δ
set too small (σ far below the errors) is corrected, and files without the scale still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.reference_data import rattled_fcc_cu

from matloop.calculators.potential import MatloopCalculator
from matloop.data import Dataset, fit_reference_energies
from matloop.models.kernel import KernelPotential
from matloop.models.params import KernelParams
from matloop.training import TrainConfig


def cells(n: int, seed: int) -> Dataset:
    """Rattled, slightly strained 32-atom fcc Cu cells labelled with EMT."""
    return Dataset(rattled_fcc_cu(n, seed))


def fitted(train, valid, delta: float) -> tuple[KernelPotential, dict]:
    model = KernelPotential(["Cu"], KernelParams(delta=delta))
    model.set_reference_energies(fit_reference_energies(train, ["Cu"]))
    return model, model.fit(train, valid, TrainConfig(), progress=False)


def coverage(model, test) -> float:
    """Fraction of test energies per atom within 1.96 σ (the calculator's energy_std)."""
    calc = MatloopCalculator(model)
    inside = []
    for ref in test:
        atoms = ref.copy()
        atoms.calc = calc
        error = abs(atoms.get_potential_energy() - ref.get_potential_energy()) / len(atoms)
        inside.append(error <= 1.96 * calc.get_property("energy_std", atoms))
    return float(np.mean(inside))


@pytest.fixture(scope="module")
def data():
    return cells(12, seed=10), cells(24, seed=11), cells(30, seed=2)


@pytest.mark.parametrize("n_valid, rule", [(5, "widen only"), (24, "conformal")])
def test_a_too_small_prior_scale_is_calibrated_away(data, n_valid, rule):
    train, valid, test = data
    raw, info_raw = fitted(train, None, delta=0.01)
    assert info_raw["calibration"] is None
    assert coverage(raw, test) < 0.5  # δ = 0.01 eV: σ several times below the errors
    model, info = fitted(train, Dataset(list(valid)[:n_valid]), delta=0.01)
    calibration = info["calibration"]["energy"]
    assert calibration["rule"] == rule and calibration["scale"] > 3
    assert calibration["n_validation"] == n_valid
    assert coverage(model, test) >= 0.85


def test_a_well_scaled_gp_is_not_widened_from_few_energies(data):
    train, valid, _ = data
    model, info = fitted(train, Dataset(list(valid)[:5]), delta=1.0)
    assert info["calibration"]["energy"]["scale"] >= 1.0
    assert float(model.sigma_scale) == info["calibration"]["energy"]["scale"]


def test_a_model_file_without_the_scale_loads_with_the_gp_sigma(data):
    train, valid, _ = data
    model, _ = fitted(train, valid, delta=0.01)
    state = {k: v for k, v in model.state_dict().items() if k != "sigma_scale"}
    fresh = KernelPotential(["Cu"], KernelParams(delta=0.01))
    fresh.load_state_dict(state)
    assert float(fresh.sigma_scale) == 1.0
    graph = model.graph(train[0])
    scale2 = float(model.sigma_scale) ** 2
    torch.testing.assert_close(model.energy_variance(graph), scale2 * fresh.energy_variance(graph))
