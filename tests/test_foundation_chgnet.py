"""CHGNet by name and as a delta-learning base (skipped when the optional chgnet is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

pytest.importorskip("chgnet")

import matloop  # noqa: E402
from matloop.calculators.foundation import DeltaCalculator  # noqa: E402
from matloop.training import TrainConfig  # noqa: E402
from matloop.training.delta import base_predictions, train_delta  # noqa: E402


def test_chgnet_by_name_energy_forces_stress(chgnet):
    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    atoms.calc = chgnet
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    assert isinstance(energy, float) and -5.6 < energy / len(atoms) < -4.8  # Si ≈ −5.4 eV/atom
    assert forces.dtype == np.float64 and abs(forces.sum(0)).max() < 1e-3
    # stress in eV/Å³ with the ASE sign: compare with a finite isotropic strain
    eps, energies = 1e-3, []
    for d in (eps, -eps):
        strained = atoms.copy()
        strained.set_cell(atoms.cell * (1 + d), scale_atoms=True)
        strained.calc = chgnet
        energies.append(strained.get_potential_energy())
    pressure_fd = (energies[0] - energies[1]) / (2 * eps) / atoms.get_volume() / 3
    assert stress[:3].mean() == pytest.approx(pressure_fd, abs=2e-4)


def test_delta_on_chgnet_loads_as_sum(tmp_path, chgnet):
    from helpers.reference_data import sw_si_structures

    data = sw_si_structures(6, seed=3)
    preds = base_predictions(data, "chgnet")
    config = TrainConfig.model_validate(
        {
            "model": {"family": "painn", "params": {"features": 8, "layers": 1, "cutoff": 4.0}},
            "training": {"max_epochs": 2, "batch_size": 3},
        }
    )
    result = train_delta(data, "chgnet", tmp_path, config, predictions=preds, progress=False)
    calc = matloop.load(result.model_path)
    assert isinstance(calc, DeltaCalculator) and calc.metadata["delta_base"] == "chgnet"
    atoms = data[0].copy()
    atoms.calc = calc
    correction = data[0].copy()
    correction.calc = calc.correction
    assert atoms.get_potential_energy() == pytest.approx(
        preds[0].energy + correction.get_potential_energy(), abs=1e-4
    )
