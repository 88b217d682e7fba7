"""`matloop property ...` end to end on an ASE-generated extxyz file."""

from __future__ import annotations

import csv
import json

import pytest
from ase.build import bulk
from test_property_data import make_crystals

from matloop.cli import main
from matloop.property import write_extxyz


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prop") / "crystals.extxyz"
    write_extxyz(make_crystals(n_strain=2), path)
    return path


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "fast.yaml"
    path.write_text(
        "cgcnn:\n  epochs: 15\n  n_members: 2\n  mc_samples: 3\n  atom_dim: 24\n"
        "  hidden_dim: 32\n  n_conv: 2\ngbt:\n  max_iter: 60\n"
    )
    return path


def test_fit_evaluate_predict_nearest(data_file, config_file, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["property", "fit", "--data", str(data_file), "--target", "energy_per_atom"]
    args += ["--split", "composition", "--config", str(config_file), "--out", str(out)]
    assert main([*args, "--model", "cgcnn"]) == 0
    assert "validation" in capsys.readouterr().out
    for name in ("model.json", "weights.pt", "report.html", "parity.png", "calibration.png"):
        assert (out / name).exists(), name
    assert main(args) == 1  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    before = {f.name for f in out.iterdir()}
    assert main([*args, "--force", "--model", "gbt"]) == 0  # the faster family for the rewrite
    after = {f.name for f in out.iterdir()}
    assert "weights.pt" in before and "weights.pt" not in after  # no file of the cgcnn is left
    assert json.loads((out / "model.json").read_text())["kind"] == "gbt"
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main([*args[:-1], str(mine), "--force"]) == 1  # not a model directory: refused
    assert "no model.json" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"
    assert main([*args[:-1], str(mine / "notes.txt"), "--force"]) == 1  # a file, not a folder
    assert "is not a directory" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"

    metrics = tmp_path / "m.json"
    cmd = ["property", "evaluate", str(out), str(data_file), "--target", "energy_per_atom"]
    assert main([*cmd, "--json", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert {"mae", "rmse", "r2", "coverage_95"} <= set(result) and result["unit"] == "eV/atom"
    capsys.readouterr()
    other = ["property", "evaluate", str(out), str(data_file), "--target", "structure"]
    assert main([*other, "--json", str(tmp_path / "other.json")]) == 1  # another property
    err = capsys.readouterr().err
    assert "give --target energy_per_atom" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "other.json").exists()

    pred = tmp_path / "p.csv"
    assert main(["property", "predict", str(out), str(data_file), "--out", str(pred)]) == 0
    rows = list(csv.DictReader(pred.open()))
    assert len(rows) > 50 and {"id", "prediction", "std", "ood_score", "ood"} <= set(rows[0])

    query = tmp_path / "q.xyz"
    bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1)).write(query)
    capsys.readouterr()
    cmd = ["property", "nearest", str(out), str(query), "--data", str(data_file), "-k", "3"]
    assert main(cmd) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "Cu" in lines[1]


def test_classification_cli(data_file, config_file, tmp_path):
    out = tmp_path / "cls"
    args = ["property", "fit", "--data", str(data_file), "--target", "structure"]
    args += ["--task", "classification", "--model", "gbt", "--config", str(config_file)]
    assert main([*args, "--out", str(out)]) == 0
    assert (out / "roc.png").exists()
    metrics = tmp_path / "c.json"
    cmd = ["property", "evaluate", str(out), str(data_file), "--target", "structure"]
    assert main([*cmd, "--json", str(metrics)]) == 0
    assert {"accuracy", "f1", "roc_auc"} <= set(json.loads(metrics.read_text()))
    pred = tmp_path / "c.csv"
    assert main(["property", "predict", str(out), str(data_file), "--out", str(pred)]) == 0
    assert "p_fcc" in next(csv.DictReader(pred.open()))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "band_gap"], "no property 'band_gap'"),
        (["--target", "energy_per_atom", "--split", "spacegroup"], "unknown --split"),
        (["--target", "energy_per_atom", "--model", "svm"], "unknown --model"),
    ],
)
def test_bad_input_is_one_line(data_file, tmp_path, capsys, extra, message):
    args = ["property", "fit", "--data", str(data_file), *extra, "--out", str(tmp_path / "x")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_config_template_validates(tmp_path, capsys):
    assert main(["property", "template"]) == 0
    path = tmp_path / "t.yaml"
    path.write_text(capsys.readouterr().out)
    assert main(["property", "validate", str(path)]) == 0
    path.write_text(path.read_text() + "unknown_key: 1\n")
    assert main(["property", "validate", str(path)]) == 1
    assert "unknown_key" in capsys.readouterr().err
