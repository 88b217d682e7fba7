"""The `kernel` family: SOAP-like descriptor + sparse GP fitted in closed form, with variance."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk, fcc111

import matloop
from matloop.calculators.potential import MatloopCalculator
from matloop.cli import main
from matloop.data import fit_reference_energies
from matloop.descriptors.soap import SOAPDescriptor, SOAPParams
from matloop.errors import ConfigError
from matloop.evaluation import evaluate
from matloop.models.graph import build_graph
from matloop.models.kernel import KernelParams, KernelPotential
from matloop.training import TrainConfig, train
from matloop.training.config import parse_config

# small but accurate enough for EMT Cu (about 2 s to fit 24 × 32 atoms on one core)
KERNEL_PARAMS = {
    "n_sparse": 150,
    "descriptor": {"cutoff": 4.5, "n_max": 8, "l_max": 4, "r_min": 1.5, "width_factor": 0.7},
}


def _config(**training) -> TrainConfig:
    return TrainConfig.model_validate(
        {"model": {"family": "kernel", "params": KERNEL_PARAMS}, "training": training}
    )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, emt_cu_dataset):
    """A kernel model trained by matloop's trainer on the EMT Cu fixture (path, result)."""
    out = tmp_path_factory.mktemp("kernel_cu")
    result = train(emt_cu_dataset, out, _config(), progress=False)
    return result


def test_fit_reaches_small_test_errors(fitted, emt_cu_test_dataset):
    calc = matloop.load(fitted.model_path)
    assert calc.family == "kernel"
    metrics = evaluate(calc, emt_cu_test_dataset)
    mean_force = np.mean([np.abs(a.get_forces()).mean() for a in emt_cu_test_dataset])
    # a broken fit misses by the size of the forces (~0.3 eV/Å) and energies (tens of meV/atom)
    assert metrics["energy_mae_mev_per_atom"] < 3.0, metrics
    assert metrics["force_mae_ev_per_a"] < 0.08 < 0.25 * mean_force, (metrics, mean_force)
    fit = json.loads(json.dumps(calc.metadata["fit"]))
    assert fit["n_sparse"] == 150 and fit["n_force_structures"] > 0


def test_save_load_round_trip_and_energy_std(fitted, emt_cu_test_dataset, tmp_path):
    calc = matloop.load(fitted.model_path)
    assert "energy_std" in calc.implemented_properties and calc.has_variance
    atoms = emt_cu_test_dataset[0].copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    stress, std = atoms.get_stress(), calc.get_property("energy_std", atoms)
    per_atom = calc.get_property("energies_std", atoms)
    assert std > 0 and per_atom.shape == (len(atoms),) and np.all(per_atom > 0)

    from matloop.models.io import save_model

    path = save_model(calc.model, tmp_path / "again.pt")
    again = matloop.load(path)
    atoms2 = emt_cu_test_dataset[0].copy()
    atoms2.calc = again
    assert atoms2.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(atoms2.get_forces(), forces, atol=1e-10)
    np.testing.assert_allclose(atoms2.get_stress(), stress, atol=1e-12)
    assert again.get_property("energy_std", atoms2) == pytest.approx(std, rel=1e-8)
    # a float32 request does not degrade the kernel model (it always computes in float64)
    assert again.model.to(torch.float32).weights.dtype == torch.float64


def test_variance_grows_away_from_training_data(fitted, emt_cu_test_dataset):
    calc = matloop.load(fitted.model_path)

    def std(atoms):
        atoms = atoms.copy()
        atoms.calc = calc
        return calc.get_property("energy_std", atoms)

    near = max(std(a) for a in emt_cu_test_dataset)
    compressed = bulk("Cu", "fcc", 3.2, cubic=True) * (2, 2, 2)  # 11 % compressed: never seen
    slab = fcc111("Cu", (2, 2, 4), a=3.61, vacuum=6.0, periodic=True)  # surfaces: never seen
    assert std(compressed) > 5 * near
    assert std(slab) > 5 * near


def test_force_rows_match_autograd_forces(emt_cu_dataset):
    """The closed-form fit's design rows are the forces of each kernel column."""
    model = KernelPotential(["Cu"], KernelParams.model_validate(KERNEL_PARAMS))
    model.set_reference_energies(fit_reference_energies(emt_cu_dataset, ["Cu"]))
    model.fit(list(emt_cu_dataset)[:6], None, _config(), progress=False)
    atoms = emt_cu_dataset[7]
    graph = model.graph(atoms)
    rows = model._force_rows(graph, model.descriptors(graph).detach())
    forces = model.predict(graph)["forces"].reshape(-1)
    torch.testing.assert_close(rows @ model.weights, forces, rtol=0, atol=1e-10)


@pytest.mark.parametrize("symbols", ["Cu", "CuAu"])
def test_descriptor_edge_derivatives_match_autograd(symbols):
    atoms = bulk("Cu", "fcc", 3.7, cubic=True) * (2, 1, 1)
    if symbols == "CuAu":
        atoms.symbols[[1, 2, 5]] = "Au"
    atoms.rattle(0.1, seed=2)
    elements = ["Cu", "Au"] if symbols == "CuAu" else ["Cu"]
    desc = SOAPDescriptor(len(elements), SOAPParams(cutoff=4.0, n_max=3, l_max=3))
    g = build_graph(atoms, elements, 4.0)
    n = len(atoms)
    features, d_features = desc.edge_derivatives(g.vectors, g.centers, g.neighbor_species, n)
    vectors = g.vectors.clone().requires_grad_(True)
    q = desc(vectors, g.centers, g.neighbor_species, n)
    torch.testing.assert_close(features, q.detach(), rtol=0, atol=1e-12)
    weights = torch.randn(
        q.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    for atom in (0, 3):
        (grad,) = torch.autograd.grad((q[atom] * weights).sum(), vectors, retain_graph=True)
        mine = torch.zeros_like(grad)
        edges = g.centers == atom
        mine[edges] = torch.einsum("efx,f->ex", d_features[edges], weights)
        torch.testing.assert_close(mine, grad, rtol=0, atol=1e-12)
    # normalised, and invariant under rotation
    assert torch.allclose(q.norm(dim=1), torch.ones(n, dtype=torch.float64))
    rot = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))[0]
    q_rot = desc(g.vectors @ rot.T, g.centers, g.neighbor_species, n)
    torch.testing.assert_close(q_rot, q.detach(), rtol=0, atol=1e-12)


def test_two_elements_fit_and_forces_are_gradient():
    from ase.calculators.emt import EMT
    from helpers import physics as checks

    from matloop.data import Dataset, label_with

    rng = np.random.default_rng(0)
    structures = []
    for k in range(8):
        a = bulk("Cu", "fcc", 3.7, cubic=True) * (2, 1, 1)
        a.symbols[rng.choice(len(a), 3, replace=False)] = "Au"
        a.rattle(0.05, seed=k)
        structures.append(label_with(a, EMT()))
    data = Dataset(structures, source="emt-cuau")
    model = KernelPotential(
        ["Cu", "Au"], KernelParams.model_validate({**KERNEL_PARAMS, "n_sparse": 30})
    )
    model.set_reference_energies(fit_reference_energies(data, ["Cu", "Au"]))
    info = model.fit(data, None, _config(), progress=False)
    assert info["n_sparse_per_element"] == {"Cu": 30, "Au": 24}  # 8 × 3 Au atoms
    checks.assert_forces_are_gradient(MatloopCalculator(model), structures[0])


def test_force_rows_limited_by_max_force_structures(emt_cu_dataset):
    params = {**KERNEL_PARAMS, "n_sparse": 40, "max_force_structures": 2}
    model = KernelPotential(["Cu"], KernelParams.model_validate(params))
    with pytest.warns(UserWarning, match="forces of 2 of 6 structures"):
        info = model.fit(list(emt_cu_dataset)[:6], None, _config(), progress=False)
    assert info["n_force_structures"] == 2 and info["n_force_rows"] == 2 * 3 * 32


def test_energy_only_fit_with_zero_force_weight(emt_cu_dataset):
    model = KernelPotential(["Cu"], KernelParams.model_validate({**KERNEL_PARAMS, "n_sparse": 40}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "forces of k of n structures" warning
        info = model.fit(emt_cu_dataset, None, _config(loss={"forces": 0.0}), progress=False)
    assert info["n_force_rows"] == 0 and info["force_sigma_ev_per_a"] is None


def test_unknown_param_is_a_clear_config_error():
    data = {"model": {"family": "kernel", "params": {"n_sparse": 10, "sparse_points": 5}}}
    with pytest.raises(ConfigError, match="sparse_points.*valid keys here:.*n_sparse"):
        parse_config(data, TrainConfig, "config.yaml")


def test_cli_train_model_kernel(tmp_path, emt_cu_dataset, capsys):
    data = tmp_path / "train.xyz"
    emt_cu_dataset.write(data)
    config = tmp_path / "kernel.yaml"
    config.write_text(json.dumps({"model": {"family": "kernel", "params": KERNEL_PARAMS}}))
    out = tmp_path / "run"
    argv = ["train", "--train", str(data), "--out", str(out), "--model", "kernel"]
    rc = main([*argv, "--config", str(config), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert "fitted" in capsys.readouterr().out
    calc = matloop.load(out)
    atoms = emt_cu_dataset[0].copy()
    atoms.calc = calc
    assert calc.get_property("energy_std", atoms) > 0


def test_cli_lists_kernel_family():
    proc = subprocess.run(
        [sys.executable, "-m", "matloop", "models"], capture_output=True, text=True, check=True
    )
    assert any(line.startswith("kernel\t") for line in proc.stdout.splitlines())


def test_committee_of_kernel_models(tmp_path, emt_cu_dataset):
    from matloop.training.committee import load_committee, train_committee

    config = _config()
    config.model.params = {**KERNEL_PARAMS, "n_sparse": 60}
    paths = train_committee(emt_cu_dataset, tmp_path / "committee", config, n_members=2)
    committee = load_committee(paths)
    atoms = emt_cu_dataset[3].copy()
    atoms.calc = committee
    energy = atoms.get_potential_energy()
    members = committee.results["energies_committee"]
    assert len(members) == 2 and members[0] != members[1]  # bootstrap samples differ
    assert energy == pytest.approx(members.mean())
    assert committee.results["energy_std"] > 0


def test_sigma_selection_on_validation_data(emt_cu_dataset):
    params = {**KERNEL_PARAMS, "n_sparse": 60, "select_sigmas": True}
    model = KernelPotential(["Cu"], KernelParams.model_validate(params))
    train_part, valid_part = list(emt_cu_dataset)[:18], list(emt_cu_dataset)[18:]
    model.set_reference_energies(fit_reference_energies(emt_cu_dataset, ["Cu"]))
    info = model.fit(train_part, valid_part, _config(), progress=False)
    tried = info["sigma_selection"]
    assert len(tried) == 9
    best = min(tried, key=lambda row: row["score"])
    assert info["energy_sigma_ev_per_atom"] == best["energy_sigma"]
    assert info["force_sigma_ev_per_a"] == best["force_sigma"]
    # the stored weights are those of the selected sigmas: validation error matches the record
    from matloop.data.dataset import energy_of

    errors = [
        (model.predict(model.graph(a))["energy"].item() + model.reference_energy(a) - energy_of(a))
        / len(a)
        for a in valid_part
    ]
    rmse = float(np.sqrt(np.mean(np.square(errors))))
    assert rmse == pytest.approx(best["valid_energy_rmse_ev_per_atom"], rel=1e-6)


def test_energy_std_only_listed_for_models_with_variance():
    from ase.calculators.calculator import PropertyNotImplementedError

    from matloop.models.bpnn import BPNN

    calc = MatloopCalculator(BPNN(["Cu"]))
    assert not calc.has_variance and "energy_std" not in calc.implemented_properties
    atoms = bulk("Cu", "fcc", 3.6, cubic=True)
    atoms.calc = calc
    with pytest.raises(PropertyNotImplementedError):
        calc.get_property("energy_std", atoms)
    # an unfitted kernel model has no variance either
    assert not MatloopCalculator(KernelPotential(["Cu"])).has_variance
    assert "energy_std" not in MatloopCalculator.implemented_properties  # class list untouched


def test_variance_is_computed_only_when_asked(fitted, emt_cu_test_dataset, monkeypatch):
    calc = matloop.load(fitted.model_path)
    calls = []
    original = calc.model.energy_variance
    monkeypatch.setattr(
        calc.model, "energy_variance", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    predicts = []
    original_predict = calc.model.predict
    monkeypatch.setattr(
        calc.model, "predict", lambda *a, **k: predicts.append(1) or original_predict(*a, **k)
    )
    atoms = emt_cu_test_dataset[0].copy()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    atoms.get_forces()
    assert calls == [] and "energy_std" not in calc.results  # MD does not pay for the variance
    assert calc.get_property("energy_std", atoms) > 0
    # the variance of an unchanged structure does not recompute energy and forces
    assert calls == [1] and predicts == [1]
    assert calc.results["energy"] == energy


def test_cur_sparse_points_fit_as_well(emt_cu_dataset, emt_cu_test_dataset, tmp_path):
    params = {**KERNEL_PARAMS, "sparse_method": "cur"}
    config = TrainConfig.model_validate(
        {"model": {"family": "kernel", "params": params}, "training": {}}
    )
    result = train(emt_cu_dataset, tmp_path, config, progress=False)
    calc = matloop.load(result.model_path)
    metrics = evaluate(calc, emt_cu_test_dataset)
    assert metrics["energy_mae_mev_per_atom"] < 3.0, metrics
    assert metrics["force_mae_ev_per_a"] < 0.08, metrics
    assert 0 < int(calc.model.sparse_counts.sum()) <= 150
