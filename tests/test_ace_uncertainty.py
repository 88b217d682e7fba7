"""Uncertainty of linear potentials from the Bayesian posterior: energy/force σ through the ASE
calculator (committee units), calibration on held-out EMT data, MaxVol extrapolation grade."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from test_ace_fit import cuau_cells, fitted_cuau_ace

from matloop.calculators.potential import MatloopCalculator
from matloop.models.ace.uncertainty import FeatureSample, coverage_stats, grade_map, maxvol


@pytest.fixture(scope="module")
def fitted():
    """A small ACE fitted on EMT Cu–Au (calibrated on its validation split) and its info."""
    model, _, info = fitted_cuau_ace(16, 6, seed=10)
    return model, info


def test_maxvol_bounds_every_row_by_one():
    a = np.random.default_rng(0).normal(size=(500, 12))
    idx = maxvol(a)
    assert len(set(idx.tolist())) == 12
    coefficients = a @ np.linalg.inv(a[idx])
    assert np.abs(coefficients).max() <= 1.01 + 1e-9
    np.testing.assert_allclose(coefficients[idx], np.eye(12), atol=1e-9)


def test_grade_map_is_per_element_and_grades_training_rows_at_most_one():
    rng = np.random.default_rng(1)
    species = rng.integers(0, 2, 600)
    feats = np.zeros((600, 10))
    feats[species == 0, :4] = rng.normal(size=((species == 0).sum(), 4))
    feats[species == 1, 4:] = rng.normal(size=((species == 1).sum(), 6))
    sample = FeatureSample(2, capacity=10_000)
    sample.add(feats, species)
    g, info = grade_map(sample, 10)
    assert g.shape == (10, 10) and info[0]["active_set"] == 4 and info[1]["active_set"] == 6
    grades = np.abs(feats @ g).max(1)
    assert grades.max() <= 1.01 + 1e-9
    # the active set's own rows have grade 1, so scaled by 3 they lie outside (grade 3)
    assert np.abs((3.0 * feats) @ g).max(1).max() == pytest.approx(3.0, rel=0.02)


def test_calculator_gives_committee_style_std_only_when_asked(fitted):
    model, _ = fitted
    calc = MatloopCalculator(model)
    assert calc.has_variance
    assert {"energy_std", "forces_std", "extrapolation_grade"} <= set(calc.implemented_properties)
    atoms = cuau_cells(1, seed=12)[0].copy()
    atoms.calc = calc
    atoms.get_forces()
    assert "forces_std" not in calc.results  # MD does not pay for σ
    fstd = calc.get_property("forces_std", atoms)
    estd = calc.get_property("energy_std", atoms)
    assert fstd.shape == (len(atoms),) and np.all(fstd > 0)
    # units: eV/Å per component and eV/atom; at least the fitted noise level, never huge
    noise_f = float(model.posterior.noise_variance[1].sqrt() * model.posterior.sigma_scale[1])
    assert fstd.min() >= noise_f * (1 - 1e-9) and fstd.max() < 10 * noise_f
    noise_e = float(model.posterior.noise_variance[0].sqrt() * model.posterior.sigma_scale[0])
    assert noise_e * (1 - 1e-9) <= estd < 10 * noise_e
    # the same numbers from the posterior by hand: σ² = s²(xᵀΣx + σ²_noise)
    graph = model.graph(atoms)
    rows = model.basis.design_rows(graph, forces=True, stress=False)
    root = model.posterior.covariance_root[: model.n_coefficients]  # rows beyond P: E0
    var = ((rows.forces @ root) ** 2).sum(1).reshape(-1, 3) + model.posterior.noise_variance[1]
    expected = model.posterior.sigma_scale[1] * var.mean(1).sqrt()
    np.testing.assert_allclose(fstd, expected.numpy(), rtol=1e-10)
    grade = calc.get_property("extrapolation_grade", atoms)
    assert grade.shape == (len(atoms),)
    assert calc.get_property("max_extrapolation_grade", atoms) == pytest.approx(grade.max())


def test_sigma_and_grade_grow_away_from_the_training_data(fitted):
    model, _ = fitted
    calc = MatloopCalculator(model)
    near = cuau_cells(1, seed=13)[0].copy()
    far = bulk("Cu", "fcc", 3.2, cubic=True) * (2, 2, 2)  # 15 % compressed, pure Cu
    far.rattle(0.25, seed=1)
    results = {}
    for name, atoms in (("near", near), ("far", far)):
        atoms.calc = calc
        results[name] = (
            calc.get_property("energy_std", atoms),
            calc.get_property("forces_std", atoms).mean(),
            calc.get_property("max_extrapolation_grade", atoms),
        )
    assert results["far"][0] > 3 * results["near"][0]
    assert results["far"][1] > 1.5 * results["near"][1]
    # with this little data the grade is the force σ relative to the validation atoms' (< 1 in
    # distribution); a 15 % compressed cell is far outside
    assert results["far"][2] > 10.0 * max(results["near"][2], 1.0)


def test_calibrated_coverage_on_held_out_emt_data(fitted):
    model, info = fitted
    assert info["calibration"]["forces"]["scale"] > 0
    calc = MatloopCalculator(model)
    f_err, f_sig = [], []
    for ref in cuau_cells(8, seed=14):
        atoms = ref.copy()
        atoms.calc = calc
        f_err.append((atoms.get_forces() - ref.get_forces()).ravel())
        f_sig.append(np.repeat(calc.get_property("forces_std", atoms), 3))
    stats = coverage_stats(np.concatenate(f_err), np.concatenate(f_sig))
    assert 0.85 <= stats["coverage_95"] <= 0.995, stats
    assert torch.all(model.posterior.sigma_scale > 0)
