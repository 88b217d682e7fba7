"""`matloop train`, `evaluate`, `models`, `config`: end to end and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import TINY_BPNN_PARAMS

from matloop.cli import main


@pytest.fixture(scope="module")
def data_files(tmp_path_factory, emt_cu_dataset, emt_cu_test_dataset):
    root = tmp_path_factory.mktemp("cli_data")
    return emt_cu_dataset.write(root / "train.xyz"), emt_cu_test_dataset.write(root / "test.xyz")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"family": "bpnn", "params": TINY_BPNN_PARAMS},
                "training": {"max_epochs": 15, "batch_size": 4, "learning_rate": 5e-3},
            }
        )
    )
    return path


def test_train_then_evaluate(tmp_path, data_files, tiny_config, capsys):
    train_file, test_file = data_files
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--train",
            str(train_file),
            "--out",
            str(out),
            "--config",
            str(tiny_config),
            "--seed",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "model:" in text and "valid" in text
    assert (out / "model.pt").exists() and (out / "train_log.csv").exists()

    rc = main(
        [
            "evaluate",
            str(out),
            str(test_file),
            "--json",
            str(tmp_path / "m.json"),
            "--plot",
            str(tmp_path / "parity.png"),
        ]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    for key in (
        "n_structures",
        "n_atoms",
        "energy_mae_mev_per_atom",
        "energy_rmse_mev_per_atom",
        "force_mae_ev_per_a",
        "force_rmse_ev_per_a",
        "stress_mae_gpa",
        "per_config_type",
    ):
        assert key in metrics
    assert metrics["n_structures"] == 8
    assert set(metrics["per_config_type"]) == {"rattled", "strained"}
    assert (tmp_path / "parity.png").stat().st_size > 10_000
    assert "E MAE" in capsys.readouterr().out


def test_models_lists_families(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[0] == "bpnn"


def test_config_template_validates(tmp_path, capsys):
    assert main(["config", "template", "--out", str(tmp_path / "t.yaml")]) == 0
    assert main(["config", "validate", str(tmp_path / "t.yaml")]) == 0
    assert "valid train config" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["kernel", "painn", "mace", "chgnet"])
def test_config_template_per_family(family, tmp_path, capsys):
    from matloop.models import FAMILIES, get_family

    if not FAMILIES[family].installed:
        pytest.skip(f"{family} is not installed")
    path = tmp_path / "t.yaml"
    assert main(["config", "template", "--model", family, "--out", str(path)]) == 0
    data = yaml.safe_load(path.read_text())
    assert data["model"]["family"] == family
    assert set(data["model"]["params"]) == set(get_family(family).Params.model_fields)
    assert main(["config", "validate", str(path)]) == 0


def test_config_unknown_key_lists_valid_keys(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  learning_rat: 0.1\n")
    assert main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "unknown key 'training.learning_rat'" in err and "learning_rate" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    bad.write_text("model:\n  family: bpnn\n  params:\n    hiden: [3]\n")
    assert main(["config", "validate", str(bad)]) == 1
    assert "hidden" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--train", "missing.xyz", "--out", "{tmp}/o"], "file not found"),
        (["evaluate", "{tmp}/nomodel", "{train}"], "model"),
        (
            ["train", "--train", "{train}", "--out", "{tmp}/o", "--model", "nope"],
            "unknown model family 'nope'",
        ),
        (["train", "--train", "{bad}", "--out", "{tmp}/o"], "frame 0: missing energy"),
    ],
)
def test_bad_input_gives_one_clear_line(tmp_path, data_files, capsys, args, message):
    bad = tmp_path / "bad.xyz"
    bad.write_text('1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3\nCu 0 0 0\n')
    values = {"tmp": str(tmp_path), "train": str(data_files[0]), "bad": str(bad)}
    rc = main([a.format(**values) for a in args])
    err = capsys.readouterr().err
    assert rc == 1
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "model.pt").exists()


def test_subprocess_entry_point_reports_errors_cleanly(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "matloop",
            "evaluate",
            str(tmp_path / "x.pt"),
            str(tmp_path / "y.xyz"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert (
        subprocess.run(
            [sys.executable, "-m", "matloop", "--version"], capture_output=True, text=True
        ).stdout.strip()
        == "0.1.0"
    )


def test_train_delta_on_a_base_calculator(tmp_path, tiny_config, capsys):
    """Stillinger–Weber labels learned as a correction on top of Tersoff; load gives the sum."""
    from helpers.reference_data import sw_si_structures

    import matloop

    data = sw_si_structures(8, seed=4).write(tmp_path / "si.xyz")
    out = tmp_path / "delta"
    rc = main(
        [
            "train",
            "--train",
            str(data),
            "--out",
            str(out),
            "--config",
            str(tiny_config),
            "--delta-base",
            "tersoff",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    calc = matloop.load(out)
    atoms = sw_si_structures(1, seed=9)[0]
    reference = atoms.get_potential_energy()
    atoms.calc = calc
    assert abs(atoms.get_potential_energy() - reference) / len(atoms) < 0.05


def test_cli_shows_warnings_one_way_and_restores_the_callers_settings(capsys):
    import warnings

    from matloop.cli import _errors, main

    before = warnings.showwarning
    with _errors.show_warnings():
        warnings.warn("first  line\n second", UserWarning, stacklevel=1)
        warnings.warn("first  line\n second", UserWarning, stacklevel=1)
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    assert warnings.showwarning is before
    assert capsys.readouterr().err == "warning: first line second\n"
    assert main(["models"]) == 0
    assert warnings.showwarning is before  # running a command leaves the process as it was


def test_train_warns_when_every_cell_has_one_volume(tmp_path, data_files, tiny_config, capsys):
    """Fixed-cell data teach no volume dependence: `train` says so once; strained data do not."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from matloop.data import Dataset, label_with

    frames = []
    for seed in range(4):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=seed)
        frames.append(label_with(atoms, EMT()))
    fixed = Dataset(frames).write(tmp_path / "fixed.xyz")
    argv = ["train", "--config", str(tiny_config), "-q", "--train"]
    assert main([*argv, str(fixed), "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert err.count("one volume per atom") == 1 and "Cu 11.8 Å³/atom" in err
    assert main([*argv, str(data_files[0]), "--out", str(tmp_path / "b")]) == 0
    assert "one volume per atom" not in capsys.readouterr().err


def test_metric_table_leaves_out_rows_without_values():
    """The closed-form ace fit has no per-epoch train errors: no row of dashes for it."""
    from matloop.cli.potentials import _table

    text = _table({"train": {}, "valid": {"force_mae_ev_per_a": 0.0004}})
    lines = text.splitlines()
    assert len(lines) == 2 and lines[1].startswith("valid") and "0.0004" in lines[1]
    both = _table({"train": {"force_mae_ev_per_a": 0.003}, "valid": {"force_mae_ev_per_a": 0.002}})
    assert [line.split()[0] for line in both.splitlines()[1:]] == ["train", "valid"]


def test_resume_with_another_family_keeps_the_run(tmp_path, data_files, tiny_config, capsys):
    """`--resume` of a bpnn run without its --config (so: the default ace) or with another
    family is refused before any work; the run's model and checkpoint stay byte-identical."""
    train_file, _ = data_files
    out = tmp_path / "run"
    argv = ["train", "--train", str(train_file), "--out", str(out), "--no-progress"]
    assert main([*argv, "--config", str(tiny_config)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    for extra, words in (
        ([], "continues a 'bpnn' run, not 'ace'"),
        (["--model", "kernel"], "continues a 'bpnn' run, not 'kernel'"),
        (["--model", "painn"], "continues a 'bpnn' run, not 'painn'"),
    ):
        assert main([*argv, "--resume", *extra]) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err and "Traceback" not in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a checkpoint written before checkpoints named their family: a closed-form family is
    # still refused (it would refit from scratch over the run's model)
    import torch

    from matloop.training.trainer import load_checkpoint

    payload = load_checkpoint(out / "checkpoint.pt")
    del payload["family"]
    torch.save(payload, out / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*argv, "--resume"]) != 0
    assert "'ace' is fitted in one step" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # the original command plus --resume still continues it
    assert main([*argv, "--config", str(tiny_config), "--resume"]) == 0


def test_stress_under_a_custom_key_is_read_and_a_missing_one_is_an_error(tmp_path, capsys):
    """`--stress-key REF_stress` reads stresses stored under that key; without it they are not
    labels, and a key that no frame has is one line, not a silent 'no stress'."""
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    from matloop.data import read_dataset

    frames, stresses = [], []
    for seed in range(3):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.03 * seed, cubic=True)
        atoms.rattle(0.05, seed=seed)
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        stresses.append(atoms.get_stress())
        atoms.info["REF_stress"] = stresses[-1]
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    data = tmp_path / "ref.xyz"
    write(data, frames)
    keys = {"energy_key": "REF_energy", "forces_key": "REF_forces"}
    assert not read_dataset(data, **keys).has_stress
    read = read_dataset(data, **keys, stress_key="REF_stress")
    assert read.has_stress
    np.testing.assert_allclose([a.get_stress() for a in read], stresses, rtol=1e-9, atol=1e-12)
    argv = ["train", "--train", str(data), "--energy-key", "REF_energy", "--forces-key"]
    argv += ["REF_forces", "--stress-key", "REF_stres", "--out", str(tmp_path / "run"), "-q"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "no frame has the info key 'REF_stres'" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
