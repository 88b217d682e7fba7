"""PaiNN family: batching, dtypes, reach beyond one cutoff, training, save/load, committee."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk

import matloop
from matloop.cli import main
from matloop.models import get_family
from matloop.models.graph import collate
from matloop.models.io import load_model, save_model
from matloop.models.painn import PaiNN, PaiNNParams


@pytest.fixture(autouse=True)
def _threads():
    from matloop.utils.threads import configure_torch_threads

    configure_torch_threads()  # MATLOOP_NUM_THREADS=1 from conftest: no OpenMP contention


TINY = {"features": 8, "layers": 2, "n_radial": 6, "cutoff": 4.0}


def _tiny_model(elements=("Cu",), dtype=torch.float64) -> PaiNN:
    torch.manual_seed(0)
    model = PaiNN(list(elements), PaiNNParams.model_validate(TINY)).to(dtype)
    model.energy_scale.fill_(0.05)
    return model.eval()


def _tiny_config(max_epochs: int = 8) -> dict:
    return {
        "model": {"family": "painn", "params": TINY},
        "training": {"max_epochs": max_epochs, "batch_size": 4, "learning_rate": 1e-2},
    }


def test_registered_family():
    assert get_family("painn") is PaiNN
    with pytest.raises(ValueError, match="Extra inputs"):
        PaiNNParams.model_validate({"width": 3})


def test_batched_structures_of_different_sizes_match_single(emt_cu_dataset):
    model = _tiny_model()
    small = bulk("Cu", "fcc", 3.6) * (2, 1, 1)
    small.rattle(0.05, seed=1)
    structures = [emt_cu_dataset[0], small, emt_cu_dataset[1]]
    singles = [model.predict(model.graph(a)) for a in structures]
    batch = model.predict(collate([model.graph(a) for a in structures]))
    torch.testing.assert_close(batch["energy"], torch.cat([s["energy"] for s in singles]))
    torch.testing.assert_close(batch["forces"], torch.cat([s["forces"] for s in singles]))
    torch.testing.assert_close(batch["virial"], torch.cat([s["virial"] for s in singles]))


def test_float32_agrees_with_float64(emt_cu_dataset):
    model64 = _tiny_model()
    model32 = _tiny_model(dtype=torch.float32)
    model32.load_state_dict({k: v.float() for k, v in model64.state_dict().items()})
    atoms = emt_cu_dataset[2]
    out64 = model64.predict(model64.graph(atoms))
    out32 = model32.predict(model32.graph(atoms))
    assert out32["energy"].dtype == torch.float32
    e32, e64 = out32["energy"].detach().double(), out64["energy"].detach()
    torch.testing.assert_close(e32, e64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        out32["forces"].detach().double(), out64["forces"], rtol=0, atol=1e-5
    )


def test_message_passing_reaches_beyond_one_cutoff():
    """With 2 layers an atom's energy depends on atoms up to 2 cutoffs away; with 1 it does not."""
    from ase import Atoms

    # a chain 0 — 1 — 2 with spacing 2.5 Å < rc = 4 Å, and |r_02| = 5 Å > rc
    chain = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [5.0, 0, 0]])
    moved = chain.copy()
    moved.positions[2] += [-0.5, 0.0, 0.0]
    changes = {}
    for layers in (1, 2):
        torch.manual_seed(0)
        params = PaiNNParams.model_validate({**TINY, "layers": layers})
        model = PaiNN(["Cu"], params).double().eval()
        with torch.no_grad():
            e_before = model.atomic_energies(model.graph(chain))[0]
            e_after = model.atomic_energies(model.graph(moved))[0]
        changes[layers] = abs(float(e_after - e_before))
    assert changes[1] == 0.0
    assert changes[2] > 1e-7


def test_save_load_roundtrip(tmp_path, emt_cu_dataset):
    model = _tiny_model()
    model.set_reference_energies({"Cu": -3.2})
    path = save_model(model, tmp_path / "painn.pt", {"note": "x"})
    loaded, meta = load_model(path)
    assert loaded.family == "painn" and meta == {"note": "x"}
    atoms = emt_cu_dataset[3].copy()
    atoms.calc = matloop.load(path)
    energy = float(model.predict(model.graph(atoms))["energy"][0])
    reference = energy + model.reference_energy(atoms)
    assert atoms.get_potential_energy() == pytest.approx(reference, abs=1e-9)


def test_cli_train_painn_then_load(tmp_path, emt_cu_dataset, emt_cu_test_dataset, capsys):
    train_file = emt_cu_dataset.subset(range(12)).write(tmp_path / "train.xyz")
    config = tmp_path / "painn.yaml"
    config.write_text(yaml.safe_dump(_tiny_config(max_epochs=30)))
    out = tmp_path / "run"
    rc = main(
        ["train", "--train", str(train_file), "--out", str(out), "--model", "painn"]
        + ["--config", str(config), "--no-progress"]
    )
    assert rc == 0, capsys.readouterr()
    calc = matloop.load(out)
    assert calc.family == "painn"
    history = yaml.safe_load((out / "config.yaml").read_text())
    assert history["model"]["params"]["features"] == 8
    # trained: clearly better than the untrained network on unseen EMT cells
    untrained = _tiny_model(dtype=torch.float32)
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
            abs((float(e[0]) + untrained.reference_energy(atoms)) / len(atoms) - reference)
        )
    assert np.mean(err_trained) < 0.6 * np.mean(err_untrained)
    assert np.mean(force_err) < 0.6 * np.mean(force_ref)  # better than predicting F = 0
    assert work.get_stress().shape == (6,)


def test_committee_of_painn_members(tmp_path, emt_cu_dataset):
    from matloop.training import TrainConfig
    from matloop.training.committee import load_committee, train_committee

    config = TrainConfig.model_validate(_tiny_config(max_epochs=3))
    paths = train_committee(emt_cu_dataset.subset(range(8)), tmp_path, config, n_members=2)
    committee = load_committee(paths)
    atoms = emt_cu_dataset[10].copy()
    atoms.calc = committee
    energy = atoms.get_potential_energy()
    assert np.isfinite(energy)
    members = [load_model(p)[0] for p in paths]
    assert all(m.family == "painn" for m in members)
    e = [float(m.predict(m.graph(atoms), forces=False, stress=False)["energy"][0]) for m in members]
    assert e[0] != e[1]  # different seeds/bootstrap samples give different members
