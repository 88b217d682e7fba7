"""The `mace` family: mace-torch's MACE on matloop's edge vectors, trained by matloop's loop."""

from __future__ import annotations

import importlib.util
import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk
from conftest import TINY_MACE_PARAMS

import matloop
from matloop.cli import main
from matloop.errors import ConfigError, ModelFileError
from matloop.models import get_family
from matloop.models.io import FORMAT_NAME, FORMAT_VERSION, load_model, read_payload, save_model

if importlib.util.find_spec("mace") is None:  # importorskip would import mace unisolated
    pytest.skip("mace-torch is not installed: pip install 'matloop[mace]'", allow_module_level=True)

TINY_MACE = TINY_MACE_PARAMS


def _config(max_epochs: int) -> dict:
    return {
        "model": {"family": "mace", "params": TINY_MACE},
        "training": {"max_epochs": max_epochs, "batch_size": 4, "learning_rate": 1e-2},
    }


def _model(elements=("Cu",), dtype=torch.float64, **params):
    torch.manual_seed(0)
    cls = get_family("mace")
    return cls(list(elements), cls.Params.model_validate({**TINY_MACE, **params})).to(dtype)


class _NotData:
    """A class instance: unpickling it means running code, which weights_only refuses."""


def test_params_reject_unknown_keys_and_bad_irreps():
    cls = get_family("mace")
    with pytest.raises(ValueError, match="hidden_size"):
        cls.Params.model_validate({"hidden_size": 3})
    with pytest.raises(ValueError, match="scalars"):
        cls.Params.model_validate({"hidden_irreps": "8x1o+8x0e"})
    assert "mace" in matloop.models.available_families()


def test_isolation_keeps_weights_only_loading(tmp_path):
    """Using the mace family leaves torch.load's safe default and read_payload's check intact."""
    before = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    model = _model()
    model.fit_normalization([model.graph(bulk("Cu", "fcc", 3.6))], torch.zeros(1))
    path = save_model(model, tmp_path / "mace.pt")
    load_model(path)
    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == before
    assert read_payload(path)["family"] == "mace"  # our own file is plain data

    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "x": _NotData()}, evil)
    with pytest.raises(ModelFileError, match="not a readable matloop model"):
        read_payload(evil)
    if before is None:  # torch.load's process-wide default is still weights_only=True
        with pytest.raises(pickle.UnpicklingError):
            torch.load(evil)


def test_forces_and_stress_match_mace_own_autograd():
    """Our edge-vector autograd path equals MACE's positions/displacement derivatives."""
    from matscipy.neighbours import neighbour_list

    from matloop.models.outputs import stress_from_virial

    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 1)
    atoms.rattle(0.1, seed=4)
    atoms.symbols[[1, 5]] = "Au"
    model = _model(("Cu", "Au"))
    graph = model.graph(atoms)
    model.fit_normalization([graph], torch.tensor([0.0, 0.05], dtype=torch.float64))
    ours = model.predict(graph)

    i, j, shift = neighbour_list("ijS", atoms, model.cutoff)
    data = {
        "positions": torch.tensor(atoms.positions),
        "edge_index": torch.tensor(np.stack([i, j]), dtype=torch.long),
        "shifts": torch.tensor(shift @ atoms.cell.array),
        "unit_shifts": torch.tensor(shift, dtype=torch.float64),
        "cell": torch.tensor(atoms.cell.array)[None],
        "node_attrs": torch.nn.functional.one_hot(graph.species, 2).double(),
        "batch": torch.zeros(len(atoms), dtype=torch.long),
        "ptr": torch.tensor([0, len(atoms)]),
    }
    ref = model.mace(data, compute_force=True, compute_stress=True)
    assert float(ours["forces"].abs().max()) > 1e-3  # a non-trivial check
    torch.testing.assert_close(ours["energy"], ref["interaction_energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(ours["forces"], ref["forces"], rtol=0, atol=1e-10)
    stress = stress_from_virial(ours["virial"], graph.volumes)[0]
    voigt = ref["stress"][0][[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    torch.testing.assert_close(stress, voigt, rtol=0, atol=1e-10)


def test_save_load_roundtrip(tmp_path, emt_cu_dataset):
    model = _model()
    graphs = [model.prepare(a) for a in list(emt_cu_dataset)[:4]]
    model.fit_normalization(graphs, torch.linspace(-0.01, 0.01, 4, dtype=torch.float64))
    model.set_reference_energies({"Cu": -3.2})
    assert model.params.avg_num_neighbors > 10  # set from the data (fcc Cu, 4 Å: 18–19)
    path = save_model(model, tmp_path / "mace.pt", {"note": "x"})
    payload = torch.load(path, weights_only=True)
    assert payload["hyperparameters"]["avg_num_neighbors"] == model.params.avg_num_neighbors
    loaded, meta = load_model(path)
    assert loaded.family == "mace" and meta == {"note": "x"}
    atoms = emt_cu_dataset[3].copy()
    atoms.calc = matloop.load(path)
    out = model.predict(model.graph(atoms))
    reference = float(out["energy"].detach()[0]) + model.reference_energy(atoms)
    assert atoms.get_potential_energy() == pytest.approx(reference, abs=1e-9)
    np.testing.assert_allclose(atoms.get_forces(), out["forces"].detach().numpy(), atol=1e-10)
    assert atoms.calc.get_descriptors(atoms).shape == (len(atoms), 8 * 2)
    with pytest.raises(matloop.errors.UnknownElementError):
        atoms.calc.get_potential_energy(bulk("Si"))


def test_cli_train_mace_reduces_errors(tmp_path, emt_cu_dataset, emt_cu_test_dataset, capsys):
    train_file = emt_cu_dataset.subset(range(12)).write(tmp_path / "train.xyz")
    config = tmp_path / "mace.yaml"
    config.write_text(yaml.safe_dump(_config(max_epochs=30)))
    out = tmp_path / "run"
    rc = main(
        ["train", "--train", str(train_file), "--out", str(out), "--model", "mace"]
        + ["--config", str(config), "--no-progress"]
    )
    assert rc == 0, capsys.readouterr()
    calc = matloop.load(out)
    assert calc.family == "mace"
    untrained = _model(dtype=torch.float32)
    untrained.set_reference_energies(calc.model.e0)
    err_trained, err_untrained, force_err, force_ref = [], [], [], []
    for atoms in emt_cu_test_dataset:
        reference = atoms.get_potential_energy() / len(atoms)
        work = atoms.copy()
        work.calc = calc
        err_trained.append(abs(work.get_potential_energy() / len(atoms) - reference))
        force_err.append(np.abs(work.get_forces() - atoms.get_forces()).mean())
        force_ref.append(np.abs(atoms.get_forces()).mean())
        e = untrained.predict(untrained.graph(atoms), forces=False, stress=False)["energy"]
        err_untrained.append(
            abs((float(e.detach()[0]) + untrained.reference_energy(atoms)) / len(atoms) - reference)
        )
    assert np.mean(err_trained) < 0.6 * np.mean(err_untrained)
    assert np.mean(force_err) < 0.6 * np.mean(force_ref)  # better than predicting F = 0
    assert work.get_stress().shape == (6,)


def test_committee_of_two_mace_members(tmp_path, emt_cu_dataset):
    from matloop.training import TrainConfig
    from matloop.training.committee import load_committee, train_committee

    config = TrainConfig.model_validate(_config(max_epochs=2))
    paths = train_committee(emt_cu_dataset.subset(range(8)), tmp_path, config, n_members=2)
    committee = load_committee(paths)
    atoms = emt_cu_dataset[10].copy()
    atoms.calc = committee
    assert np.isfinite(atoms.get_potential_energy())
    members = [load_model(p)[0] for p in paths]
    assert all(m.family == "mace" for m in members)
    e = [
        float(m.predict(m.graph(atoms), forces=False, stress=False)["energy"].detach()[0])
        for m in members
    ]
    assert e[0] != e[1]


def test_missing_package_message_names_the_extra():
    from matloop.models import FAMILIES

    spec = FAMILIES["mace"]
    assert spec.requires == "mace" and "matloop[mace]" in spec.install_hint
    with pytest.raises(ConfigError, match="unknown model family"):
        get_family("macee")
