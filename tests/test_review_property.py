"""Review of `matloop property`: wrong numbers, lost files and crashes a new user ran into."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
from ase.build import bulk
from test_property_data import make_crystals

from matloop.cli import main
from matloop.errors import DataError, ModelFileError
from matloop.property import (
    CrystalGraphModel,
    GBTBaseline,
    from_structures,
    load_model,
    write_extxyz,
)
from matloop.property.metrics import classification_report

FAST_GBT = {"max_iter": 30}
TARGETS = ["energy_per_atom", "volume_per_atom"]


@pytest.fixture(scope="module")
def crystals():
    return make_crystals(n_strain=2)


@pytest.fixture(scope="module")
def data_file(crystals, tmp_path_factory):
    path = tmp_path_factory.mktemp("review") / "crystals.extxyz"
    write_extxyz(crystals, path)
    return path


@pytest.fixture(scope="module")
def gbt_dir(data_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "gbt"
    args = ["property", "fit", "--data", str(data_file), "--target", "energy_per_atom", "-q"]
    assert main([*args, "--model", "gbt", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def cgcnn_dir(crystals, tmp_path_factory):
    params = {"epochs": 2, "n_members": 1, "mc_samples": 0, "atom_dim": 8, "hidden_dim": 8}
    out = tmp_path_factory.mktemp("model") / "cgcnn"
    CrystalGraphModel(target="energy_per_atom", params=params).fit(crystals).save(out)
    return out


def test_evaluate_reports_the_target_asked_for(crystals, data_file, tmp_path):
    """`evaluate --target volume_per_atom` on a two-target model gave energy_per_atom's MAE."""
    model = GBTBaseline(target=TARGETS, params=FAST_GBT).fit(crystals)
    result = model.evaluate(crystals, target="volume_per_atom")
    assert result["mae"] == result["per_target"]["volume_per_atom"]["mae"]
    assert result["mae"] != result["per_target"]["energy_per_atom"]["mae"]
    model.save(tmp_path / "m")
    cmd = ["property", "evaluate", str(tmp_path / "m"), str(data_file), "--target"]
    assert main([*cmd, "volume_per_atom", "--json", str(tmp_path / "v.json")]) == 0
    saved = json.loads((tmp_path / "v.json").read_text())
    assert saved["target"] == "volume_per_atom" and saved["unit"] == "Å^3/atom"
    assert saved["mae"] == pytest.approx(saved["per_target"]["volume_per_atom"]["mae"])


def test_seed_zero_on_the_command_line_wins_over_the_config(data_file, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 5\ngbt:\n  max_iter: 20\n")
    out = tmp_path / "m"
    args = ["property", "fit", "--data", str(data_file), "--target", "energy_per_atom", "-q"]
    args += ["--model", "gbt", "--config", str(config), "--seed", "0", "--out", str(out)]
    assert main(args) == 0
    assert json.loads((out / "model.json").read_text())["params"]["seed"] == 0


def test_force_never_deletes_a_file_fit_did_not_write(gbt_dir, data_file, tmp_path, capsys):
    """`fit --data RUN/data.extxyz --out RUN --force` deleted the data file with the old model."""
    run = tmp_path / "run"
    run.mkdir()
    for f in gbt_dir.iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    data = run / "data.extxyz"
    data.write_bytes(data_file.read_bytes())
    args = ["property", "fit", "--data", str(data), "--target", "energy_per_atom", "-q"]
    capsys.readouterr()
    assert main([*args, "--model", "gbt", "--out", str(run), "--force"]) == 1
    assert "did not write" in capsys.readouterr().err
    assert data.read_bytes() == data_file.read_bytes()


def test_force_refuses_the_current_directory(gbt_dir, data_file, monkeypatch, capsys):
    monkeypatch.chdir(gbt_dir)
    args = ["property", "fit", "--data", str(data_file), "--target", "energy_per_atom", "-q"]
    assert main([*args, "--model", "gbt", "--out", ".", "--force"]) == 1
    assert "current directory" in capsys.readouterr().err
    assert not [f for f in gbt_dir.iterdir() if f.name.startswith(".")]


def _pickled_weights(path):
    path.write_bytes(pickle.dumps({"member_0": object()}))


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("embeddings.npz", lambda p: p.write_bytes(p.read_bytes()[:100])),
        ("trees.npz", lambda p: p.write_bytes(b"not a zip")),
        ("weights.pt", _pickled_weights),
        ("embeddings.npz", lambda p: p.write_bytes(b"")),
        ("model.json", lambda p: p.write_text("[1, 2]")),
        ("model.json", lambda p: p.write_text(p.read_text().replace('"seed"', '"bogus"'))),
        (
            "model.json",
            lambda p: p.write_text(p.read_text().replace('"max_iter": 500', '"max_iter": "x"')),
        ),
    ],
)
def test_a_damaged_model_directory_is_one_line(gbt_dir, cgcnn_dir, tmp_path, name, damage):
    """These raised BadZipFile/UnpicklingError/TypeError/AttributeError: 'internal error'."""
    copy = tmp_path / "m"
    copy.mkdir()
    for f in (cgcnn_dir if name == "weights.pt" else gbt_dir).iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    damage(copy / name)
    with pytest.raises(ModelFileError) as info:
        load_model(copy)
    assert "\n" not in str(info.value) and "weights_only` set to `False" not in str(info.value)


def test_an_element_never_seen_in_training_is_flagged(crystals, tmp_path):
    """A metal crystal with one atom swapped for Zn (never in training) was not flagged: its
    descriptor distance stays below the threshold, yet Zn's effect is pure extrapolation."""
    model = GBTBaseline(target="energy_per_atom", params=FAST_GBT).fit(crystals)
    zn = crystals.structures[0].copy()
    zn.numbers[0] = 30
    query = from_structures([zn, crystals.structures[0]])
    assert model.ood_score(query)[0] < model.ood_threshold_  # the distance alone misses it
    table = model.predict_table(query)
    assert table["ood"] == [True, False] and table["unseen_elements"] == ["Zn", ""]
    assert model.evaluate(from_structures([zn], {"energy_per_atom": [0.0]}))["ood_flag_rate"] == 1
    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").ood(query).tolist() == [True, False]


def test_predict_refuses_to_write_over_its_inputs(gbt_dir, data_file, capsys):
    before, data_before = (gbt_dir / "model.json").read_bytes(), data_file.read_bytes()
    for out in (gbt_dir / "model.json", data_file):
        args = ["property", "predict", str(gbt_dir), str(data_file), "--out", str(out)]
        assert main([*args, "--force"]) == 1
        err = capsys.readouterr().err
        # the model's own files (property's check) or any input (the CLI's shared check)
        assert "choose another name" in err or "--force never overwrites an input" in err
    assert (gbt_dir / "model.json").read_bytes() == before
    assert data_file.read_bytes() == data_before
    assert len(load_model(gbt_dir).predict(from_structures([bulk("Cu", "fcc", a=3.6)]))) == 1


def test_a_class_only_in_validation_is_named(crystals):
    labels = ["rare" if s == "sc" else s for s in crystals.properties["structure"]]
    data = from_structures(crystals.structures, {"kind": labels}, crystals.ids)
    keep = [i for i, lab in enumerate(labels) if lab != "rare"][:-1]
    rare = [i for i, lab in enumerate(labels) if lab == "rare"]
    model = GBTBaseline(target="kind", task="classification", params=FAST_GBT)
    with pytest.raises(DataError, match="occurs only in the validation part"):
        model.fit(data.subset(keep), val=data.subset(rare + keep[:3]))


def test_multiclass_roc_auc_with_a_class_absent_from_the_set():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = classification_report(y, proba, ["a", "b", "c"])
    assert result["roc_auc"] == pytest.approx(1.0)


def test_evaluate_on_training_structures_says_so(gbt_dir, data_file, tmp_path, capsys):
    """Scoring a model on its own training file gave optimistic metrics without a word."""
    out = tmp_path / "m.json"
    cmd = ["property", "evaluate", str(gbt_dir), str(data_file), "--target", "energy_per_atom"]
    assert main([*cmd, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    model = load_model(gbt_dir)
    assert result["n_in_training"] == model.n_train_ and result["n_in_validation"] == model.n_val_
    assert "optimistic" in capsys.readouterr().err
    fresh = from_structures([bulk("Cu", "fcc", a=3.7)], {"energy_per_atom": [0.1]})
    assert model.evaluate(fresh)["n_in_training"] == 0


def test_pymatgen_structure_json(tmp_path):
    """A pymatgen ``Structure.to("x.json")`` file was 'not a structure line: numbers'."""
    from pymatgen.core import Lattice, Structure

    from matloop.property import read_dataset

    mgo = Structure(Lattice.cubic(4.21), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mgo.properties = {"id": "mgo", "band_gap": 4.5}
    mgo.to(filename=str(tmp_path / "one.json"))
    data = read_dataset(tmp_path / "one.json")
    assert data.ids == ["mgo"] and data.target("band_gap").tolist() == [4.5]
    assert data.structures[0].get_chemical_formula() == "MgO"
    (tmp_path / "two.json").write_text(json.dumps([mgo.as_dict(), mgo.as_dict() | {"id": "b"}]))
    assert read_dataset(tmp_path / "two.json").ids == ["mgo", "b"]
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="pymatgen"):
        read_dataset(tmp_path / "bad.json")


def test_grouped_split_stays_near_the_fraction():
    """One big group taken early made a 0.2 split hold out half the data."""
    from matloop.property.splits import grouped_split

    groups = ["big"] * 50 + [f"g{i}" for i in range(50)]
    held = [len(grouped_split(groups, 0.2, seed)[1]) for seed in range(20)]
    assert max(held) <= 25 and min(held) >= 20


def test_column_split_refuses_missing_dates():
    """Missing years were compared as text ("None" > "2010") and held out as the latest."""
    from matloop.property import split

    years = [2001, 2002, None, 2004, float("nan"), 2006, 2007, 2008, 2009, 2010]
    data = from_structures([bulk("Cu", "fcc", a=3.6 + 0.01 * i) for i in range(10)], {"y": years})
    with pytest.raises(DataError, match="no value for 2 structures"):
        split(data, "column", 0.2, column="y")
    full = from_structures(data.structures[:2] + data.structures[5:], {"y": years[:2] + years[5:]})
    assert full.subset(split(full, "column", 0.25, column="y")[1]).target("y").tolist() == [
        2009,
        2010,
    ]
