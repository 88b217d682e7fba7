"""Units and ranges of the active-learning configuration (review fixes):

- a model whose only σ is energy_std (one kernel GP, eV/atom) is selected with a threshold and a
  walker limit in eV/atom (defaults 0.001 and 0.05), not with the force defaults in eV/Å
  (0.05 and 1.0): a GP σ of 10 meV/atom was never selected; progress lines, the iteration
  records and the report name the unit used;
- implausible exploration settings are refused before any work with one line each: a timestep
  beyond 10 fs or below 0.05 fs, a pressure beyond ±1000 GPa (bar/kbar/Pa), Langevin
  friction × timestep > 1 (friction in 1/ps);
- a walker (or foundation_md run) shorter than sample_interval records its last step: it
  recorded nothing (foundation_md: a ValueError "high <= 0");
- a run whose walkers recorded no snapshot at all (unstable MD) no longer reports
  "uncertainty target reached" / "no snapshot above the selection threshold".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from helpers.al_configs import tiny_al_config

from matloop.active.config import ExploreConfig, SelectConfig, load_config
from matloop.active.loop import ActiveLearner
from matloop.calculators.committee import CommitteeCalculator
from matloop.errors import ConfigError

KERNEL_TINY = {"model": {"params": {"n_sparse": 20, "descriptor": {"n_max": 3, "l_max": 2}}}}


class EnergySigmaEMT(EMT):
    """EMT with a constant energy σ (eV/atom) and no forces σ: the kernel family's kind."""

    implemented_properties = [*EMT.implemented_properties, "energy_std"]

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        self.results["energy_std"] = self.sigma


def _learner(tmp_path: Path, **over) -> ActiveLearner:
    sections = {"explore": {"walkers": 1, "steps": 10, "sample_interval": 5}}
    for k, v in over.items():
        sections.setdefault(k, {}).update(v)
    cfg = load_config(tiny_al_config(tmp_path, **sections))
    return ActiveLearner(cfg, tmp_path / "run", progress=True)


def test_an_energy_sigma_is_selected_with_an_ev_per_atom_threshold(tmp_path, capsys):
    # select.threshold left at its default (the helper writes 0.0: remove it)
    learner = _learner(tmp_path)
    learner.cfg = learner.cfg.model_copy(update={"select": SelectConfig(max_per_iteration=2)})
    # 10 meV/atom: far above the DFT precision (1 meV/atom), but below the force default
    # 0.05 (eV/Å), with which the old code compared it: nothing was ever selected
    info = learner.explore_and_select(1, EnergySigmaEMT(0.01))
    out = capsys.readouterr().out
    assert info["n_snapshots"] > 0
    assert info["threshold"] == pytest.approx(0.001) and info["sigma_kind"] == "energy"
    assert info["n_above"] == info["n_snapshots"]
    assert len(info["selected_uncertainties"]) == 2
    assert "selection threshold 0.001 eV/atom" in out, out
    assert "above threshold 0.001 eV/atom" in out, out
    assert "eV/Å" not in out, out


def test_a_forces_sigma_keeps_the_ev_per_angstrom_threshold(tmp_path, capsys):
    learner = _learner(tmp_path)
    learner.cfg = learner.cfg.model_copy(update={"select": SelectConfig(max_per_iteration=2)})
    # a committee of identical members: forces σ 0 eV/Å, nothing above 0.05 eV/Å
    info = learner.explore_and_select(1, CommitteeCalculator([EMT(), EMT()]))
    out = capsys.readouterr().out
    assert info["threshold"] == pytest.approx(0.05) and info["sigma_kind"] == "forces"
    assert info["n_above"] == 0
    assert "selection threshold 0.05 eV/Å" in out, out


def test_thresholds_and_walker_limits_default_per_sigma_kind(tmp_path):
    assert SelectConfig().threshold_for("forces") == pytest.approx(0.05)
    assert SelectConfig().threshold_for("energy") == pytest.approx(0.001)
    assert SelectConfig(threshold=0.2).threshold_for("energy") == pytest.approx(0.2)
    assert ExploreConfig().fixed_limit("forces") == pytest.approx(1.0)
    assert ExploreConfig().fixed_limit("energy") == pytest.approx(0.05)
    assert ExploreConfig(uncertainty_limit=0.3).fixed_limit("energy") == pytest.approx(0.3)
    learner = _learner(tmp_path)
    # walkers of an energy-σ model stop at 0.05 eV/atom, not at 1 (eV/Å read as eV/atom)
    assert learner.walker_limit(EnergySigmaEMT(0.01), 1.0, []) == pytest.approx(0.05)
    assert learner.walker_limit(CommitteeCalculator([EMT(), EMT()]), 1.0, []) == 1.0


def test_a_kernel_run_reports_its_sigma_in_ev_per_atom(tmp_path, capsys):
    # no test set and no labels after iteration 0: sigma_kind came only from calibration or the
    # test set, so the report said "committee forces_std (eV/Å)" for the GP's energy σ
    learner = _learner(
        tmp_path,
        model={"family": "kernel", "committee": 1, "train": KERNEL_TINY},
        select={"threshold": 100.0},
        stop={"max_iterations": 1},
    )
    report = learner.run()
    assert report["stop_reason"] == "no snapshot above the selection threshold"
    assert [r["sigma_kind"] for r in report["iterations"]] == ["energy", "energy"]
    assert report["iterations"][1]["select_threshold"] == 100.0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "σ: energy std (eV/atom)" in html and "forces_std (eV/Å)" not in html


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("explore", {"timestep_fs": 50.0}, r"explore\.timestep_fs: timestep 50 fs .* 10 fs"),
        ("explore", {"timestep_fs": 0.002}, r"timestep_fs: .*in fs \(0\.002 ps would be 2 fs\)"),
        ("explore", {"pressures_gpa": [0.0, 1e5]}, r"in GPa: 100000 .* in bar 10 GPa"),
        ("explore", {"pressures_gpa": [-2000.0]}, r"pressures_gpa: .*-2000 is beyond ±1000 GPa"),
        ("explore", {"friction": 10.0}, r"friction × timestep_fs = 40 exceeds 1.*1/fs"),
        (
            "strategy",
            {"starts": [{"kind": "foundation_md", "model": "emt", "timestep_fs": 20.0}]},
            r"timestep 20 fs is longer than 10 fs",
        ),
    ],
)
def test_implausible_exploration_settings_are_refused_in_one_line(
    tmp_path, section, values, message
):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(tiny_al_config(tmp_path, **{section: values}))
    assert "\n" not in str(err.value).strip()


def test_plausible_exploration_settings_still_load(tmp_path):
    cfg = load_config(
        tiny_al_config(
            tmp_path,
            explore={
                "timestep_fs": 10.0,
                "pressures_gpa": [-50.0, 0.0, 360.0, 1000.0],
                "friction": 0.1,
                "steps": 10,
                "sample_interval": 10,
            },
        )
    )
    assert cfg.explore.pressures_gpa == [-50.0, 0.0, 360.0, 1000.0]
    assert load_config(tiny_al_config(tmp_path, explore={"timestep_fs": 0.25})).explore


def test_a_walker_shorter_than_the_sample_interval_records_its_last_step():
    from matloop.active.explore import explore
    from matloop.active.explorers import FoundationMDStarts

    start = bulk("Cu", "fcc", a=3.61, cubic=True)
    cfg = ExploreConfig(temperatures=[300.0], steps=4, sample_interval=10, walkers=1)
    res = explore([start], CommitteeCalculator([EMT(), EMT()]), cfg, seed=0, iteration=1)
    assert [s.info["md_step"] for s in res.snapshots] == [4]
    gen = FoundationMDStarts(model="emt", temperatures=[300.0], steps=4, sample_interval=10)
    out = gen.generate([start], 2, np.random.default_rng(0))
    assert len(out) == 1  # the one snapshot there is


def test_no_snapshot_at_all_is_not_reported_as_converged(tmp_path, monkeypatch):
    # a model unstable in MD: every walker stops at its first look (here: σ not finite), so
    # nothing is measured; the max σ of "no snapshot" is 0, which met any uncertainty target
    import matloop.active.explore as explore_module
    from matloop.calculators.uncertainty import Uncertainty

    def unstable(model, atoms, scale=1.0):
        return Uncertainty("forces", float("nan"), np.full(len(atoms), np.nan))

    learner = _learner(tmp_path, stop={"uncertainty_target": 0.5, "max_iterations": 2})
    monkeypatch.setattr(explore_module, "predict_uncertainty", unstable)
    report = learner.run()
    reason = report["stop_reason"]
    assert reason.startswith("the walkers recorded no snapshot (stopped: unphysical ×1)"), reason
    assert "target reached" not in reason


def test_the_template_names_the_sigma_units(tmp_path):
    from matloop.active.config import template

    text = template()
    assert "0.001 eV/atom for an energy σ" in text and "0.05 eV/Å" in text
    write_start = bulk("Cu", cubic=True)
    write_start.write(tmp_path / "start.xyz")
    path = tmp_path / "al.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.select.threshold is None and cfg.explore.uncertainty_limit is None
