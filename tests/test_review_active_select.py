"""Review of the selection settings and on-the-fly bookkeeping: a key that the others would
leave without effect is refused in one line before any work (never silently overridden; a
``strategy.selection: auto`` is resolved with the model family and committee size), and an
on-the-fly event reads labels.xyz once (its count comes from the labels it fitted on).

Real EMT copper and a tiny ``ace`` model; no physics is mocked.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read
from helpers.al_models import tiny_ace_start

from matloop.active.config import ActiveLearningConfig
from matloop.active.select import select_candidates
from matloop.errors import ConfigError
from matloop.utils.config import parse_config


def _config(**sections) -> dict:
    cfg = {"reference": {"calculator": "emt"}, "initial": {"structures": "start.xyz"}}
    for key, value in sections.items():
        cfg[key] = value
    return cfg


def _refused(cfg: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(cfg, ActiveLearningConfig, "al.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def _snapshots(n: int = 8) -> list:
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    out = []
    for k in range(n):
        a = base.copy()
        a.rattle(0.02 + 0.03 * (k % 4), seed=k)
        out.append(a)
    return out


@pytest.mark.parametrize("selection", ["sigma_fps", "dopt", "vopt", "auto"])
def test_diversity_none_with_a_selection_that_ignores_it_is_refused(selection):
    message = _refused(_config(select={"diversity": "none"}, strategy={"selection": selection}))
    assert "select.diversity: none" in message and f"strategy.selection: {selection}" in message
    # the one method it belongs to, and the other methods with the default, are accepted
    parse_config(_config(select={"diversity": "none"}), ActiveLearningConfig, "al.yaml")
    parse_config(_config(strategy={"selection": selection}), ActiveLearningConfig, "al.yaml")


def test_select_candidates_refuses_what_it_would_silently_override():
    snaps, sigma = _snapshots(), np.linspace(0.5, 0.1, 8)
    kw = {"threshold": 0.05, "max_n": 3, "descriptor": "simple"}
    # was: plain top-σ [0, 1, 2], as if sigma_fps had not been asked for
    with pytest.raises(ConfigError, match="strategy.selection: sigma_fps"):
        select_candidates(snaps, sigma, diversity="none", method="sigma_fps", **kw)
    assert select_candidates(snaps, sigma, diversity="none", method="fps", **kw) == [0, 1, 2]
    assert len(select_candidates(snaps, sigma, method="sigma_fps", **kw)) == 3


@pytest.mark.parametrize(
    "select, strategy, why",
    [
        ({"descriptor": "simple"}, {"selection": "dopt"}, "strategy.selection: dopt"),
        ({"descriptor": "model"}, {"selection": "vopt"}, "strategy.selection: vopt"),
        ({"descriptor": "simple", "diversity": "none"}, {}, "select.diversity: none"),
    ],
)
def test_a_descriptor_no_selection_uses_is_refused(select, strategy, why):
    message = _refused(_config(select=select, strategy=strategy))
    assert f"select.descriptor: {select['descriptor']} has no effect with {why}" in message


@pytest.mark.parametrize(
    "selection, model",
    [
        ("fps", {}),
        ("sigma_fps", {}),
        ("auto", {"family": "ace", "committee": 4}),  # a committee's auto is sigma_fps
        ("auto", {"family": "bpnn"}),
    ],
)
def test_a_descriptor_is_accepted_where_it_can_apply(selection, model):
    cfg = _config(select={"descriptor": "simple"}, strategy={"selection": selection}, model=model)
    assert parse_config(cfg, ActiveLearningConfig, "al.yaml").select.descriptor == "simple"


@pytest.mark.parametrize("descriptor", ["model", "simple"])
@pytest.mark.parametrize("committee", [None, 1])  # null: one model, ace has its own σ
def test_a_descriptor_auto_ignores_for_one_linear_model_is_refused(
    tmp_path, capsys, descriptor, committee
):
    # was accepted: auto is dopt for one ace model, and dopt never reads the descriptor
    from helpers.al_configs import tiny_al_config

    from matloop.cli import main

    path = tiny_al_config(
        tmp_path,
        select={"descriptor": descriptor},
        strategy={"selection": "auto"},
        model={"committee": committee},
    )
    assert main(["config", "validate", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (
        f"select.descriptor: {descriptor} has no effect with strategy.selection: auto (dopt for "
        "one model of the linear family ace" in err
    )
    assert "set select.descriptor: auto" in err
    # a committee's auto is sigma_fps, whose distances are in that descriptor's space
    path = tiny_al_config(
        tmp_path,
        select={"descriptor": descriptor},
        strategy={"selection": "auto"},
        model={"committee": 2},
    )
    assert main(["config", "validate", str(path)]) == 0, capsys.readouterr().err


def test_auto_means_for_a_config_what_it_means_for_the_models_calculator(tmp_path):
    """The config's resolution (family, members) and the loop's (the calculator) agree."""
    from matloop.active.loop import load_model
    from matloop.active.select import resolve_selection

    _, _, path = tiny_ace_start(tmp_path)
    single, committee = load_model([path]), load_model([path, path])
    assert resolve_selection("auto", family="ace", members=1) == "dopt"
    assert resolve_selection("auto", calc=single) == "dopt"
    assert resolve_selection("auto", family="ace", members=2) == "sigma_fps"
    assert resolve_selection("auto", calc=committee) == "sigma_fps"
    assert resolve_selection("auto", family="bpnn") == resolve_selection("auto") == "sigma_fps"
    assert resolve_selection("vopt", family="ace") == "vopt"


def test_walker_driver_until_without_a_driver_is_refused():
    message = _refused(_config(strategy={"walker_driver_until": 20}))
    assert "strategy.walker_driver_until needs strategy.walker_driver" in message
    cfg = _config(strategy={"walker_driver": "emt", "walker_driver_until": 20})
    assert parse_config(cfg, ActiveLearningConfig, "al.yaml").strategy.walker_driver_until == 20


def test_handlers_that_max_retries_0_never_tries_are_refused():
    ladder = {"scf": [{"max_cycle": 300}]}
    message = _refused(
        _config(reference={"calculator": "emt", "max_retries": 0, "handlers": ladder})
    )
    assert "handlers are never tried with max_retries: 0" in message
    for reference in ({"max_retries": 0, "handlers": {}}, {"max_retries": 1, "handlers": ladder}):
        cfg = _config(reference={"calculator": "emt", **reference})
        parse_config(cfg, ActiveLearningConfig, "al.yaml")


def test_on_the_fly_reads_the_labels_once_per_event_and_counts_across_a_kill(tmp_path):
    from matloop.active.onthefly import OnTheFlyLearner, OnTheFlySettings

    class CountingLearner(OnTheFlyLearner):
        """Counts the reads of labels.xyz (each parses the whole file: O(labels))."""

        reads = 0

        def labels(self):
            CountingLearner.reads += 1
            return super().labels()

    cu, _, model = tiny_ace_start(tmp_path)
    settings = OnTheFlySettings(
        reference="emt",
        threshold=1e-6,  # every check is an event
        temperature_k=900,
        timestep_fs=4.0,
        steps=4,
        check_interval=2,
        checkpoint_steps=2,
    )
    otf = tmp_path / "otf"
    (otf / "models").mkdir(parents=True)
    (otf / "models" / "model_002").write_text("in the way: the second refit fails")
    with pytest.raises(Exception):  # noqa: B017 - whatever the trainer raises for the file
        CountingLearner(otf, settings).run(model, cu, tmp_path / "labels.xyz")
    assert CountingLearner.reads == 2  # one per event (was 3: the first event counted again)
    (otf / "models" / "model_002").unlink()
    CountingLearner.reads = 0
    state = CountingLearner(otf, settings).run(model, cu, tmp_path / "labels.xyz")
    assert CountingLearner.reads == 1  # the pending event, not labelled again (was 2)
    assert [e["n_labels"] for e in state["events"]] == [3, 4]
    assert len(read(otf / "labels.xyz", ":")) == 4 and state["finished"]


@pytest.mark.parametrize("pool, method", [(None, "dopt"), ("snapshots", "vopt")])
def test_feature_selection_names_the_method_it_was_asked_for(pool, method):
    """EMT has no per-atom features: the error names dopt or vopt, whichever was asked."""
    from matloop.active.select import dopt_select

    snapshots = [bulk("Cu", "fcc", a=3.61, cubic=True) for _ in range(2)]
    for k, atoms in enumerate(snapshots):
        atoms.rattle(0.05, seed=k)
    with pytest.raises(ConfigError, match=f"selection '{method}' needs a model with per-atom"):
        dopt_select(snapshots, EMT(), 1, pool=snapshots if pool else None)
