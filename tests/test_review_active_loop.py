"""Review of the active-learning loop's bookkeeping: kills and resumes, changed configs,
repeated structures, the uncertainty target, report counts and on-the-fly learning.

Runs are tiny (EMT Cu, one small ``ace`` model, a few labels). A kill is a KeyboardInterrupt
raised by the reference calculator itself (``KillingEMT`` below) or by the loop's own step.
"""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import read
from helpers.al_configs import tiny_al_config
from helpers.al_models import tiny_ace_start

from matloop.active.config import load_config
from matloop.active.loop import ActiveLearner
from matloop.active.report import status, write_reports
from matloop.active.select import distinct, select_candidates
from matloop.active.state import RunState
from matloop.errors import ConfigError

KILLER = """
from ase.calculators.emt import EMT


class KillingEMT(EMT):
    \"\"\"EMT that is interrupted (Ctrl-C) when it meets the candidate KILL_AT.\"\"\"

    KILL_AT = None
    seen = []

    def calculate(self, atoms=None, *args, **kwargs):
        key = atoms.info.get("matloop_key")
        if key == KillingEMT.KILL_AT:
            raise KeyboardInterrupt
        KillingEMT.seen.append(key)
        super().calculate(atoms, *args, **kwargs)
"""


@pytest.fixture
def killing_emt(tmp_path, monkeypatch):
    """The class of a reference calculator ``killref:KillingEMT`` (a real EMT)."""
    (tmp_path / "killref.py").write_text(textwrap.dedent(KILLER))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("killref", None)
    import killref

    yield killref.KillingEMT
    sys.modules.pop("killref", None)


def _killing_config(tmp_path, **over):
    ref = {"calculator": "killref:KillingEMT"}
    return load_config(tiny_al_config(tmp_path, reference=ref, **over))


def test_report_counts_the_labels_in_the_store_after_a_kill(tmp_path, killing_emt):
    cfg = _killing_config(tmp_path)
    run = tmp_path / "run"
    killing_emt.KILL_AT = "it001-c001"  # while labelling iteration 1: one of its labels stored
    with pytest.raises(KeyboardInterrupt):
        ActiveLearner(cfg, run, progress=False).run()
    report = write_reports(run)  # `matloop al report` of the interrupted run
    stored = len(read(run / "dataset.xyz", ":"))
    assert stored == status(run)["n_labels"] == 5
    assert report["n_labels"] == stored  # was 4: the count of the last finished iteration
    assert "<b>Labels:</b> 5 successful" in (run / "report.html").read_text()

    killing_emt.KILL_AT, killing_emt.seen[:] = None, []
    final = ActiveLearner(cfg, run, progress=False).run()
    assert killing_emt.seen == ["it001-c001", "it001-c002"]  # nothing labelled twice
    assert final["n_labels"] == final["iterations"][-1]["n_labels"] == 7


def test_a_kill_after_the_last_record_does_not_add_an_iteration(tmp_path, monkeypatch):
    # iteration 2 selects nothing: the run ends there; killed just after storing its record
    cfg = load_config(tiny_al_config(tmp_path, select={"threshold": 0.5}))
    run = tmp_path / "run"

    def killed(self, iteration, reason):
        raise KeyboardInterrupt

    monkeypatch.setattr(ActiveLearner, "_mark_stop", killed)
    with pytest.raises(KeyboardInterrupt):
        ActiveLearner(cfg, run, progress=False).run()
    monkeypatch.undo()
    report = ActiveLearner(cfg, run, progress=False).run()
    assert report["stop_reason"] == "no snapshot above the selection threshold"
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]  # was [0, 1, 2]
    assert status(run)["stop_reason"] == report["stop_reason"]


def test_times_of_steps_done_before_a_kill_are_unknown_not_zero(tmp_path, monkeypatch):
    cfg = load_config(tiny_al_config(tmp_path))
    run = tmp_path / "run"
    real = ActiveLearner.finish_iteration

    def killed_after_training(self, iteration, *args, **kwargs):
        if iteration == 1:  # labelled and trained, its record not yet stored
            raise KeyboardInterrupt
        return real(self, iteration, *args, **kwargs)

    monkeypatch.setattr(ActiveLearner, "finish_iteration", killed_after_training)
    with pytest.raises(KeyboardInterrupt):
        ActiveLearner(cfg, run, progress=False).run()
    monkeypatch.undo()
    first, second = ActiveLearner(cfg, run, progress=False).run()["iterations"]
    assert first["label_seconds"] > 0 and first["fit_seconds"] > 0
    # was about 0.001 s each: the time of a rerun that found both done
    assert second["label_seconds"] is None and second["fit_seconds"] is None


def test_uncertainty_target_leaves_no_candidate_unlabelled(tmp_path, capsys):
    # every snapshot is above the threshold (0) and below the target: the run stops
    cfg = load_config(tiny_al_config(tmp_path, stop={"uncertainty_target": 5.0}))
    run = tmp_path / "run"
    report = ActiveLearner(cfg, run, progress=True).run()
    out = capsys.readouterr().out
    assert report["stop_reason"] == "uncertainty target reached"
    st = status(run)
    assert st["n_pending"] == 0  # were 3 selected candidates never labelled
    assert st["n_attempted"] == st["n_labels"] + st["n_quarantined"] == 4
    assert report["iterations"][-1]["n_selected"] == 0
    line = next(x for x in out.splitlines() if "snapshots, max" in x)
    assert "0 selected (uncertainty target 5 eV/Å reached)" in line, line


def test_resume_refuses_another_reference_and_names_other_changes(tmp_path):
    run = tmp_path / "run"
    first = load_config(tiny_al_config(tmp_path, stop={"max_iterations": 1}))
    ActiveLearner(first, run, progress=False).run()
    other = load_config(tiny_al_config(tmp_path, reference={"settings": {"asap_cutoff": True}}))
    with pytest.raises(ConfigError, match=r"reference\.settings: \{\} → \{\"asap_cutoff\""):
        ActiveLearner(other, run, progress=False).run()
    assert RunState(run / "state.db").meta()["config"]["reference"]["settings"] == {}

    longer = tiny_al_config(tmp_path, stop={"max_iterations": 2}, initial={"n_label": 5})
    with pytest.warns(UserWarning) as caught:
        ActiveLearner(load_config(longer), run, progress=False).run()
    text = " ".join(str(w.message) for w in caught)
    assert "stop.max_iterations: 1 → 2" in text
    assert "initial.n_label: 4 → 5" in text and "initial.n_label: no effect" in text


@pytest.mark.parametrize("target", ["test_force_mae_target", "test_energy_mae_target_mev_per_atom"])
def test_a_test_error_target_without_a_test_set_is_refused(tmp_path, target):
    # it could never fire: the run went on to max_iterations without a word
    with pytest.raises(ConfigError, match=f"stop.{target} needs test.data"):
        load_config(tiny_al_config(tmp_path, stop={target: 0.01}))


def test_repeated_initial_structures_are_labelled_once(tmp_path):
    # rattle 0 and two starts (one a translated copy of the other) for four initial labels
    start = _snapshot(1)
    moved = start.copy()
    moved.translate([0.4, 0.2, 0.1])
    other = _snapshot(2)
    cfg = tiny_al_config(tmp_path, atoms=[start, moved, other], initial={"rattle": 0.0})
    learner = ActiveLearner(load_config(cfg), tmp_path / "run", progress=False)
    with pytest.warns(UserWarning, match="2 of the 4 initial structures repeat"):
        learner.initial_selection()
    assert learner.state.n_attempted() == 2  # was 4: start and its copy, then start again


def test_repeats_from_strategy_starts_point_at_the_starts(tmp_path):
    # with strategy.starts, initial.rattle makes nothing: the warning must not advise raising it
    start, other = _snapshot(1), _snapshot(2)
    cfg = tiny_al_config(
        tmp_path,
        atoms=[start, start, other],
        strategy={"starts": [{"kind": "rattle", "rattle": 0.0}]},
    )
    learner = ActiveLearner(load_config(cfg), tmp_path / "run", progress=False)
    with pytest.warns(UserWarning, match="repeat another one") as caught:
        learner.initial_selection()
    message = str(caught[0].message)
    assert "vary strategy.starts" in message and "initial.rattle" not in message


def _snapshot(seed: int) -> Atoms:
    a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    a.rattle(0.05, seed=seed)
    return a


@pytest.mark.parametrize("method, diversity", [("fps", "fps"), ("fps", "none")])
def test_a_repeated_structure_is_selected_once(method, diversity):
    a, c = _snapshot(1), _snapshot(2)
    moved = a.copy()  # symmetry-equivalent: translated, wrapped and atoms permuted
    moved.translate([0.31, 0.12, 0.2])
    moved.wrap()
    moved = moved[[3, 0, 2, 1, 7, 6, 5, 4]]
    kw = {"threshold": 0.0, "max_n": 3, "descriptor": "simple", "method": method}
    picks = select_candidates([a, moved, c], [0.3, 0.2, 0.1], diversity=diversity, **kw)
    assert sorted(picks) == [0, 2]  # was [0, 1, 2]
    # a copy of a labelled structure is not selected again in a later iteration
    picks = select_candidates([moved, c], [0.3, 0.2], labelled=[a], diversity=diversity, **kw)
    assert picks == [1]
    assert distinct([a, moved, c, _snapshot(3)]) == [0, 2, 3]


def test_selection_among_structures_of_different_compositions():
    alloy = _snapshot(4)
    alloy[0].symbol = "Au"
    kw = {"threshold": 0.0, "max_n": 3, "descriptor": "simple"}
    # was a ValueError: descriptors of one length per composition
    picks = select_candidates([_snapshot(1), alloy, _snapshot(2)], [0.3, 0.2, 0.1], **kw)
    assert sorted(picks) == [0, 1, 2]
    picks = select_candidates([alloy, _snapshot(2)], [0.3, 0.2], labelled=[_snapshot(1)], **kw)
    assert sorted(picks) == [0, 1]


def test_foundation_md_starts_from_structures_of_different_compositions():
    from matloop.active.explorers import FoundationMDStarts

    cu = bulk("Cu", "fcc", a=3.61, cubic=True)
    alloy = cu.copy()
    alloy[0].symbol = "Au"
    gen = FoundationMDStarts(
        model="emt", temperatures=[300, 600, 900, 1200], steps=4, sample_interval=2
    )
    made = gen.generate([cu, alloy], 3, np.random.default_rng(0))  # was a ValueError
    assert {a.get_chemical_formula() for a in made} == {"Cu4", "AuCu3"}


def test_on_the_fly_refit_killed_resumes_without_labelling_again(tmp_path):
    from matloop.active.onthefly import OnTheFlyLearner, OnTheFlySettings

    cu, _, model = tiny_ace_start(tmp_path)
    settings = OnTheFlySettings(
        reference="emt", threshold=1e-6, temperature_k=1200, timestep_fs=4.0, steps=20
    )
    otf = tmp_path / "otf"
    (otf / "models").mkdir(parents=True)
    (otf / "models" / "model_001").write_text("in the way: the first refit fails")
    learner = OnTheFlyLearner(otf, settings)
    with pytest.raises(Exception):  # noqa: B017 - whatever the trainer raises for the file
        learner.run(str(model), cu, tmp_path / "labels.xyz")
    assert len(read(otf / "labels.xyz", ":")) == 3  # the first event's label is stored
    (otf / "models" / "model_001").unlink()
    state = OnTheFlyLearner(otf, settings).run(str(model), cu, tmp_path / "labels.xyz")
    stored = read(otf / "labels.xyz", ":")
    assert len(stored) == 2 + len(state["events"])
    positions = [np.round(a.positions, 6).tobytes() for a in stored]
    assert len(set(positions)) == len(positions)  # the frame was not labelled twice
    assert state["events"][0]["n_labels"] == 3 and "pending" not in state
    # a rerun with another reference would add its labels to the same set: refused
    other = OnTheFlySettings(**{**settings.__dict__, "reference": "lj", "steps": 40})
    with pytest.raises(ConfigError, match="--reference emt, not lj"):
        OnTheFlyLearner(otf, other).run(str(model), cu, tmp_path / "labels.xyz")
    assert len(read(otf / "labels.xyz", ":")) == len(stored)
