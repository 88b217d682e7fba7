"""Review of the MD physics against exact expectations, with ASE's EMT on Cu (real, fast).

Temperatures count the degrees of freedom that move: 3N − 3 when the centre-of-mass momentum
is zero and conserved (as LAMMPS' ``compute temp``), so every ensemble reports, and its
thermostat targets, the kinetic energy (3N − 3)/2 k_B T. A 4-atom cell makes the difference
from 3N a third, far beyond the statistical error of short runs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read

from matloop.md import run_md

ENSEMBLES = [
    {"ensemble": "nve"},
    {"ensemble": "nvt", "thermostat": "langevin"},
    {"ensemble": "nvt", "thermostat": "nose-hoover"},
    {"ensemble": "npt", "barostat": "mtk"},
    {"ensemble": "npt", "barostat": "berendsen"},
]


def _cu(repeat: int = 1):
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)


def _md(atoms, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_md(atoms, EMT(), progress=False, **kwargs)


def _t_internal(ekin_ev, n_atoms: int) -> np.ndarray:
    """Kinetic temperature (K) of the 3N − 3 degrees of freedom a fixed centre of mass leaves."""
    return 2.0 * np.asarray(ekin_ev) / ((3 * n_atoms - 3) * units.kB)


@pytest.mark.parametrize("kwargs", ENSEMBLES, ids=lambda k: "-".join(k.values()))
def test_reported_temperature_counts_3n_minus_3(kwargs):
    atoms = _cu(2)
    res = _md(atoms, temperature_k=300, timestep_fs=2, steps=4, log_interval=1, **kwargs)
    assert np.allclose(res.temperature_k, _t_internal(res.ekin_ev, len(atoms)), rtol=1e-12)
    assert np.allclose(res.atoms.get_momenta().sum(axis=0), 0.0, atol=1e-10)


def test_initial_velocities_average_the_requested_temperature():
    # Maxwell–Boltzmann less the centre-of-mass motion: <2 E_kin> = (3N − 3) k_B T.
    # Per draw the 9 degrees of freedom scatter by √(2/9) ≈ 47 %: 400 draws give ±7 K.
    atoms = _cu(1)
    t0 = [
        _t_internal(_md(atoms, ensemble="nve", temperature_k=300, steps=1, seed=s).ekin_ev[0], 4)
        for s in range(400)
    ]
    assert abs(np.mean(t0) - 300.0) < 25.0  # before: 400 K (the 3N energy on 3N − 3)


def test_nose_hoover_holds_the_internal_temperature():
    atoms = _cu(1)
    means = []
    for seed in (0, 1):
        res = _md(
            atoms,
            ensemble="nvt",
            thermostat="nose-hoover",
            temperature_k=300,
            timestep_fs=2,
            steps=1000,
            tdamp_fs=40,
            seed=seed,
            log_interval=2,
        )
        means.append(_t_internal(res.ekin_ev[len(res.ekin_ev) // 4 :], 4).mean())
    assert abs(np.mean(means) - 300.0) < 40.0  # before: ≈ 400 K


def test_berendsen_npt_holds_the_internal_temperature():
    atoms = _cu(1)
    res = _md(
        atoms,
        ensemble="npt",
        barostat="berendsen",
        temperature_k=300,
        timestep_fs=2,
        steps=150,
        tdamp_fs=4,
        seed=0,
        log_interval=1,
    )
    assert abs(_t_internal(res.ekin_ev[50:], 4).mean() - 300.0) < 40.0  # before: ≈ 400 K


def test_same_seed_same_langevin_trajectory():
    atoms = _cu(1)
    runs = [_md(atoms, ensemble="nvt", temperature_k=300, steps=20, seed=s) for s in (3, 3, 4)]
    assert np.array_equal(runs[0].atoms.positions, runs[1].atoms.positions)
    assert np.array_equal(runs[0].etot_ev, runs[1].etot_ev)
    assert not np.allclose(runs[0].atoms.positions, runs[2].atoms.positions)


def test_trajectory_times_are_steps_times_timestep(tmp_path):
    path = tmp_path / "cu.traj"
    res = _md(
        _cu(1),
        ensemble="nve",
        temperature_k=300,
        timestep_fs=1.5,
        steps=12,
        traj=path,
        traj_interval=4,
        log_interval=3,
    )
    times = [f.info["time_ps"] for f in read(path, ":")]
    assert np.allclose(times, [0.0, 0.006, 0.012, 0.018])
    assert np.allclose(res.time_ps, np.arange(5) * 3 * 1.5e-3)
