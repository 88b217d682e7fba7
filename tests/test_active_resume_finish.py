"""Resume and report edge cases of the AL loop, its label store and its executors (review fixes).

- a run interrupted while labelling its last, budget-filling batch finishes that batch on rerun;
- a finished run stays "finished" when its report is rewritten (`al report`, `al status`);
- the Ctrl-C message counts stored outcomes, not selected candidates;
- a corrupted state.db, a malformed scheduler address and numeric-looking store provenance give
  one error line (or are stored), never an internal error.
"""

from __future__ import annotations

import json
import time

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from helpers.al_configs import tiny_al_config

from matloop.active.config import load_config
from matloop.active.loop import ActiveLearner
from matloop.active.report import status, write_reports
from matloop.active.state import RunState
from matloop.cli import main
from matloop.data import label_with
from matloop.errors import ConfigError, DataError

_config = tiny_al_config


def test_rerun_finishes_the_selected_budget_filling_batch(tmp_path, monkeypatch):
    cfg = load_config(_config(tmp_path))
    run = tmp_path / "run"
    real = RunState.record_label

    def interrupt_second(self, key, iteration, result):
        if key == "it001-c001":  # the budget-filling batch it001-c000..c002, after one label
            raise KeyboardInterrupt
        return real(self, key, iteration, result)

    monkeypatch.setattr(RunState, "record_label", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        ActiveLearner(cfg, run, progress=False).run()
    monkeypatch.setattr(RunState, "record_label", real)
    st = status(run)
    assert (st["n_labels"], st["n_pending"], st["n_attempted"]) == (5, 2, 7)

    from matloop.cli.active import _n_labelled

    assert _n_labelled(run) == 5  # what Ctrl-C reports as saved: outcomes, not candidates

    computed: list[str] = []
    from matloop.active import loop as loop_mod

    real_fn = loop_mod._LabelFn.__call__

    def counting(self, atoms):
        computed.append(atoms.info.get("matloop_key"))
        return real_fn(self, atoms)

    monkeypatch.setattr(loop_mod._LabelFn, "__call__", counting)
    report = ActiveLearner(cfg, run, progress=False).run()
    assert sorted(computed) == ["it001-c001", "it001-c002"]  # only the missing ones
    assert report["stop_reason"] == "label budget spent"
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    assert report["n_labels"] == 7  # the final model was trained on every label
    state = RunState(run / "state.db")
    assert state.count(kind="candidate", status="pending") == 0
    assert state.count(kind="label") == 7


def test_rewritten_report_of_a_finished_run_says_finished(tmp_path):
    cfg = load_config(_config(tmp_path, budget={"max_labels": 20}, stop={"max_iterations": 1}))
    run = tmp_path / "run"
    first = ActiveLearner(cfg, run, progress=False).run()
    assert first["stop_reason"] == "max iterations reached"
    again = write_reports(run)  # what `matloop al report` does
    assert again["finished"] and again["stop_reason"] == "max iterations reached"
    assert status(run)["stop_reason"] == "max iterations reached"
    assert "in progress" not in (run / "report.html").read_text()
    # a rerun with a larger limit continues the run; then it is finished at the new limit
    longer = load_config(_config(tmp_path, budget={"max_labels": 20}, stop={"max_iterations": 2}))
    with pytest.warns(UserWarning, match="configuration differs"):
        ActiveLearner(longer, run, progress=False).run()
    report = write_reports(run)
    assert [r["iteration"] for r in report["iterations"]] == [0, 1, 2]
    assert report["stop_reason"] == "max iterations reached"
    assert [bool(r.get("stopped")) for r in report["iterations"]] == [False, False, True]


def test_corrupted_state_database_is_one_error_line(tmp_path, capsys):
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.db").write_text("garbage")
    for argv in (["al", "report", str(run)], ["al", "run", str(cfg), "--dir", str(run)]):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:"), err
        assert "corrupted or not an SQLite database" in err[0]
        assert "internal error" not in err[0]
    assert (run / "state.db").read_text() == "garbage"


@pytest.mark.parametrize(
    "address, words",
    [
        ("local:x", "local:N"),
        ("local:0", "local:N"),
        ("tcp://127.0.0.1:abc", "invalid Dask scheduler address"),
        ("127.0.0.1:99999", "invalid Dask scheduler address"),
    ],
)
def test_malformed_scheduler_is_a_config_error_at_once(address, words):
    from matloop.execution import make_executor

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=words):
        make_executor(address, timeout_s=1.0)
    assert time.perf_counter() - t0 < 2


def test_localhost_address_is_not_taken_for_local_n():
    from matloop.execution import ExecutionConfig

    assert ExecutionConfig(scheduler="localhost:8786").scheduler == "localhost:8786"
    with pytest.raises(ValueError, match="local:N"):
        ExecutionConfig(scheduler="local:0")


def _labelled(n: int) -> list:
    out = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.rattle(0.05, seed=i)
        out.append(label_with(a, EMT()))
    return out


def test_store_keeps_numeric_looking_provenance(tmp_path):
    from matloop.store import LabelStore
    from matloop.store.labels import settings_hash

    store = LabelStore(tmp_path / "labels.db")
    frames = _labelled(3)
    # docs/cluster.md: --code-version 6.4; a tag that is a year; a run named 1
    res = store.push(
        frames, code="vasp", settings={"encut": 520}, version="6.4", tag="2024", run="1"
    )
    assert res.written == 3
    assert store.count("ref_version=6.4") == 3
    assert store.count("tag=2024") == 3
    # settings whose 16-hex-digit hash reads as a number (6868218185345417) are storable
    assert settings_hash("vasp", {"encut": 1797}).isdigit()
    assert store.push(frames, code="vasp", settings={"encut": 1797}).written == 3
    assert store.count("settings_hash=h6868218185345417") == 3
    # a text that the conversion would change is refused before anything is written
    with pytest.raises(DataError, match="6.10"):
        store.push(_labelled(4)[3:], code="vasp", version="6.10")
    assert store.count() == 6
    # a code named by a number is stored as one, and the row still reads back
    assert store.push(_labelled(5)[4:], code="2024").written == 1
    assert store.count("ref_code=2024") == 1
    # a value matloop supplies (its version, the host) that would change is kept as text
    from matloop.store.labels import _kvp_text

    assert _kvp_text("1.10", "", user_given=False) == "_1.10"
    with pytest.raises(DataError, match="the tag '1.10'"):
        _kvp_text("1.10", "the tag")


def test_cli_push_with_the_docs_code_version(tmp_path, capsys):
    write(tmp_path / "d.xyz", _labelled(2))
    db = tmp_path / "labels.db"
    argv = ["data", "push", str(tmp_path / "d.xyz"), "--db", str(db), "--code", "vasp"]
    argv += ["--settings", json.dumps({"encut": 520, "xc": "PBE"}), "--code-version", "6.4"]
    argv += ["--tag", "cu-al", "--run", "run1"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "pushed 2 new label(s)" in capsys.readouterr().out
