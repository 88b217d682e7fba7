"""The active-learning loop end to end: injected failures, kill-and-resume, reports, CLI."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write

import matloop
from matloop.active.state import RunState
from matloop.cli import main
from matloop.data import label_with
from matloop.labelling.faults import FaultyCalculator

TINY_TRAIN = {
    "model": {
        "params": {
            "descriptor": {"cutoff": 4.0, "n_radial": 6, "n_angular_eta": 1, "zetas": [1.0]},
            "hidden": [8],
        }
    },
    "training": {"max_epochs": 15, "batch_size": 4, "learning_rate": 0.01, "num_threads": 1},
}


def _inputs(tmp_path: Path, faults: dict, **over) -> Path:
    start = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    write(tmp_path / "start.xyz", start)
    test = []
    for i in range(3):
        a = start.copy()
        a.rattle(0.1, seed=100 + i)
        test.append(label_with(a, EMT()))
    write(tmp_path / "test.xyz", test)
    cfg = {
        "seed": 1,
        "reference": {"calculator": "faulty", "settings": faults, "timeout_s": 0.3},
        "initial": {"structures": "start.xyz", "n_label": 12, "rattle": 0.08},
        "explore": {
            "temperatures": [600.0, 1200.0],
            "steps": 12,
            "timestep_fs": 4.0,
            "walkers": 2,
            "sample_interval": 3,
        },
        "select": {"threshold": 0.0, "max_per_iteration": 6},
        "model": {"family": "bpnn", "committee": 2, "train": TINY_TRAIN},
        "budget": {"max_labels": 40},
        "stop": {"max_iterations": 2},
        "test": {"data": "test.xyz"},
    }
    for k, v in over.items():
        cfg.setdefault(k, {}).update(v)
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


FAULTS = {
    "p_exception": 0.08,
    "p_scf": 0.16,
    "p_nan": 0.08,
    "p_absurd": 0.08,
    "p_timeout": 0.04,
    "hang_s": 3.0,
}


def test_loop_with_injected_failures_quarantines_and_never_trains_on_them(tmp_path, capsys):
    cfg = _inputs(tmp_path, FAULTS)
    run = tmp_path / "run"
    rc = main(["al", "run", str(cfg), "--dir", str(run), "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    report = json.loads((run / "report.json").read_text())
    assert [r["iteration"] for r in report["iterations"]] == [0, 1, 2]
    assert report["stop_reason"] == "max iterations reached"
    for r in report["iterations"]:
        assert r["n_labels"] > 0
        assert np.isfinite(r["test_energy_mae_mev_per_atom"])
        assert np.isfinite(r["test_force_mae_ev_per_a"])
    assert report["iterations"][-1]["n_labels"] > report["iterations"][0]["n_labels"]

    st = RunState(run / "state.db")
    probe = FaultyCalculator(**{k: v for k, v in FAULTS.items()})
    statuses = set()
    for row in st.db.select(kind="quarantine"):
        kind, v = probe.fault_for(row.toatoms())
        assert kind is not None and not (kind == "scf" and v < 0.5), row.key
        statuses.add(row.status)
        assert row.reason
    assert statuses == {"failed", "inconsistent"}
    recovered = 0
    for atoms in st.labelled():
        kind, v = probe.fault_for(atoms)
        assert kind is None or (kind == "scf" and v < 0.5)
        recovered += kind == "scf"
        assert np.isfinite(atoms.get_potential_energy())
        assert np.abs(atoms.get_forces()).max() < 50
    assert recovered >= 1  # an SCF failure fixed by the handler is good data
    n_q = st.count(kind="quarantine")
    assert n_q == report["n_quarantined"] >= 3
    assert st.count(kind="label") + n_q == st.count(kind="candidate")
    # the committee of each iteration saw exactly the good labels available then
    for r in report["iterations"]:
        for path in r["models"]:
            member = json.loads((Path(path).parent / "member.json").read_text())
            assert member["n_train"] == r["n_labels"]
    dataset = read(run / "dataset.xyz", ":")
    assert len(dataset) == report["n_labels"]
    calc = matloop.load(report["final_model"])
    a = dataset[0].copy()
    a.calc = calc
    assert np.isfinite(a.get_potential_energy())
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "Quarantine" in html
    # status and report commands on the finished run
    assert main(["al", "status", str(run)]) == 0
    assert "quarantine" in capsys.readouterr().out
    os.remove(run / "report.html")
    assert main(["al", "report", str(run)]) == 0
    assert (run / "report.html").exists()
    # rerunning a finished run computes nothing new
    n_labels = st.count(kind="label")
    assert main(["al", "run", str(cfg), "--dir", str(run), "--quiet"]) == 0
    assert st.count(kind="label") == n_labels


def _keys_done(db: Path) -> set[str]:
    st = RunState(db)
    return {r.key for r in st.db.select(kind="label")} | {
        r.key for r in st.db.select(kind="quarantine")
    }


def test_kill_and_resume_loses_and_repeats_nothing(tmp_path):
    faults = {"p_exception": 0.1, "p_nan": 0.1, "delay_s": 0.12}
    cfg = _inputs(tmp_path, faults, stop={"max_iterations": 2})
    run = tmp_path / "run"
    log = tmp_path / "calls.log"
    env = dict(os.environ, MATLOOP_FAULT_LOG=str(log), MATLOOP_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "matloop", "al", "run", str(cfg), "--dir", str(run), "--quiet"]
    rng = random.Random(7)
    done_before: list[tuple[int, set[str]]] = []
    kills = 0

    def n_calls() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    # kill after a random number of new reference calls (so the kill lands while a label is in
    # flight, whatever the machine load), and once at a random moment after that
    for attempt in range(4):
        offset = n_calls()
        done_before.append((offset, _keys_done(run / "state.db") if run.exists() else set()))
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        want = rng.randint(1, 6)
        deadline = time.monotonic() + 300
        while proc.poll() is None and n_calls() < offset + want and time.monotonic() < deadline:
            time.sleep(0.02)
        if attempt == 3:
            time.sleep(rng.uniform(0.0, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
    offset = n_calls()
    done_before.append((offset, _keys_done(run / "state.db")))
    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stderr
    assert kills >= 2

    st = RunState(run / "state.db")
    label_keys = [r.key for r in st.db.select(kind="label")]
    q_keys = [r.key for r in st.db.select(kind="quarantine")]
    cand_keys = [r.key for r in st.db.select(kind="candidate")]
    assert len(label_keys) == len(set(label_keys))  # nothing stored twice
    assert len(cand_keys) == len(set(cand_keys))
    assert set(label_keys).isdisjoint(q_keys)
    assert sorted(label_keys + q_keys) == sorted(cand_keys)  # nothing lost
    assert st.count(kind="candidate", status="pending") == 0
    calls = [line.split("\t")[0] for line in log.read_text().splitlines()]
    for offset, finished in done_before:
        again = finished & set(calls[offset:])
        assert not again, f"finished labels computed again after a restart: {sorted(again)}"
    report = json.loads((run / "report.json").read_text())
    assert [r["iteration"] for r in report["iterations"]] == [0, 1, 2]
    assert report["n_labels"] == len(label_keys)
    assert Path(report["final_model"]).exists()


def test_loop_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    from matloop.active.config import load_config
    from matloop.active.loop import run_active_learning

    cfg = _inputs(tmp_path, {"p_nan": 0.2}, stop={"max_iterations": 1})
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        report = run_active_learning(
            load_config(cfg), tmp_path / "run", scheduler=cluster.scheduler_address, progress=False
        )
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    assert report["n_quarantined"] >= 1
    st = RunState(tmp_path / "run" / "state.db")
    assert st.count(kind="label") == report["n_labels"]
