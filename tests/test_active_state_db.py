"""The active-learning state on SQLite and a real PostgreSQL server: one selection per iteration
and one outcome per candidate, enforced by the database even across processes."""

from __future__ import annotations

import multiprocessing as mp

import pytest
import yaml
from ase.build import bulk
from ase.io import write
from helpers.postgres import fresh_database

from matloop.active.state import RunState
from matloop.labelling.calculator import make_labeller


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
    else:
        yield from fresh_database()


def _candidates(n: int, prefix: str = "c") -> list:
    out = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=i)
        out.append((f"{prefix}{i:03d}", atoms, {"origin": "test"}))
    return out


def _label_all(url: str, start) -> None:
    state = RunState(url)
    labeller = make_labeller("emt")
    start.wait(30)
    for key, atoms in state.pending(0):
        state.record_label(key, 0, labeller.label(atoms))


def _select(url: str, prefix: str, start) -> None:
    state = RunState(url)
    start.wait(30)
    if not state.has_selection(1):
        state.write_selection(1, _candidates(5, prefix), {"by": prefix})


def _race(url: str, target, args_list) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(url, *args, start)) for args in args_list]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0


@pytest.mark.slow
def test_concurrent_labellers_and_selectors_write_each_row_once(state_url):
    state = RunState(state_url)
    state.write_selection(0, _candidates(8), {})
    _race(state_url, _label_all, [(), (), ()])
    keys = state.label_keys()
    assert sorted(keys) == [f"c{i:03d}" for i in range(8)]
    assert state.count(kind="quarantine") == 0 and state.pending(0) == []
    _race(state_url, _select, [("a",), ("b",), ("c",)])
    assert state.count(kind="selection", iteration=1) == 1
    winner = state.selection_info(1)["by"]
    cands = [r.key for r in state.db.select(kind="candidate", iteration=1)]
    assert sorted(cands) == [f"{winner}{i:03d}" for i in range(5)]


def test_database_refuses_a_second_outcome_or_selection(state_url):
    from ase import Atoms

    from matloop.store._backend import is_unique_violation, transaction

    state = RunState(state_url)
    state.write_selection(0, _candidates(2), {})
    state.write_selection(0, _candidates(2, "x"), {})  # lost race: silently nothing
    assert state.count(kind="candidate") == 2
    labeller = make_labeller("emt")
    key, atoms = state.pending(0)[0]
    state.record_label(key, 0, labeller.label(atoms))
    state.record_label(key, 0, labeller.label(atoms))
    assert state.count(kind="label") == 1
    # bypassing the client-side check, the database itself refuses the duplicate
    with pytest.raises(Exception) as info:
        with transaction(state.db):
            state._write(f"outcome:{key}", Atoms(), None, kind="quarantine", key=key)
    assert is_unique_violation(info.value)
    assert state.count(kind="quarantine") == 0


@pytest.fixture
def pg_url():
    yield from fresh_database()


@pytest.mark.slow
def test_active_learning_run_on_postgresql_and_a_local_cluster(tmp_path, pg_url):
    from matloop.active.config import load_config
    from matloop.active.loop import run_active_learning

    write(tmp_path / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    cfg = {
        "seed": 1,
        "reference": {"calculator": "emt"},
        "initial": {"structures": "start.xyz", "n_label": 6, "rattle": 0.08},
        "explore": {"temperatures": [900.0], "steps": 8, "walkers": 1, "sample_interval": 2},
        "select": {"threshold": 0.0, "max_per_iteration": 3},
        "model": {
            "family": "bpnn",
            "committee": 2,
            "train": {
                "model": {
                    "params": {
                        "descriptor": {
                            "cutoff": 4.0,
                            "n_radial": 4,
                            "n_angular_eta": 1,
                            "zetas": [1.0],
                        },
                        "hidden": [8],
                    }
                },
                "training": {"max_epochs": 5, "batch_size": 4, "num_threads": 1},
            },
        },
        "budget": {"max_labels": 20},
        "stop": {"max_iterations": 1},
        "execution": {"scheduler": "local:2"},
        "state": {"database": pg_url},
    }
    (tmp_path / "al.yaml").write_text(yaml.safe_dump(cfg))
    report = run_active_learning(
        load_config(tmp_path / "al.yaml"), tmp_path / "run", progress=False
    )
    state = RunState(pg_url)
    assert state.count(kind="label") == report["n_labels"] >= 6
    assert len(set(state.label_keys())) == len(state.label_keys())
    password = pg_url.split("://", 1)[1].split("@")[0].partition(":")[2]
    if password:
        for name in ("report.json", "report.html"):
            path = tmp_path / "run" / name
            if path.exists():
                assert password not in path.read_text(), name
