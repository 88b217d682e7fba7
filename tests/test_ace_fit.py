"""Closed-form fit of linear potentials: streamed normal equations, evidence maximisation, ARD,
validation-chosen regularisation, and `fit_ace` on real (EMT) two-element data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

import matloop
from matloop.calculators.potential import MatloopCalculator
from matloop.cli import main
from matloop.data import Dataset, fit_reference_energies, label_with
from matloop.models.ace.family import AceParams, AcePotential
from matloop.models.ace.fitting import AceFitParams, accumulate, fit_ace
from matloop.models.ace.solver import NormalEquations, ard_fit, evidence_fit
from matloop.training import TrainConfig

SMALL_ACE = {"cutoff": 4.5, "correlation_order": 3, "max_degree": 6}


def cuau_cells(n: int, seed: int, calc=None, rattle: float = 0.1, au: float = 0.3) -> Dataset:
    """Rattled, strained 32-atom fcc Cu–Au cells labelled with EMT (or `calc`)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", 3.75 * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * (2, 2, 2)
        a.set_chemical_symbols(np.where(rng.random(len(a)) < au, "Au", "Cu"))
        a.rattle(rattle, seed=int(rng.integers(1 << 30)))
        out.append(label_with(a, calc if calc is not None else EMT(), config_type="alloy"))
    return Dataset(out, source="emt-cuau")


def _random_problem(seed=0, n=1500, p=20, noise=0.1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.01, 100.0, size=p)  # badly scaled columns
    c = rng.normal(size=p)
    return x, c, x @ c + noise * rng.normal(size=n)


def test_chunked_accumulation_equals_one_shot():
    x, _, y = _random_problem()
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    one = NormalEquations(x.shape[1])
    one.add("forces", x, y, w)
    chunked = NormalEquations(x.shape[1])
    for start in range(0, len(y), 257):
        part = NormalEquations(x.shape[1])
        part.add("forces", x[start : start + 257], y[start : start + 257], w[start : start + 257])
        chunked.merge(part)
    a, b = one.blocks["forces"], chunked.blocks["forces"]
    np.testing.assert_allclose(b.gram, a.gram, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(b.rhs, a.rhs, rtol=1e-12, atol=1e-9)
    assert b.yy == pytest.approx(a.yy, rel=1e-12) and b.n_rows == a.n_rows == len(y)


def test_evidence_finds_the_noise_and_agrees_with_bayesian_ridge():
    from sklearn.linear_model import BayesianRidge

    x, c, y = _random_problem(noise=0.1)
    eqs = NormalEquations(x.shape[1])
    eqs.add("energy", x, y)
    post, _ = evidence_fit(eqs, {"energy": 1.0})
    assert post.converged
    # β = 1/σ² of the noise that was added (0.1 → 100), within sampling error
    assert post.beta["energy"] == pytest.approx(100.0, rel=0.08)
    assert np.abs(post.coefficients - c).max() < 0.05
    assert post.gamma == pytest.approx(x.shape[1], rel=0.01)  # every parameter well determined
    # the same model as scikit-learn's BayesianRidge on the unit-norm columns we use
    scaled = x / np.linalg.norm(x, axis=0)
    ref = BayesianRidge(fit_intercept=False, tol=1e-10, max_iter=500).fit(scaled, y)
    assert post.beta["energy"] == pytest.approx(ref.alpha_, rel=1e-5)
    assert post.alpha[0] == pytest.approx(ref.lambda_, rel=1e-4)
    # posterior covariance Σ = (α D² + β XᵀX)⁻¹ in original units
    sigma = post.covariance_root @ post.covariance_root.T
    d2 = np.diag(np.sum(x**2, axis=0))
    expected = np.linalg.inv(post.alpha[0] * d2 + post.beta["energy"] * x.T @ x)
    np.testing.assert_allclose(sigma, expected, rtol=1e-6, atol=1e-14)


def test_ard_prunes_an_irrelevant_group():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 20))
    c = np.where(np.arange(20) < 10, rng.normal(size=20), 0.0)  # group 1 is pure noise
    eqs = NormalEquations(20)
    eqs.add("energy", x, x @ c + 0.05 * rng.normal(size=400))
    groups = (np.arange(20) >= 10).astype(int)
    start, _ = evidence_fit(eqs, {"energy": 1.0})
    post = ard_fit(eqs, {"energy": 1.0}, groups, per_kind_noise=False, start=start)
    alpha_relevant, alpha_irrelevant = post.alpha[0], post.alpha[-1]
    assert alpha_irrelevant > 100 * alpha_relevant
    assert post.log_evidence > start.log_evidence
    assert np.abs(post.coefficients[10:]).max() < 0.02


def ace_model(seed: int | None = None, **params) -> AcePotential:
    """A small two-element ACE; random coefficients with `seed`."""
    model = AcePotential(["Cu", "Au"], AceParams(**{**SMALL_ACE, **params}))
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        model.set_coefficients(0.02 * torch.randn(model.n_coefficients, generator=g))
    return model


def fitted_cuau_ace(n_train: int, n_valid: int, seed: int):
    """A small ACE fitted on `n_train` EMT Cu–Au cells (validation: `n_valid` more), the
    training cells and the fit facts."""
    from matloop.data import fit_reference_energies
    from matloop.models.ace.fitting import fit_ace
    from matloop.training import TrainConfig

    train, valid = cuau_cells(n_train, seed=seed), cuau_cells(n_valid, seed=seed + 1)
    model = ace_model()
    model.set_reference_energies(fit_reference_energies(train, ["Cu", "Au"]))
    return model, train, fit_ace(model, train, valid, TrainConfig(), progress=False)


@pytest.fixture(scope="module")
def target_model():
    """An ACE with known coefficients: data made with it are exactly representable."""
    model = ace_model(seed=4)
    model.set_reference_energies({"Cu": -1.0, "Au": -2.0})
    return model


def test_fit_recovers_a_linear_target_exactly(target_model):
    calc = MatloopCalculator(target_model)
    train = cuau_cells(10, seed=0, calc=calc)
    valid = cuau_cells(3, seed=1, calc=calc)
    model = ace_model()
    model.set_reference_energies(target_model.e0)
    info = fit_ace(model, train, valid, TrainConfig(), progress=False)
    # the core repulsion is a fixed offset: only the linear part is fitted, and exactly
    # (RMSEs from normal equations: round-off floor ~1e-8 eV/atom)
    assert info["valid_errors"]["force_rmse_ev_per_a"] < 1e-6
    assert info["valid_errors"]["energy_rmse_mev_per_atom"] < 1e-3
    test = cuau_cells(2, seed=3, calc=calc)
    for ref in test:
        atoms = ref.copy()
        atoms.calc = MatloopCalculator(model)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-6)
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-5)


def test_streamed_fit_equals_one_chunk():
    """A lazy iterable fed in small chunks gives the normal equations of one big chunk."""
    data = cuau_cells(4, seed=2)
    model = ace_model()
    model.set_reference_energies(fit_reference_energies(data, ["Cu", "Au"]))
    kinds = {"energy", "forces", "stress"}
    big = accumulate(model, list(data), kinds, chunk_atoms=10_000)
    small = accumulate(model, (a for a in data), kinds, chunk_atoms=1)
    for kind in ("energy", "forces", "stress"):
        a, b = big.blocks[kind], small.blocks[kind]
        np.testing.assert_allclose(b.gram, a.gram, rtol=1e-10, atol=1e-12 * np.abs(a.gram).max())
        np.testing.assert_allclose(b.rhs, a.rhs, rtol=1e-10, atol=1e-12 * np.abs(a.rhs).max())
    assert small.n_rows("forces") == 3 * data.n_atoms and small.n_rows("stress") == 6 * len(data)


def test_fit_on_emt_alloy_reports_both_regularisations():
    train, valid = cuau_cells(14, seed=5), cuau_cells(4, seed=6)
    model = ace_model(fit=AceFitParams(ard="order"))
    model.set_reference_energies(fit_reference_energies(train, ["Cu", "Au"]))
    info = fit_ace(model, train, valid, TrainConfig(), progress=False)
    report = info["regularisation"]
    assert report["kept"] in ("evidence", "validation")
    assert {"evidence", "validation", "ard"} <= set(report)
    ev = report["evidence"]
    # α and β are sensible: a finite prior, noise at the level of the misfit of EMT
    assert 0 < ev["effective_parameters"] <= info["n_coefficients"]
    assert 1e-5 < ev["noise_std"]["energy"] < 0.01  # eV/atom
    assert 1e-3 < ev["noise_std"]["forces"] < 0.1  # eV/Å
    valid_rmse = info["valid_errors"]["force_rmse_ev_per_a"]
    assert ev["noise_std"]["forces"] == pytest.approx(valid_rmse, rel=0.5)
    mean_force = np.mean([np.abs(a.get_forces()).mean() for a in valid])
    assert valid_rmse < 0.05 * mean_force  # a broken fit misses by the size of the forces
    assert isinstance(report["ard"]["alpha"], list) and len(report["ard"]["alpha"]) == 3
    assert info["fit_seconds"] > 0
    assert torch.all(model.posterior.sigma_scale > 0)


def test_cli_train_ace_then_reload_gives_identical_predictions_and_sigma(tmp_path):
    data = cuau_cells(14, seed=7)
    data.write(tmp_path / "train.xyz")
    config = tmp_path / "ace.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"family": "ace", "params": SMALL_ACE}}, sort_keys=False)
    )
    out = tmp_path / "run"
    code = main(
        ["train", "--train", str(tmp_path / "train.xyz"), "--out", str(out), "--model", "ace",
         "--config", str(config), "--no-progress"]
    )  # fmt: skip
    assert code in (0, None)
    calc = matloop.load(out)
    assert calc.family == "ace" and calc.has_variance
    fit = calc.metadata["fit"]
    assert fit["n_coefficients"] == ace_model().n_coefficients
    assert fit["kept"] in ("evidence", "validation")
    # validated with the E0 the fit refined (not the composition-only E0 it started from)
    assert calc.metadata["best_valid"]["valid_force_mae_ev_per_a"] < 0.02
    assert calc.metadata["best_valid"]["valid_energy_mae_mev_per_atom"] < 2.0
    atoms = cuau_cells(1, seed=8)[0].copy()
    values = {}
    for name, c in (("trained", calc), ("reloaded", matloop.load(out / "model.pt"))):
        atoms.calc = c
        values[name] = (
            atoms.get_potential_energy(),
            atoms.get_forces(),
            c.get_property("energy_std", atoms),
            c.get_property("forces_std", atoms),
            c.get_property("extrapolation_grade", atoms),
        )
    for a, b in zip(values["trained"], values["reloaded"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_profiled_normal_equations_equal_the_dense_congruence():
    """The E0 columns are eliminated with T = [I; M]; the O(P²) product must equal Tᵀ A T."""
    from matloop.models.ace.solver import NormalEquations, profile_transform

    rng = np.random.default_rng(0)
    n_coef, n_el = 300, 4
    design = rng.normal(size=(900, n_coef + n_el))
    eqs = NormalEquations(n_coef + n_el)
    eqs.add("energy", design, rng.normal(size=900))
    eqs.add("forces", 0.3 * design[:500], rng.normal(size=500))
    t_matrix, t_offset = profile_transform(eqs, n_coef)
    profiled = eqs.transformed(t_matrix, t_offset)
    for kind, block in eqs.blocks.items():
        dense = t_matrix.T @ block.gram @ t_matrix
        np.testing.assert_allclose(profiled.blocks[kind].gram, dense, rtol=1e-10, atol=1e-9)
    shuffled = t_matrix[::-1].copy()  # no identity block: the dense product is used
    np.testing.assert_allclose(
        eqs.transformed(shuffled, t_offset).blocks["energy"].gram,
        shuffled.T @ eqs.blocks["energy"].gram @ shuffled,
        rtol=1e-10,
        atol=1e-9,
    )
