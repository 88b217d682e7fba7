"""Resuming a finished active-learning run with new settings (real EMT labels, tiny ACE).

A run that ended because an iteration selected nothing ("no snapshot above the selection
threshold") continues when resumed with other exploring settings (temperatures, threshold) and a
larger budget; resumed with only a larger stop.max_iterations it ends again and says why.
"""

from __future__ import annotations

import pytest
from helpers.al_configs import tiny_al_config

from matloop.active.config import load_config
from matloop.active.loop import ActiveLearner
from matloop.active.state import RunState

NOTHING = "no snapshot above the selection threshold"


@pytest.fixture()
def finished_run(tmp_path):
    """A run whose iteration 1 selects nothing (threshold 10 eV/Å): it ends there."""
    first = load_config(tiny_al_config(tmp_path, select={"threshold": 10.0}))
    report = ActiveLearner(first, tmp_path / "run", progress=False).run()
    assert report["stop_reason"] == NOTHING
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    return tmp_path


def test_new_exploring_settings_continue_a_run_that_selected_nothing(finished_run, capsys):
    cfg = load_config(
        tiny_al_config(
            finished_run,
            explore={"temperatures": [1200.0]},
            select={"threshold": 0.0},
            stop={"max_iterations": 4},
        )
    )
    with pytest.warns(UserWarning, match="resuming with the new settings"):
        report = ActiveLearner(cfg, finished_run / "run", progress=True).run()
    out = capsys.readouterr().out
    assert f"iteration 1 ended the run ({NOTHING})" in out and "exploring again" in out
    assert "explore.temperatures" in out and "select.threshold" in out
    its = [r["iteration"] for r in report["iterations"]]
    assert its[:3] == [0, 1, 2]  # iteration 1 stays (no labels); 2 explores at 1200 K
    assert report["n_labels"] == 7 and report["stop_reason"] == "label budget spent"
    state = RunState(finished_run / "run" / "state.db")
    assert state.selection_info(2)["walkers"][0]["temperature"] == 1200.0
    assert state.count(kind="candidate", iteration=2) == 3


def test_only_a_larger_max_iterations_ends_again_and_says_why(finished_run, capsys):
    cfg = load_config(
        tiny_al_config(finished_run, select={"threshold": 10.0}, stop={"max_iterations": 5})
    )
    with pytest.warns(UserWarning, match="resuming with the new settings"):
        report = ActiveLearner(cfg, finished_run / "run", progress=True).run()
    out = capsys.readouterr().out
    assert report["stop_reason"] == NOTHING
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    assert "iteration 1 ended the run" in out and "do not change that" in out
    assert "explore.* (e.g. temperatures" in out
    # an unchanged rerun ends there too, silently
    again = ActiveLearner(cfg, finished_run / "run", progress=True).run()
    assert again["stop_reason"] == NOTHING and "ended the run" not in capsys.readouterr().out
