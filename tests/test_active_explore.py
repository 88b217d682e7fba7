"""Exploration walkers: uncertainty hard limit, strains, NPT at a pressure."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from matloop.active.config import ExploreConfig
from matloop.active.explore import explore
from matloop.calculators.committee import CommitteeCalculator


def _start():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)


def test_walker_stops_at_the_uncertainty_limit():
    # EMT and a Lennard-Jones model disagree strongly: every walker stops at its first sample
    comm = CommitteeCalculator([EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0)])
    cfg = ExploreConfig(
        temperatures=[300.0],
        steps=50,
        walkers=2,
        sample_interval=5,
        uncertainty_limit=0.05,
        timestep_fs=2.0,
    )
    res = explore([_start()], comm, cfg, seed=0, iteration=1)
    assert [w["stopped"] for w in res.walkers] == ["uncertainty_limit"] * 2
    assert all(w["steps_done"] == 5 for w in res.walkers)
    assert len(res.snapshots) == 2 and res.max_uncertainty > 0.05
    assert all(s.calc is None for s in res.snapshots)


def test_strains_temperatures_and_pressure():
    comm = CommitteeCalculator([EMT(), EMT()])
    cfg = ExploreConfig(
        temperatures=[500.0],
        steps=20,
        walkers=2,
        sample_interval=10,
        strains=[0.03],
        timestep_fs=4.0,
    )
    res = explore([_start()], comm, cfg, seed=0, iteration=0)
    assert len(res.snapshots) == 4 and res.max_uncertainty == 0.0
    v0 = _start().get_volume()
    assert np.allclose([s.get_volume() for s in res.snapshots], v0 * 1.03**3)
    assert {s.info["temperature"] for s in res.snapshots} == {500.0}
    cfg = ExploreConfig(
        temperatures=[300.0],
        steps=30,
        walkers=1,
        sample_interval=10,
        pressures_gpa=[20.0],
        timestep_fs=4.0,
    )
    res = explore([_start()], comm, cfg, seed=0, iteration=0)
    assert res.walkers[0]["pressure_gpa"] == 20.0 and res.walkers[0]["stopped"] == "steps"
    assert res.snapshots[-1].get_volume() < v0  # compressed by 20 GPa


def test_a_driver_moves_the_walkers_while_the_model_gives_sigma():
    comm = CommitteeCalculator([EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0)])
    cfg = ExploreConfig(
        temperatures=[600.0],
        steps=20,
        walkers=1,
        sample_interval=10,
        uncertainty_limit=1e6,
        timestep_fs=2.0,
    )
    own = explore([_start()], comm, cfg, seed=0, iteration=0)
    driven = explore([_start()], comm, cfg, seed=0, iteration=0, driver=EMT())
    assert len(own.snapshots) == len(driven.snapshots) == 2
    # same seeds, other forces: other trajectories; σ is still the committee's spread
    assert not np.allclose(own.snapshots[-1].positions, driven.snapshots[-1].positions)
    assert min(driven.uncertainties) > 0
    again = explore([_start()], comm, cfg, seed=0, iteration=0, driver=EMT())
    assert np.allclose(again.snapshots[-1].positions, driven.snapshots[-1].positions)
