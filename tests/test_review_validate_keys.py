"""`matloop validate` reads labels stored under other keys (REF_energy, REF_forces, REF_stress, as
in the mlearn and many MACE/ACE sets) with the same --energy-key/--forces-key/--stress-key as
`matloop evaluate`, for --test and --train, or from the config's ``settings:``."""

from __future__ import annotations

import json

import pytest
import typer
import yaml
from ase.io import write
from helpers.reference_data import emt_cu_structures

from matloop.cli import app, main

KEYS = {"energy": "REF_energy", "forces": "REF_forces", "stress": "REF_stress"}
KEY_ARGS = [a for k, v in KEYS.items() for a in (f"--{k}-key", v)]
#: a quick report: the errors, the ratio and the largest force, without MD or the −∇E checks
QUICK = {"nve_ps": 0, "rdf_ps": 0, "n_physics_structures": 0, "progress": False}
MAES = ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "stress_mae_gpa")


def _write_ref(path, n: int, seed: int) -> None:
    """`n` 4-atom EMT Cu cells whose labels are only under the REF_ keys (no calculator)."""
    frames = []
    for ref in emt_cu_structures(n, seed=seed, repeat=(1, 1, 1)):
        atoms = ref.copy()
        atoms.info.update(ref.info)
        atoms.info[KEYS["energy"]] = ref.get_potential_energy()
        atoms.arrays[KEYS["forces"]] = ref.get_forces()
        atoms.info[KEYS["stress"]] = ref.get_stress()
        frames.append(atoms)
    write(path, frames, format="extxyz")


@pytest.fixture(scope="module")
def ref_files(tmp_path_factory):
    """(model dir, train file, test file): a default `ace` model trained on the REF_ labels."""
    root = tmp_path_factory.mktemp("ref_keys")
    train, test = root / "train_ref.xyz", root / "test_ref.xyz"
    _write_ref(train, 16, seed=0)
    _write_ref(test, 6, seed=7)
    model = root / "model"
    argv = ["train", "--train", str(train), "--out", str(model), "--seed", "0", "-q", *KEY_ARGS]
    assert main(argv) == 0
    return model, train, test


def _config(path, **settings) -> str:
    path.write_text(yaml.safe_dump({"settings": {**QUICK, **settings}}))
    return str(path)


def _validate(model, test, tmp_path, *args: str, train=None) -> dict:
    out = tmp_path / "report"
    argv = ["validate", str(model), "--test", str(test), "--out", str(out), *args]
    if train is not None:
        argv += ["--train", str(train)]
    assert main(argv) == 0
    return json.loads((out / "report.json").read_text())


def _evaluate(model, test, tmp_path) -> dict:
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(model), str(test), "--json", str(out), "-q", *KEY_ARGS]) == 0
    return json.loads(out.read_text())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_validate_with_the_key_options_gives_evaluates_errors(ref_files, tmp_path):
    model, train, test = ref_files
    cfg = _config(tmp_path / "quick.yaml")
    report = _validate(model, test, tmp_path, "--config", cfg, *KEY_ARGS, train=train)
    metrics = _evaluate(model, test, tmp_path)
    for key in MAES:  # every label read: energy, forces and stress
        assert report["test_metrics"][key] == pytest.approx(metrics[key], rel=1e-9, abs=0)
    assert report["test_metrics"]["n_structures"] == metrics["n_structures"] == 6
    # the training set is read with the same keys: its errors and the ratio exist
    assert report["train_metrics"]["n_structures"] == 16
    assert set(MAES) <= set(report["train_metrics"])
    ratio = next(c for c in report["checks"] if c["name"] == "test/train error ratio")
    assert ratio["value"] is not None and ratio["value"] > 0
    assert set(report["test_train_ratio"]) == set(MAES)
    assert {report["settings"][f"{k}_key"] for k in KEYS} == set(KEYS.values())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_config_settings_carry_the_keys_and_an_option_overrides_them(ref_files, tmp_path):
    model, _, test = ref_files
    metrics = _evaluate(model, test, tmp_path)
    keyed = {f"{k}_key": v for k, v in KEYS.items()}
    report = _validate(
        model, test, tmp_path / "a", "--config", _config(tmp_path / "k.yaml", **keyed)
    )
    assert report["test_metrics"]["force_mae_ev_per_a"] == pytest.approx(
        metrics["force_mae_ev_per_a"], rel=1e-9, abs=0
    )
    # a key on the command line wins over the file's; keys left at their default do not
    bad = _config(tmp_path / "bad.yaml", **{**keyed, "energy_key": "E_missing"})
    report = _validate(model, test, tmp_path / "b", "--config", bad, "--energy-key", "REF_energy")
    assert report["settings"]["energy_key"] == "REF_energy"
    assert report["settings"]["forces_key"] == "REF_forces"
    assert report["test_metrics"]["energy_mae_mev_per_atom"] == pytest.approx(
        metrics["energy_mae_mev_per_atom"], rel=1e-9, abs=0
    )


@pytest.mark.parametrize(
    "args",
    [["--energy-key", "REF_E"], [*KEY_ARGS[:4], "--stress-key", "REF_S"], []],
    ids=["energy", "stress", "default-keys"],
)
def test_a_wrong_key_is_one_error_line_as_from_evaluate(ref_files, tmp_path, capsys, args):
    model, _, test = ref_files
    cfg = _config(tmp_path / "quick.yaml")
    out = tmp_path / "report"
    capsys.readouterr()
    argv = ["validate", str(model), "--test", str(test), "--out", str(out), "--config", cfg]
    assert main([*argv, *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert main(["evaluate", str(model), str(test), "-q", *args]) == 1
    assert len(err) == 1 and err == capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and "test_ref.xyz" in err[0] and "key" in err[0]
    assert not out.exists()  # refused before any work


def test_the_key_options_are_declared_once_for_train_evaluate_and_validate():
    group = typer.main.get_command(app)
    options = {}
    for name in ("train", "evaluate", "validate"):
        params = {p.name: p for p in group.commands[name].params}
        options[name] = [
            (params[k].opts, params[k].default, params[k].help)
            for k in ("energy_key", "forces_key", "stress_key")
        ]
    assert options["validate"] == options["evaluate"] == options["train"]
    names = [o[0] for o in options["validate"]]
    assert names == [["--energy-key"], ["--forces-key"], ["--stress-key"]]
