"""Active-learning config validation, CLI errors, selection (FPS) and the state database."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.io import write

from matloop.active.config import ActiveLearningConfig, load_config, template
from matloop.active.select import farthest_point_sampling, select_candidates, simple_descriptor
from matloop.active.state import RunState
from matloop.cli import main
from matloop.errors import ConfigError
from matloop.labelling import make_labeller


def _write_config(tmp_path, **changes):
    write(tmp_path / "start.xyz", bulk("Cu", cubic=True))
    data = yaml.safe_load(template())
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_template_is_a_valid_config(tmp_path):
    cfg = load_config(_write_config(tmp_path))
    assert isinstance(cfg, ActiveLearningConfig)
    assert cfg.reference.calculator == "emt"
    assert cfg.initial.structures == str((tmp_path / "start.xyz").resolve())


def test_default_committee_is_the_models_own_sigma_where_it_has_one(tmp_path):
    cfg = load_config(_write_config(tmp_path))
    assert cfg.model.family == "ace" and cfg.model.committee == 1  # the posterior σ
    bpnn = load_config(_write_config(tmp_path, **{"model.family": "bpnn"}))
    assert bpnn.model.committee == 4  # no σ of its own: a committee
    given = load_config(_write_config(tmp_path, **{"model.committee": 3}))
    assert given.model.committee == 3


def test_unknown_key_lists_valid_keys(tmp_path):
    path = _write_config(tmp_path, **{"explore.temprature": 300})
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'explore\.temprature' \(valid keys "
        r"here: .*steps, .*temperatures",
    ):
        load_config(path)


def test_bad_values_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="budget.max_labels"):
        load_config(_write_config(tmp_path, **{"budget.max_labels": 0}))
    with pytest.raises(ConfigError, match="exceeds budget.max_labels"):
        load_config(_write_config(tmp_path, **{"initial.n_label": 500}))


def test_cli_bad_config_is_one_clear_line(tmp_path, capsys):
    path = _write_config(tmp_path, **{"model.comittee": 3})
    rc = main(["al", "run", str(path), "--dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and "unknown key 'model.comittee'" in err
    assert "Traceback" not in err


def test_cli_unreachable_scheduler(tmp_path, capsys):
    path = _write_config(tmp_path, **{"execution.connect_timeout_s": 1.0})
    rc = main(
        ["al", "run", str(path), "--dir", str(tmp_path / "run"), "--scheduler", "tcp://127.0.0.1:9"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err


def test_cli_unknown_reference_calculator(tmp_path, capsys):
    path = _write_config(tmp_path, **{"reference.calculator": "nosuchcode"})
    rc = main(["al", "run", str(path), "--dir", str(tmp_path / "run")])
    assert rc == 1
    assert "unknown calculator 'nosuchcode'" in capsys.readouterr().err


def test_cli_status_of_a_non_run(tmp_path, capsys):
    assert main(["al", "status", str(tmp_path)]) == 1
    assert "not an active-learning run directory" in capsys.readouterr().err


def test_farthest_point_sampling_spreads_out():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 10.0], [10.1, 0.0]])
    picks = farthest_point_sampling(x, 3, first=0)
    assert picks[0] == 0
    assert set(picks[1:]) in ({2, 3}, {3, 4})
    # with an existing point near the origin, the first pick is far from it
    picks = farthest_point_sampling(x, 1, existing=np.array([[0.0, 0.05]]))
    assert picks[0] in (2, 3, 4)
    assert len(farthest_point_sampling(x, 10)) == 5


def test_select_threshold_budget_and_diversity():
    base = bulk("Cu", cubic=True) * (2, 1, 1)
    snaps = []
    for i in range(8):
        a = base.copy()
        a.rattle(0.02 if i < 4 else 0.2, seed=i)
        snaps.append(a)
    unc = [0.01, 0.5, 0.4, 0.45, 0.3, 0.2, 0.35, 0.01]
    picks = select_candidates(snaps, unc, threshold=0.05, max_n=3, diversity="fps")
    assert len(picks) == 3 and picks[0] == 1  # most uncertain first
    assert all(unc[i] > 0.05 for i in picks)
    assert select_candidates(snaps, unc, threshold=0.05, max_n=3, diversity="none") == [1, 3, 2]
    assert select_candidates(snaps, unc, threshold=1.0, max_n=3) == []


def test_simple_descriptor_is_invariant():
    a = bulk("Cu", cubic=True) * (2, 1, 1)
    a.rattle(0.1, seed=3)
    d = simple_descriptor(a)
    b = a.copy()
    b.rotate(33, "z", rotate_cell=True)
    b.translate([0.3, 0.1, 0.2])
    np.testing.assert_allclose(simple_descriptor(b[::-1]), d, atol=1e-8)


def test_state_label_rows_are_atomic_and_idempotent(tmp_path):
    st = RunState(tmp_path / "state.db")
    a = bulk("Cu", cubic=True)
    st.write_selection(0, [("k0", a, {"origin": "t"}), ("k1", a, {"origin": "t"})], {})
    assert st.has_selection(0) and len(st.pending(0)) == 2
    good = make_labeller("emt").label(a)
    bad = make_labeller("faulty", {"p_nan": 1.0}).label(a)
    st.record_label("k0", 0, good)
    st.record_label("k0", 0, good)  # a second write of a finished label is ignored
    st.record_label("k1", 0, bad)
    assert st.count(kind="label") == 1 and st.count(kind="quarantine") == 1
    assert st.pending(0) == []
    q = st.quarantine()[0]
    assert q["key"] == "k1" and q["status"] == "inconsistent" and "non-finite" in q["reason"]
    labelled = st.labelled()
    assert len(labelled) == 1 and np.isfinite(labelled[0].get_forces()).all()
    row = st.get_key("label", "k0")
    assert row.labeller == "emt" and row.data["status"] == "success" and row.labelled_at > 0
    # a failure inside a transaction leaves nothing behind
    with pytest.raises(RuntimeError), st.db:
        st.db.write(a, kind="label", key="k9", iteration=0)
        raise RuntimeError("crash")
    assert st.get_key("label", "k9") is None
