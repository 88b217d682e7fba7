"""Follow-ups of the MD review, with ASE's EMT on Cu (real, fast).

The initial velocities give exactly the requested kinetic temperature (as LAMMPS' ``velocity
create``), counted over the same degrees of freedom as the log (3N − 3 with a conserved
centre-of-mass momentum). The trajectory keeps its even frame grid (as ASE and LAMMPS dumps; the
MSD needs it), the log always ends at the last step, and `matloop md` says where the trajectory
ends when the grid misses the last step.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import read, write

from matloop.cli import main
from matloop.md import run_md


def _cu(repeat: int = 2):
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)


def _md(atoms, steps: int = 1, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_md(atoms, EMT(), progress=False, steps=steps, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ensemble": "nve"},
        {"ensemble": "nvt", "thermostat": "langevin"},
        {"ensemble": "nvt", "thermostat": "nose-hoover"},
        {"ensemble": "npt", "barostat": "mtk"},
    ],
    ids=lambda k: "-".join(k.values()),
)
def test_first_logged_temperature_is_the_requested_one(kwargs):
    # before: one draw of a 32-atom cell started at 225–358 K for seeds 0–4 (asked: 300 K)
    t0 = [_md(_cu(), temperature_k=300.0, seed=s, **kwargs).temperature_k[0] for s in range(3)]
    assert np.allclose(t0, 300.0, rtol=1e-10)


def test_exact_start_temperature_with_pinned_atoms_and_a_cluster():
    pinned = _cu()
    pinned.set_constraint(FixAtoms(indices=[0, 1]))  # 3N − 6 degrees of freedom, no CoM ones
    cluster = _cu()
    cluster.pbc = False
    cluster.center(vacuum=5.0)
    for atoms in (pinned, cluster):
        assert _md(atoms, ensemble="nve", temperature_k=500.0).temperature_k[0] == pytest.approx(
            500.0, rel=1e-10
        )
    assert _md(_cu(), ensemble="nve", initial_temperature_k=0.0).ekin_ev[0] == 0.0


def test_seeds_stay_reproducible_and_kept_velocities_are_not_rescaled():
    a = _md(_cu(), ensemble="nve", seed=7).atoms.get_momenta()
    b = _md(_cu(), ensemble="nve", seed=7).atoms.get_momenta()
    c = _md(_cu(), ensemble="nve", seed=8).atoms.get_momenta()
    assert np.array_equal(a, b) and not np.allclose(a, c)
    moving = _cu()
    moving.set_momenta(np.random.default_rng(1).normal(0.0, 0.05, (len(moving), 3)))
    kept = _md(moving, ensemble="nve", temperature_k=300.0, keep_velocities=True)
    assert kept.ekin_ev[0] == pytest.approx(moving.get_kinetic_energy(), rel=1e-12)


def test_off_grid_end_log_has_it_trajectory_stays_evenly_spaced(tmp_path):
    traj = tmp_path / "md.traj"
    res = _md(_cu(1), ensemble="nve", steps=25, traj=traj, traj_interval=10, log_interval=10)
    assert res.time_ps[-1] == pytest.approx(0.025)  # the log holds the last step
    times = [f.info["time_ps"] for f in read(traj, ":")]
    assert times == pytest.approx([0.0, 0.01, 0.02])


@pytest.mark.parametrize(("steps", "note"), [(25, True), (20, False)])
def test_md_cli_says_where_an_off_grid_trajectory_ends(tmp_path, capsys, steps, note):
    start = tmp_path / "cu.xyz"
    write(start, _cu(1))
    traj = tmp_path / "md.traj"
    args = ["md", "emt", str(start), "--steps", str(steps), "--traj", str(traj)]
    assert main([*args, "--traj-interval", "10", "--no-progress"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("trajectory:"))
    if note:
        assert "the last is step 20 of 25" in line and "the log has the end" in line
    else:
        assert line == f"trajectory: {traj}"


def test_md_cli_final_structure_continues_the_run_exactly(tmp_path, capsys):
    """--final holds step 25 (off the trajectory grid) with its momenta, and no calculator
    results; a run from it with --keep-velocities starts where the first ended."""
    start, final = tmp_path / "cu.xyz", tmp_path / "final.traj"  # .traj: every digit
    write(start, _cu(1))
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    args = ["md", "emt", str(start), "-e", "nvt", "--steps", "25", "--traj-interval", "10"]
    assert main([*args, "--log", str(first), "--final", str(final), "--no-progress"]) == 0
    assert "final structure:" in capsys.readouterr().out
    atoms = read(final)
    assert "momenta" in atoms.arrays and atoms.calc is None
    end = np.loadtxt(first)[-1]
    assert end[0] == pytest.approx(0.025)
    again = ["md", "emt", str(final), "--steps", "5", "--log", str(second), "--no-progress"]
    assert main([*again, "--keep-velocities"]) == 0
    begin = np.loadtxt(second)[0]
    np.testing.assert_allclose(begin[1:5], end[1:5], rtol=1e-9)  # T, Epot, Ekin, Etot
    assert main(again + ["--force"]) == 0  # without --keep-velocities: drawn at 300 K
    assert np.loadtxt(second)[0][1] == pytest.approx(300.0)


def test_md_cli_final_is_checked_before_the_run(tmp_path, capsys):
    start = tmp_path / "cu.xyz"
    write(start, _cu(1))
    args = ["md", "emt", str(start), "--steps", "5", "--no-progress", "--final"]
    assert main([*args, str(tmp_path / "f.cif")]) == 1
    assert "cannot write the --final structure to f.cif" in capsys.readouterr().err
    (tmp_path / "f.xyz").write_text("keep me")
    assert main([*args, str(tmp_path / "f.xyz")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "f.xyz").read_text() == "keep me"


def test_md_cli_keep_velocities_without_momenta_says_so(tmp_path, capsys):
    start = tmp_path / "cu.xyz"
    write(start, _cu(1))  # positions only
    args = ["md", "emt", str(start), "--steps", "2", "--keep-velocities", "--no-progress"]
    assert main(args) == 0
    assert "holds no momenta; drawing them at 300 K" in capsys.readouterr().err
