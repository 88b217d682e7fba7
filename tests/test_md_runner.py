"""MD runner on real calculators (ASE EMT Cu, matscipy Stillinger–Weber Si)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.calculators import resolve_calculator
from matloop.errors import ConfigError, DataError, MatloopError, UnknownElementError
from matloop.md import LOG_COLUMNS, energy_drift, read_md_log, read_structure, run_md


@pytest.fixture(scope="module")
def cu32():
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)


@pytest.fixture(scope="module")
def si8():
    return bulk("Si", "diamond", a=5.43, cubic=True)


def test_nve_emt_cu_conserves_energy(cu32, tmp_path):
    res = run_md(
        cu32,
        EMT(),
        "nve",
        temperature_k=300,
        timestep_fs=2.0,
        steps=300,
        traj=tmp_path / "md.traj",
        log=tmp_path / "md.log",
        progress=False,
        seed=1,
    )
    # EMT Cu with 2 fs: the total energy stays within a fraction of a meV/atom over 0.6 ps
    assert abs(res.drift_mev_per_atom_per_ps) < 0.5
    assert res.summary()["etot_range_mev_per_atom"] < 1.0
    # equipartition: a perfect crystal started at 300 K settles near 150 K
    assert 80 < res.mean_temperature_k < 230
    assert res.atoms is not cu32 and np.any(res.atoms.positions != cu32.positions)
    log = read_md_log(tmp_path / "md.log")
    assert set(log) == set(LOG_COLUMNS)
    assert len(log["time_ps"]) == 301 and log["time_ps"][-1] == pytest.approx(0.6)
    from ase.io import read

    frames = read(tmp_path / "md.traj", ":")
    assert frames[-1].info["time_ps"] == pytest.approx(0.6)
    assert len(frames) > 10


def test_nve_drift_detects_bad_timestep(cu32):
    good = run_md(cu32, EMT(), "nve", timestep_fs=1.0, steps=100, progress=False)
    with pytest.warns(UserWarning, match="very long"):
        bad = run_md(cu32, EMT(), "nve", timestep_fs=12.0, steps=100, progress=False)
    assert bad.summary()["etot_range_mev_per_atom"] > 10 * good.summary()["etot_range_mev_per_atom"]


def test_nvt_and_npt_stillinger_weber_si(si8, tmp_path):
    sw = resolve_calculator("sw")
    nvt = run_md(
        si8,
        sw,
        "nvt",
        temperature_k=600,
        timestep_fs=2.0,
        steps=150,
        progress=False,
        friction_per_fs=0.05,
        traj=tmp_path / "nvt.xyz",
    )
    assert 350 < nvt.mean_temperature_k < 850
    assert nvt.summary()["nve_drift_mev_per_atom_per_ps"] is None
    npt = run_md(
        si8,
        sw,
        "npt",
        temperature_k=300,
        pressure_gpa=10.0,
        timestep_fs=2.0,
        steps=150,
        progress=False,
        pdamp_fs=100,
    )
    assert npt.volume_a3[-1] < 0.97 * si8.get_volume()  # compressed at 10 GPa
    assert 5.0 < npt.summary()["mean_pressure_gpa_second_half"] < 15.0


def test_energy_drift_is_linear_fit():
    t = np.linspace(0, 2, 21)
    assert energy_drift(t, 0.004 * t + 1.0, n_atoms=2) == pytest.approx(2.0)


@pytest.mark.parametrize("steps", [0, -5])
def test_zero_or_negative_steps(cu32, steps):
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        run_md(cu32, EMT(), steps=steps, progress=False)


def test_bad_options(cu32):
    with pytest.raises(ConfigError, match="unknown ensemble"):
        run_md(cu32, EMT(), ensemble="nph", steps=5, progress=False)
    with pytest.raises(ConfigError, match="timestep"):
        run_md(cu32, EMT(), timestep_fs=0.0, steps=5, progress=False)
    with pytest.raises(ConfigError, match="temperature > 0"):
        run_md(cu32, EMT(), ensemble="nvt", temperature_k=0.0, steps=5, progress=False)


def test_unknown_element_is_clear(si8):
    with pytest.raises(UnknownElementError, match="Si"):
        run_md(si8, EMT(), steps=5, progress=False)
    cu = bulk("Cu", "fcc", a=3.61)
    with pytest.raises(UnknownElementError, match="'sw'"):
        run_md(cu, "sw", steps=5, progress=False)


def test_exploding_run_stops_and_leaves_no_file(cu32, tmp_path):
    squeezed = cu32.copy()
    squeezed.set_cell(cu32.cell * 0.75, scale_atoms=True)
    with pytest.raises(MatloopError, match="unstable"):
        run_md(
            squeezed,
            EMT(),
            timestep_fs=5.0,
            steps=50,
            temperature_k=3000,
            max_force_ev_per_a=5.0,
            log=tmp_path / "x.log",
            progress=False,
        )
    assert not (tmp_path / "x.log").exists()
    assert list(tmp_path.iterdir()) == []


def test_read_structure_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_structure(tmp_path / "missing.xyz")
    bad = tmp_path / "bad.xyz"
    bad.write_text("this is not\nan xyz file\n")
    with pytest.raises(DataError, match="cannot read"):
        read_structure(bad)
