"""Checks a first-time user of `matloop al run` relies on (review fixes):

- elements the reference calculator has no parameters for are refused before any label;
- a temperature below 1 K (kT in eV by mistake) is refused, not explored at 0.05 K;
- a --dir holding someone else's config.yaml is not overwritten without --force;
- an iteration that labels nothing records no label/fit time (not the previous iteration's);
- progress lines give a model's energy σ in eV/atom, not as forces_std in eV/Å.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.build import bulk
from helpers.al_configs import tiny_al_config

from matloop.active.config import load_config
from matloop.active.loop import ActiveLearner
from matloop.cli import main
from matloop.errors import ConfigError

# one walker, one iteration: a quick run; keywords update a section as in tiny_al_config
QUICK = {
    "explore": {"walkers": 1},
    "select": {"max_per_iteration": 2},
    "budget": {"max_labels": 8},
    "stop": {"max_iterations": 1},
}


def _config(tmp_path: Path, atoms=None, **over) -> Path:
    sections = {k: dict(v) for k, v in QUICK.items()}
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    return tiny_al_config(tmp_path, atoms=atoms, **sections)


def test_elements_the_reference_cannot_label_are_refused_before_any_work(tmp_path, capsys):
    config = _config(tmp_path, atoms=bulk("Si", "diamond", a=5.43, cubic=True))
    run = tmp_path / "run"
    assert main(["al", "run", str(config), "--dir", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "contains Si" in err and "'emt' has no parameters" in err and "Cu" in err
    assert not run.exists()  # no label spent, nothing left behind

    # matscipy's Si potentials would give Cu atoms Si energies without any error
    cu = _config(tmp_path, reference={"calculator": "sw"})
    assert main(["config", "validate", str(cu)]) == 1
    assert "contains Cu, which the reference calculator 'sw'" in capsys.readouterr().err

    interstitial = {"starts": [{"kind": "interstitial", "element": "Fe"}]}
    fe = _config(tmp_path, strategy=interstitial)
    assert main(["config", "validate", str(fe)]) == 1
    assert "interstitial element) contains Fe" in capsys.readouterr().err

    ok = _config(tmp_path, reference={"calculator": "faulty"})  # EMT with injected faults
    assert main(["config", "validate", str(ok)]) == 0


def test_python_api_checks_inputs_before_any_work(tmp_path):
    from matloop.active import run_active_learning

    config = _config(tmp_path, atoms=bulk("Si", "diamond", a=5.43, cubic=True))
    run = tmp_path / "run"
    with pytest.raises(ConfigError, match="contains Si"):
        run_active_learning(config, run, progress=False)
    assert not run.exists()


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("explore", {"temperatures": [0.05]}),
        ("strategy", {"ramp_from_k": 0.05}),
        (
            "strategy",
            {"starts": [{"kind": "foundation_md", "model": "emt", "temperatures": [0.05]}]},
        ),
    ],
)
def test_a_temperature_given_as_kt_in_ev_is_refused(tmp_path, section, values):
    with pytest.raises(ConfigError, match=r"temperatures are in K: 0\.05 .* 580 K"):
        load_config(_config(tmp_path, **{section: values}))
    load_config(_config(tmp_path, explore={"temperatures": [5.0, 300.0]}))  # low K is fine


def test_al_run_keeps_an_unrelated_config_yaml_in_its_dir(tmp_path, capsys):
    config = _config(tmp_path)
    run = tmp_path / "project"
    run.mkdir()
    mine = b"# a training config of mine, not an active-learning run\nmodel: {family: ace}\n"
    (run / "config.yaml").write_bytes(mine)

    assert main(["al", "run", str(config), "--dir", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / "config.yaml") in err and "--force" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    assert (run / "config.yaml").read_bytes() == mine


def test_iteration_without_labels_has_no_label_or_fit_time_and_sigma_units(tmp_path, capsys):
    # the kernel family gives an energy σ (eV/atom); a high threshold selects nothing
    small_kernel = {
        "model": {"params": {"n_sparse": 20, "descriptor": {"n_max": 3, "l_max": 2}}},
    }
    cfg = load_config(
        _config(
            tmp_path,
            model={"family": "kernel", "committee": 1, "train": small_kernel},
            select={"threshold": 100.0},
        )
    )
    report = ActiveLearner(cfg, tmp_path / "run", progress=True).run()
    out = capsys.readouterr().out
    assert report["stop_reason"] == "no snapshot above the selection threshold"
    first, second = report["iterations"]
    assert first["fit_seconds"] is not None and first["label_seconds"] is not None
    assert second["n_selected"] == 0
    assert second["label_seconds"] is None and second["fit_seconds"] is None
    explored = [line for line in out.splitlines() if "iteration 1:" in line]
    assert any("max energy_std" in line and "eV/atom" in line for line in explored), out
    assert not any("forces_std" in line or "eV/Å" in line for line in explored), out


def test_reference_handlers_are_checked_before_any_work(tmp_path, capsys):
    # a misspelt error kind would never run its ladder, and a patch key EMT does not take
    # would fail only at the first failed label; both are refused by `config validate`
    misspelt = _config(tmp_path, reference={"handlers": {"SCF": [{"asap_cutoff": True}]}})
    assert main(["config", "validate", str(misspelt)]) == 1
    assert "unknown error kind 'SCF'" in capsys.readouterr().err
    bad_key = _config(tmp_path, reference={"handlers": {"crash": [{"smearing": 0.1}]}})
    assert main(["config", "validate", str(bad_key)]) == 1
    assert "smearing" in capsys.readouterr().err


def test_npt_walkers_without_a_periodic_start_are_refused(tmp_path, capsys):
    # pressures_gpa with only a cluster to start from: every walker silently ran NVT
    from ase.cluster import Octahedron

    cluster = Octahedron("Cu", 3, 1)
    cluster.center(vacuum=5.0)
    config = _config(tmp_path, atoms=cluster, explore={"pressures_gpa": [0.0, 5.0]})
    assert main(["config", "validate", str(config)]) == 1
    err = capsys.readouterr().err
    assert "explore.pressures_gpa needs a start periodic along a, b and c" in err
    bulk_cfg = _config(tmp_path, explore={"pressures_gpa": [0.0, 5.0]})
    assert main(["config", "validate", str(bulk_cfg)]) == 0
