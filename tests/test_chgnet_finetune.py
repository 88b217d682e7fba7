"""The `chgnet` family: fine-tuning the pretrained CHGNet through `matloop train`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk
from helpers.reference_data import sw_si_structures

import matloop
from matloop.cli import main
from matloop.models import get_family
from matloop.models.io import load_model, save_model

pytest.importorskip("chgnet")


@pytest.fixture(scope="module")
def si_data():
    """Stillinger–Weber Si: CHGNet (PBE-trained) is off by a constant and in its forces."""
    return sw_si_structures(10, seed=0), sw_si_structures(6, seed=7)


def _errors(calc, data):
    """Energy MAE (eV/atom) after removing the best constant offset, and force MAE (eV/Å)."""
    de, df = [], []
    for atoms in data:
        work = atoms.copy()
        work.calc = calc
        de.append((work.get_potential_energy() - atoms.get_potential_energy()) / len(atoms))
        df.append(np.abs(work.get_forces() - atoms.get_forces()).mean())
    de = np.array(de)
    return float(np.abs(de - de.mean()).mean()), float(np.mean(df))


def test_matches_chgnet_calculator():
    """Our wrapper (own batching, E0 bookkeeping) reproduces CHGNet's ASE calculator."""
    from matloop.calculators import resolve_calculator
    from matloop.calculators.potential import MatloopCalculator

    atoms = bulk("Si", "diamond", 5.43, cubic=True)
    atoms.rattle(0.05, seed=2)
    ref = atoms.copy()
    ref.calc = resolve_calculator("chgnet")
    cls = get_family("chgnet")
    model = cls(["Si"], cls.Params())
    model.set_reference_energies({"Si": -3.0})  # bookkeeping only: the total is unchanged
    ours = atoms.copy()
    ours.calc = MatloopCalculator(model)
    assert ours.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=2e-4)
    np.testing.assert_allclose(ours.get_forces(), ref.get_forces(), atol=2e-4)
    np.testing.assert_allclose(ours.get_stress(), ref.get_stress(), atol=2e-6)
    assert ours.calc.get_descriptors(ours).shape == (len(atoms), 64)


def test_cli_finetune_beats_pretrained_and_round_trips(tmp_path, si_data, capsys):
    from matloop.calculators import resolve_calculator

    train, test = si_data
    train_file = train.write(tmp_path / "train.xyz")
    config = tmp_path / "chgnet.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"family": "chgnet", "params": {"freeze": ["atom_embedding"]}},
                "training": {"max_epochs": 4, "batch_size": 2, "learning_rate": 1e-3},
            }
        )
    )
    out = tmp_path / "run"
    rc = main(
        ["train", "--train", str(train_file), "--out", str(out), "--model", "chgnet"]
        + ["--config", str(config), "--no-progress"]
    )
    assert rc == 0, capsys.readouterr()
    calc = matloop.load(out)
    assert calc.family == "chgnet"
    fit = calc.metadata["fit"]
    assert fit["valid_score_best"] < fit["valid_score_start"]
    assert set(fit["atom_ref_shift_ev"]) == {"Si"}

    e_pre, f_pre = _errors(resolve_calculator("chgnet"), test)
    e_fine, f_fine = _errors(calc, test)
    assert f_fine < 0.8 * f_pre, (f_fine, f_pre)
    assert e_fine < e_pre, (e_fine, e_pre)
    # absolute energies: the refitted AtomRef absorbs SW's offset from CHGNet's PBE scale
    atoms = test[0].copy()
    atoms.calc = calc
    assert abs(atoms.get_potential_energy() - test[0].get_potential_energy()) / len(atoms) < 0.05

    # the frozen embedding did not move; the saved file reloads to the same numbers
    model, _ = load_model(out)
    pretrained = get_family("chgnet")(["Si"])
    torch.testing.assert_close(
        model.chgnet.atom_embedding.embedding.weight,
        pretrained.chgnet.atom_embedding.embedding.weight,
    )
    path = save_model(model, tmp_path / "copy.pt")
    again = test[1].copy()
    again.calc = matloop.load(path)
    ref = test[1].copy()
    ref.calc = calc
    assert again.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-6)
