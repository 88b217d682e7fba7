"""`matloop md` and `matloop analyze` through the CLI (in-process and one subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ase.build import bulk
from ase.io import write

from matloop.cli import main


@pytest.fixture()
def cu_file(tmp_path):
    path = tmp_path / "cu.xyz"
    write(path, bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2))
    return path


def test_md_cli_nve_prints_drift_and_writes_files(cu_file, tmp_path, capsys):
    traj, log, js = tmp_path / "md.traj", tmp_path / "md.log", tmp_path / "md.json"
    rc = main(
        [
            "md",
            "emt",
            str(cu_file),
            "--ensemble",
            "nve",
            "--temperature",
            "300",
            "--timestep",
            "2",
            "--steps",
            "100",
            "--traj",
            str(traj),
            "--log",
            str(log),
            "--seed",
            "3",
            "--json",
            str(js),
            "--no-progress",
            "--traj-interval",
            "5",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "NVE energy drift:" in out and "meV/atom/ps" in out
    summary = json.loads(js.read_text())
    assert abs(summary["nve_drift_mev_per_atom_per_ps"]) < 1.0
    assert summary["steps"] == 100 and summary["n_atoms"] == 32
    assert traj.exists() and log.exists()

    rc = main(
        [
            "analyze",
            "rdf",
            str(traj),
            "--rmax",
            "5",
            "--plot",
            str(tmp_path / "rdf.png"),
            "--json",
            str(tmp_path / "rdf.json"),
        ]
    )
    assert rc == 0
    rdf = json.loads((tmp_path / "rdf.json").read_text())
    assert rdf["first_peak_a"] == pytest.approx(3.61 / 2**0.5, abs=0.1)
    assert (tmp_path / "rdf.png").stat().st_size > 1000
    rc = main(
        [
            "analyze",
            "msd",
            str(traj),
            "--plot",
            str(tmp_path / "msd.png"),
            "--json",
            str(tmp_path / "msd.json"),
        ]
    )
    assert rc == 0
    msd = json.loads((tmp_path / "msd.json").read_text())
    assert msd["fit_start_ps"] < msd["fit_end_ps"]
    assert "D =" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "steps must be a positive integer"),
        (["--ensemble", "nph"], "unknown ensemble"),
        (["--thermostat", "nose-hoover"], "--thermostat has no effect in NVE"),
        (["--ensemble", "nvt", "--pressure", "5"], "--pressure has no effect in NVT"),
        (["--ensemble", "nvt", "--barostat", "mtk"], "--barostat has no effect in NVT"),
        (["--ensemble", "npt", "--thermostat", "langevin"], "--thermostat has no effect in NPT"),
        (["--ensemble", "npt", "--thermostat", "x"], "--thermostat has no effect in NPT"),
        (["--ensemble", "nvt", "--thermostat", "x"], "unknown thermostat"),
    ],
)
def test_md_cli_bad_options(cu_file, capsys, args, message):
    rc = main(["md", "emt", str(cu_file), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_md_cli_unknown_element(tmp_path, capsys):
    si = tmp_path / "si.xyz"
    write(si, bulk("Si", "diamond", a=5.43))
    rc = main(["md", "emt", str(si), "--steps", "5", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "element(s) Si" in err and "emt" in err


def test_md_cli_missing_files(tmp_path, capsys):
    rc = main(["md", "emt", str(tmp_path / "nope.xyz"), "--steps", "5"])
    assert rc == 1 and "structure file not found" in capsys.readouterr().err
    rc = main(["analyze", "rdf", str(tmp_path / "nope.traj")])
    assert rc == 1 and "trajectory file not found" in capsys.readouterr().err
    rc = main(["md", "no-such-potential", str(tmp_path / "nope.xyz")])
    assert rc == 1 and "error:" in capsys.readouterr().err


def test_md_cli_subprocess_smoke(cu_file, tmp_path):
    env = {**os.environ, "MATLOOP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "matloop",
            "md",
            "emt",
            str(cu_file),
            "--ensemble",
            "nvt",
            "--steps",
            "20",
            "--no-progress",
            "--log",
            str(tmp_path / "nvt.log"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NVT 32 atoms" in proc.stdout and "NVE energy drift" not in proc.stdout


def test_learn_refuses_outputs_it_would_not_write(cu_file, tmp_path, capsys):
    """`--learn` keeps everything in --learn-dir; --json/--traj/--log would be silently unused."""
    out = tmp_path / "summary.json"
    args = ["md", "emt", str(cu_file), "--learn", "--reference", "emt", "--max-uncertainty", "0.1"]
    assert main([*args, "--json", str(out), "--learn-dir", str(tmp_path / "otf")]) == 1
    err = capsys.readouterr().err
    assert "--learn-dir" in err and "drop --json" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "otf").exists()
