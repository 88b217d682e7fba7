"""A tiny matloop potential trained on EMT Cu: NVE with it, `matloop md` with its file, and its
validation report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

import matloop
from matloop.cli import main
from matloop.data import Dataset, label_with
from matloop.errors import UnknownElementError
from matloop.md import run_md
from matloop.validation import build_report


def _cu_set(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True)
        a = a.repeat((2, 2, 1 + k % 2))
        a.positions += rng.normal(0, 0.1, a.positions.shape)
        frames.append(label_with(a, EMT(), config_type=("bulk", "strained")[k % 2]))
    return Dataset(frames, source=f"emt-cu-{seed}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from matloop.training import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny")
    config = TrainConfig.model_validate(
        {
            "model": {"family": "bpnn", "params": {"hidden": [16]}},
            "training": {"max_time": 3, "num_threads": 1},
        }
    )
    train_ds = _cu_set(10, 1)
    result = train(train_ds, out / "run", config=config, max_time=3, progress=False, seed=0)
    return result.model_path, train_ds, out


def test_trained_model_nve_drift_bounded(trained):
    model_path, _, _ = trained
    calc = matloop.load(model_path)
    cu = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    res = run_md(cu, calc, "nve", temperature_k=300, timestep_fs=2.0, steps=100, progress=False)
    # a smooth model (forces = −∇E) conserves energy: drift far below 1 meV/atom/ps
    assert abs(res.drift_mev_per_atom_per_ps) < 1.0
    assert res.summary()["etot_range_mev_per_atom"] < 2.0
    assert np.isfinite(res.temperature_k).all()
    si = bulk("Si", "diamond", a=5.43)
    with pytest.raises(UnknownElementError, match="Si"):
        run_md(si, calc, steps=5, progress=False)


def test_md_cli_with_model_file(trained, capsys):
    model_path, _, out = trained
    structure = out / "cu.xyz"
    write(structure, bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 1)))
    rc = main(
        [
            "md",
            str(model_path),
            str(structure),
            "--ensemble",
            "nvt",
            "--steps",
            "20",
            "--no-progress",
            "--json",
            str(out / "md.json"),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert json.loads((out / "md.json").read_text())["ensemble"] == "nvt"


@pytest.mark.filterwarnings("ignore:validation checks failed")
def test_report_of_trained_model(trained):
    model_path, train_ds, out = trained
    report = build_report(
        matloop.load(model_path),
        _cu_set(4, 2),
        train_ds=train_ds,
        reference="emt",
        out_dir=out / "report",
        settings={
            "nve_ps": 0.05,
            "nve_equilibration_ps": 0.01,
            "nve_timestep_fs": 2.0,
            "rdf_ps": 0.0,
            "n_physics_structures": 1,
            "fd_atoms": 2,
            "eos_points": 7,
            "progress": False,
        },
    )
    by_name = {c["name"]: c for c in report["checks"]}
    # the physics of any matloop model must hold, however little it was trained
    assert by_name["F = −∇E (finite differences)"]["passed"] is True
    assert by_name["invariance: energy (translation/rotation/permutation)"]["passed"] is True
    assert by_name["invariance: forces (translation/rotation/permutation)"]["passed"] is True
    assert by_name["NVE energy drift"]["passed"] is True
    assert "test/train error ratio" in by_name and by_name["test/train error ratio"]["value"] > 0
    assert report["model_family"] == "bpnn" and report["model_elements"] == ["Cu"]
    assert "eos" in report["reference_comparison"]
    assert (out / "report" / "report.html").stat().st_size > 10_000
