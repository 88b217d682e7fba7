"""Basis choice on the validation split (nested candidates from one pass of design rows) and the
energy σ calibration that pools validation energies with training PRESS errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from test_ace_fit import ace_model, cuau_cells

from matloop.calculators.potential import MatloopCalculator
from matloop.data import fit_reference_energies
from matloop.errors import ConfigError
from matloop.models.ace.basis import nested_columns
from matloop.models.ace.family import AcePotential
from matloop.models.ace.fitting import AceFitParams, chunk_graph, fit_ace
from matloop.models.ace.uncertainty import coverage_stats, group_press_z, press_z
from matloop.models.io import load_model, save_model
from matloop.training import TrainConfig


def test_truncated_basis_rows_are_columns_of_the_larger_basis():
    small, large = ace_model(max_degree=5), ace_model(max_degree=7, max_l=3)
    cols = nested_columns(small.basis, large.basis)
    assert len(cols) == small.n_coefficients < large.n_coefficients
    graph = chunk_graph(large, list(cuau_cells(2, seed=20)))
    a = small.basis.design_rows(graph, forces=True, stress=True)
    b = large.basis.design_rows(graph, forces=True, stress=True)
    for name in ("energy", "forces", "virial"):
        x, y = getattr(a, name).double(), getattr(b, name).double()[..., cols]
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="not nested"):
        nested_columns(small.basis, ace_model(max_degree=7, cutoff=4.0).basis)
    with pytest.raises(ValueError, match="not in the larger basis"):
        nested_columns(ace_model(max_degree=7).basis, ace_model(max_degree=5).basis)


def test_press_z_equals_refitting_without_each_row():
    """PRESS z = (y − x·m₋ᵢ) / √(xᵀΣ₋ᵢx + σ²), Σ₋ᵢ, m₋ᵢ the posterior without row i."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=6) + 0.3 * rng.normal(size=40)
    alpha, noise = 0.5, 0.09

    def posterior(keep):
        cov = np.linalg.inv(alpha * np.eye(6) + x[keep].T @ x[keep] / noise)
        return cov @ x[keep].T @ y[keep] / noise, cov

    mean, cov = posterior(np.ones(40, bool))
    z = press_z(x, y, mean, np.linalg.cholesky(cov), noise)
    for i in range(40):
        keep = np.arange(40) != i
        m_i, cov_i = posterior(keep)
        expected = (y[i] - x[i] @ m_i) / np.sqrt(x[i] @ cov_i @ x[i] + noise)
        assert z[i] == pytest.approx(expected, rel=1e-8)


def test_group_press_z_equals_refitting_without_the_group():
    """Leaving a structure out whole: its energy row (first) and its force rows together."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 5))
    y = x @ rng.normal(size=5) + 0.2 * rng.normal(size=60)
    noise = np.where(np.arange(60) % 4 == 0, 0.04, 0.01)  # energy rows, then 3 force rows
    alpha = 0.3

    def posterior(keep):
        w = 1.0 / noise[keep]
        cov = np.linalg.inv(alpha * np.eye(5) + (x[keep].T * w) @ x[keep])
        return cov @ (x[keep].T * w) @ y[keep], cov

    mean, cov = posterior(np.ones(60, bool))
    root = np.linalg.cholesky(cov)
    for g in range(0, 60, 4):
        group = np.arange(g, g + 4)
        z = group_press_z(x[group], y[group], mean, root, noise[group])
        m_g, cov_g = posterior(~np.isin(np.arange(60), group))
        expected = (y[g] - x[g] @ m_g) / np.sqrt(x[g] @ cov_g @ x[g] + noise[g])
        assert z == pytest.approx(expected, rel=1e-8)


@pytest.fixture(scope="module")
def searched():
    train, valid = cuau_cells(30, seed=21), cuau_cells(5, seed=22)
    fit = AceFitParams(basis_degrees=[4, 5, 6], basis_radial_scales=[1.0, 2.0])
    model = ace_model(max_degree=6, fit=fit)
    model.set_reference_energies(fit_reference_energies(train, ["Cu", "Au"]))
    info = fit_ace(model, train, valid, TrainConfig(), progress=False)
    return model, info, train, valid


def test_basis_search_keeps_the_lowest_validation_loss_and_saves_it(searched, tmp_path):
    model, info, _, _ = searched
    search = info["basis_search"]
    scores = [c["valid_score"] for c in search["candidates"]]
    assert len(scores) == 6 and len({c["n_coefficients"] for c in search["candidates"]}) == 3
    chosen = search["chosen"]
    assert chosen["valid_score"] == min(scores)
    assert model.n_coefficients == chosen["n_coefficients"] == info["n_coefficients"]
    assert model.params.radial_scale == chosen["radial_scale"]
    assert model.params.max_degree_per_order == chosen["max_degree_per_order"]
    # the saved file rebuilds the chosen basis, with identical predictions and σ
    path = save_model(model, tmp_path / "model.pt", {})
    loaded, _ = load_model(path)
    atoms = cuau_cells(1, seed=23)[0]
    out = []
    for m in (model, loaded):
        a = atoms.copy()
        a.calc = MatloopCalculator(m)
        out.append((a.get_potential_energy(), a.get_forces(), a.calc.get_property("energy_std", a)))
    np.testing.assert_array_equal(out[0][1], out[1][1])
    assert out[0][0] == out[1][0] and out[0][2] == out[1][2]


def test_tolerance_prefers_fewer_coefficients(searched):
    _, info, train, valid = searched
    fit = AceFitParams(basis_degrees=[4, 6], basis_tolerance=1e6)
    model = ace_model(max_degree=6, fit=fit)
    model.set_reference_energies(fit_reference_energies(train, ["Cu", "Au"]))
    small = fit_ace(model, train, valid, TrainConfig(), progress=False)
    assert model.n_coefficients == min(
        c["n_coefficients"] for c in info["basis_search"]["candidates"]
    )
    assert small["basis_search"]["chosen"]["max_degree_per_order"] == [4.0, 4.0, 4.0]


def test_energy_calibration_pools_press_errors_with_few_validation_energies(searched):
    model, info, train, valid = searched
    energy = info["calibration"]["energy"]
    # every training structure left out whole (small data: its force rows are kept in memory)
    assert energy["n_validation"] == len(valid) and energy["n_press"] == len(train)
    assert energy["scale"] > 0 and info["calibration"]["forces"]["n_validation"] > 100
    calc = MatloopCalculator(model)
    e_err, e_sig = [], []
    for ref in cuau_cells(30, seed=24):
        atoms = ref.copy()
        atoms.calc = calc
        e_err.append((atoms.get_potential_energy() - ref.get_potential_energy()) / len(atoms))
        e_sig.append(calc.get_property("energy_std", atoms))
    stats = coverage_stats(np.array(e_err), np.array(e_sig))
    assert 0.8 <= stats["coverage_95"] <= 1.0, stats


def test_search_candidates_are_validated():
    with pytest.raises(ValidationError, match="basis_degrees"):
        AceFitParams(basis_degrees=[])
    model = ace_model(max_degree=5, fit=AceFitParams(basis_degrees=[4, 8]))
    data = cuau_cells(3, seed=25)
    model.set_reference_energies(fit_reference_energies(data, ["Cu", "Au"]))
    with pytest.raises(ConfigError, match="above the model's max degree"):
        fit_ace(model, data, data, TrainConfig(), progress=False)
    model = ace_model(max_degree=5, fit=AceFitParams(basis_degrees=[4, 5]))
    with pytest.raises(ConfigError, match="needs validation data"):
        fit_ace(model, data, None, TrainConfig(), progress=False)
    assert isinstance(model, AcePotential)
