"""``explore.pressures_gpa`` with starts of which only some are periodic along a, b and c (a slab
beside a bulk cell): allowed, but said at check time, and each walker's record names the
ensemble it ran (was: the slab's walkers ran NVT silently, recorded at the asked pressure).

Real EMT copper; no physics is mocked.
"""

from __future__ import annotations

from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from helpers.al_configs import tiny_al_config

from matloop.active.config import ExploreConfig
from matloop.active.explore import explore
from matloop.calculators.committee import CommitteeCalculator
from matloop.cli import main


def _bulk():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)


def _slab():
    slab = fcc111("Cu", size=(2, 2, 2), a=3.61, vacuum=5.0)  # pbc (True, True, False)
    del slab.info["adsorbate_info"]  # not extxyz-writable
    return slab


def test_a_mix_of_periodic_and_other_starts_is_named_at_check_time(tmp_path, capsys):
    explore_keys = {"pressures_gpa": [0.0, 5.0]}
    config = tiny_al_config(tmp_path, atoms=[_bulk(), _slab()], explore=explore_keys)
    assert main(["config", "validate", str(config)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: explore.")]
    assert len(warnings) == 1
    assert (
        f"explore.pressures_gpa: 1 of the 2 structures in {tmp_path / 'start.xyz'} (index 1) "
        "are not periodic along a, b and c; walkers started from them run NVT at no pressure, "
        "the others NPT" in warnings[0]
    )
    # all periodic: nothing to say
    config = tiny_al_config(tmp_path, atoms=[_bulk(), _bulk()], explore=explore_keys)
    assert main(["config", "validate", str(config)]) == 0
    assert "explore.pressures_gpa" not in capsys.readouterr().err


def test_each_walker_records_the_ensemble_it_ran():
    cfg = ExploreConfig(
        temperatures=[300.0], steps=4, walkers=6, sample_interval=4, pressures_gpa=[5.0]
    )
    res = explore([_bulk(), _slab()], CommitteeCalculator([EMT(), EMT()]), cfg, seed=0, iteration=0)
    seen = set()
    for info in res.walkers:
        periodic = {bool(s.pbc.all()) for s in res.snapshots if s.info["walker"] == info["walker"]}
        assert len(periodic) == 1
        expected = ("npt", 5.0) if periodic.pop() else ("nvt", None)
        assert (info["ensemble"], info["pressure_gpa"]) == expected
        seen.add(info["ensemble"])
    assert seen == {"npt", "nvt"}  # both kinds of start were drawn
