"""One writer per run directory: two real `matloop al run` processes, stale locks, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from ase.io import read, write

from matloop.utils.lock import LOCK_NAME, RunLock, RunLockedError, read_holder

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "MATLOOP_NUM_THREADS": "1"}


def _config(tmp_path: Path, max_iterations: int = 1, steps: int = 6) -> Path:
    write(tmp_path / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    descriptor = {"cutoff": 4.0, "n_radial": 4, "n_angular_eta": 1, "zetas": [1.0]}
    cfg = {
        "seed": 1,
        "reference": {"calculator": "emt"},
        "initial": {"structures": "start.xyz", "n_label": 6, "rattle": 0.08},
        "explore": {
            "temperatures": [600.0],
            "steps": steps,
            "timestep_fs": 4.0,
            "walkers": 2,
            "sample_interval": 3,
        },
        "select": {"threshold": 0.0, "max_per_iteration": 3},
        "model": {
            "family": "bpnn",
            "committee": 2,
            "train": {
                "model": {"params": {"descriptor": descriptor, "hidden": [8]}},
                "training": {"max_epochs": 3, "batch_size": 4, "num_threads": 1},
            },
        },
        "budget": {"max_labels": 20},
        "stop": {"max_iterations": max_iterations},
    }
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(config: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "matloop", "al", "run", str(config), "--dir", str(run), "-q"],
        env=ENV,
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _label_rows(db: Path) -> list[tuple]:
    """(kind, key) of every state row, read straight from SQLite."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT key_value_pairs FROM systems").fetchall()
    finally:
        con.close()
    return [tuple(json.loads(r[0]).get(k) for k in ("kind", "key", "iteration")) for r in rows]


def _assert_one_writer(results: list[tuple[int, str, str]], run: Path) -> None:
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 1], results
    loser_err = next(err for rc, _, err in results if rc == 1)
    assert "is in use by another matloop run" in loser_err and "PID" in loser_err
    assert loser_err.count("\n") == 1 and "Traceback" not in loser_err
    rows = _label_rows(run / "state.db")
    unique = ("label", "selection", "candidate", "quarantine")
    per_kind = Counter((kind, key) for kind, key, _ in rows if kind in unique)
    duplicated = {k: n for k, n in per_kind.items() if n > 1}
    assert not duplicated, duplicated
    labels = [key for kind, key, _ in rows if kind == "label"]
    frames = read(run / "dataset.xyz", ":")
    assert len(frames) == len(labels) > 0  # one frame per label, none lost or doubled


@pytest.mark.slow
@pytest.mark.parametrize("delay_s", [0.0, 0.5], ids=["together", "half-second-apart"])
def test_two_concurrent_runs_one_writer(tmp_path, delay_s):
    config = _config(tmp_path)
    run = tmp_path / "run"
    first = _start(config, run)
    time.sleep(delay_s)
    second = _start(config, run)
    results = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=600)
        results.append((proc.returncode, out, err))
    _assert_one_writer(results, run)
    assert not read_holder(run)  # released at exit


def test_lock_names_holder_and_detects_stale(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from matloop.utils.lock import RunLock; "
            f"RunLock({str(run)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"PID {holder.pid} on "):
            RunLock(run).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash: the record stays, the kernel lock goes
        holder.wait()
    assert read_holder(run)["pid"] == holder.pid
    with RunLock(run) as lock:
        assert lock.stale["pid"] == holder.pid
        assert read_holder(run)["pid"] == os.getpid()
    assert read_holder(run) is None and (run / LOCK_NAME).exists()


@pytest.mark.slow
def test_ctrl_c_says_what_was_saved_and_resumes(tmp_path):
    config = _config(tmp_path, max_iterations=3, steps=30)
    run = tmp_path / "run"
    proc = _start(config, run)
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "models").exists():
        time.sleep(0.2)  # the first labels are stored before the first training
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: interrupted:") and "resume with: matloop al run" in line
    assert "Traceback" not in err
    assert not read_holder(run)
    n_saved = int(line.split("interrupted: ")[1].split()[0])
    assert n_saved > 0


def test_al_status_reports_integrity(tmp_path, capsys):
    from matloop.active.state import RunState
    from matloop.cli import main

    run = tmp_path / "run"
    run.mkdir()
    RunState(run / "state.db").write_meta({"seed": 0})
    assert main(["al", "status", str(run)]) == 0
    assert "database integrity: ok" in capsys.readouterr().out
    data = bytearray((run / "state.db").read_bytes())
    data[200:4000] = b"\x00" * 3800  # wipe part of the b-tree pages
    (run / "state.db").write_bytes(bytes(data))
    assert main(["al", "status", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "state.db" in err and "Traceback" not in err


@pytest.mark.slow
def test_train_ctrl_c_names_checkpoint_and_resumes(tmp_path, monkeypatch):
    from ase.calculators.emt import EMT

    from matloop.cli import main

    frames = []
    for i in range(6):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    write(tmp_path / "cu.xyz", frames)
    cfg = {
        "model": {"family": "bpnn",
                  "params": {"hidden": [8], "descriptor": {"cutoff": 4.0, "n_radial": 4,
                                                          "n_angular_eta": 1, "zetas": [1.0]}}},
        "training": {"max_epochs": 100000, "checkpoint_every": 1, "num_threads": 1},
    }  # fmt: skip
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    argv = ["train", "--train", "cu.xyz", "--out", "out", "--config", "train.yaml"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "matloop", *argv, "--no-progress"],
        env=ENV,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoint.pt").exists():
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert "interrupted: the last checkpoint is out/checkpoint.pt" in line and "--resume" in line
    assert not (out / "model.pt").exists()
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--resume", "--max-time", "0.001", "--no-progress"]) == 0
    log = json.loads((out / "train_log.json").read_text())
    epochs = [row["epoch"] for row in log]
    assert epochs == list(range(len(epochs))) and len(epochs) >= 2  # continued, not restarted
