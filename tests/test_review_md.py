"""Review of MD, analysis and validation: bad input refused before any work, nothing written,
and settings that would be silently ignored are refused."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.cluster import Octahedron
from ase.io import read, write

from matloop.cli import main
from matloop.data import Dataset, label_with
from matloop.errors import ConfigError, UnknownElementError
from matloop.md import run_md
from matloop.validation import build_report

FAST = {
    "nve_ps": 0.02,
    "nve_equilibration_ps": 0.0,
    "nve_timestep_fs": 2.0,
    "rdf_ps": 0.0,
    "n_physics_structures": 1,
    "fd_atoms": 1,
    "eos_points": 5,
    "progress": False,
}


@pytest.fixture()
def cu_file(tmp_path):
    path = tmp_path / "cu.xyz"
    write(path, bulk("Cu", "fcc", a=3.61, cubic=True))
    return path


@pytest.mark.parametrize("name", ["md.vasp", "md.json", "md.cif", "md.db", "md.dcd"])
def test_md_refuses_trajectory_formats_it_cannot_append(cu_file, tmp_path, capsys, name):
    """.vasp/.json were written frame by frame into files that do not read back (the run said
    'trajectory: md.vasp'); .cif/.db/.dcd crashed with an internal error."""
    traj = tmp_path / name
    rc = main(["md", "emt", str(cu_file), "--steps", "4", "--traj", str(traj), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "error: cannot write an MD trajectory to" in err and "internal error" not in err
    assert not traj.exists()


def test_md_pdb_and_extxyz_trajectories_read_back(cu_file, tmp_path):
    for name in ("md.pdb", "md.extxyz"):
        traj = tmp_path / name
        rc = main(
            ["md", "emt", str(cu_file), "--steps", "4", "--traj-interval", "2", "--traj", str(traj)]
            + ["--no-progress"]
        )
        assert rc == 0
        assert len(read(traj, ":")) == 3


def test_negative_seed_is_one_clear_line(cu_file, tmp_path, capsys):
    log = tmp_path / "md.log"
    rc = main(["md", "emt", str(cu_file), "--steps", "4", "--seed", "-1", "--log", str(log)])
    err = capsys.readouterr().err
    assert rc != 0 and "--seed" in err and "internal error" not in err
    assert not log.exists()
    with pytest.raises(ConfigError, match="seed must be an integer ≥ 0"):
        run_md(bulk("Cu", cubic=True), EMT(), steps=2, progress=False, seed=-3)


@pytest.mark.parametrize(
    ("ensemble", "kwargs"),
    [
        ("nve", {}),
        ("nvt", {"thermostat": "nose-hoover"}),
        ("npt", {"barostat": "mtk"}),
    ],
)
def test_temperature_ramp_is_refused_where_the_target_cannot_move(ensemble, kwargs):
    """temperature_end_k was silently ignored by NVE, Nosé–Hoover and MTK (T stayed put)."""
    with pytest.raises(ConfigError, match="temperature ramp"):
        run_md(
            bulk("Cu", cubic=True),
            EMT(),
            ensemble,
            steps=2,
            progress=False,
            temperature_end_k=600.0,
            **kwargs,
        )


def test_temperature_ramp_with_langevin_still_runs():
    res = run_md(
        bulk("Cu", cubic=True).repeat(2),
        EMT(),
        "nvt",
        temperature_k=100,
        steps=4,
        progress=False,
        temperature_end_k=200.0,
    )
    assert res.steps == 4


@pytest.mark.parametrize("command", ["rdf", "msd"])
def test_analyze_refuses_negative_skip(tmp_path, capsys, command):
    """--skip -3 silently analysed the last 3 frames only."""
    frames = []
    for k in range(6):
        a = bulk("Cu", cubic=True).repeat(2)
        a.info["time_ps"] = 0.01 * k
        frames.append(a)
    traj = tmp_path / "t.xyz"
    write(traj, frames)
    rc = main(["analyze", command, str(traj), "--skip", "-3"])
    assert rc != 0 and "--skip" in capsys.readouterr().err


def _cu_set(n: int) -> Dataset:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(label_with(a, EMT(), config_type="bulk"))
    return Dataset(frames, source="cu")


def test_validate_checks_reference_elements_before_any_work(tmp_path, monkeypatch):
    """A reference that cannot describe the test elements was found only after predictions,
    the physics checks and the NVE run (minutes)."""
    import matloop.evaluation as evaluation

    def no_work(*args, **kwargs):
        raise AssertionError("predicted before checking the reference")

    monkeypatch.setattr(evaluation, "predict", no_work)
    with pytest.raises(UnknownElementError, match="not described by calculator 'sw'"):
        build_report(EMT(), _cu_set(2), reference="sw", out_dir=tmp_path / "r", settings=FAST)
    assert not (tmp_path / "r").exists()


def test_validate_missing_nve_structure_before_any_work(tmp_path, monkeypatch):
    import matloop.evaluation as evaluation

    monkeypatch.setattr(evaluation, "predict", lambda *a, **k: pytest.fail("work done first"))
    settings = {**FAST, "nve_structure": str(tmp_path / "nothere.xyz")}
    with pytest.raises(Exception, match="not found"):
        build_report(EMT(), _cu_set(2), out_dir=tmp_path / "r", settings=settings)
    assert not (tmp_path / "r").exists()


def test_validate_a_cluster_model(tmp_path):
    """A test set without periodic cells was refused ('no periodic test structure for MD')
    although NVE of a cluster is fine; EOS/RDF against the reference are skipped instead."""
    frames = []
    for k in range(2):
        a = Octahedron("Cu", 3)
        a.rattle(0.05, seed=k)
        frames.append(label_with(a, EMT()))
    t0 = time.perf_counter()
    report = build_report(
        EMT(), Dataset(frames, source="clusters"), reference="emt", out_dir=tmp_path, settings=FAST
    )
    assert time.perf_counter() - t0 < 120
    names = {c["name"]: c for c in report["checks"]}
    assert names["NVE energy drift"]["passed"] is True
    assert "not periodic" in names["EOS and RDF vs reference"]["summary"]
    assert (tmp_path / "report.html").exists()


def test_nvt_outputs_carry_only_the_users_constraints(tmp_path):
    """Langevin's internal FixCom leaked into the trajectory and result.atoms, so an NPT (MTK)
    restart from the trajectory failed with 'does not support constraints'."""
    from ase.constraints import FixAtoms, FixCom

    atoms = bulk("Cu", cubic=True).repeat(2)
    traj = tmp_path / "nvt.traj"
    res = run_md(atoms, EMT(), "nvt", steps=4, traj=traj, progress=False, traj_interval=2)
    assert all(not f.constraints for f in read(traj, ":"))
    assert not res.atoms.constraints
    run_md(read(traj), EMT(), "npt", steps=2, progress=False)  # the restart works

    atoms.set_constraint(FixAtoms(indices=[0]))
    res = run_md(atoms, EMT(), "nvt", steps=2, traj=tmp_path / "fix.xyz", progress=False)
    assert [type(c) for c in res.atoms.constraints] == [FixAtoms]
    assert not any(isinstance(c, FixCom) for c in read(tmp_path / "fix.xyz").constraints)


class _CtrlCAfter(EMT):
    """EMT that raises KeyboardInterrupt (as Ctrl-C does) at its n-th evaluation."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def calculate(self, *args, **kwargs):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        super().calculate(*args, **kwargs)


def test_ctrl_c_keeps_the_log_and_trajectory_so_far(tmp_path, monkeypatch):
    """Ctrl-C threw away a whole run's log and trajectory (the atomic writes were discarded)."""
    from matloop.md.runner import MDInterrupted

    traj, log = tmp_path / "md.traj", tmp_path / "md.log"
    kwargs = {"steps": 1000, "progress": False, "log_interval": 10, "traj_interval": 10}
    with pytest.raises(MDInterrupted, match="after step 50 of 1000") as info:
        run_md(bulk("Cu", cubic=True), _CtrlCAfter(55), traj=traj, log=log, **kwargs)
    assert isinstance(info.value, KeyboardInterrupt)
    assert len(read(traj, ":")) == 6 and np.loadtxt(log).shape[0] == 6

    import matloop.calculators as calculators

    monkeypatch.setattr(calculators, "resolve_calculator", lambda spec: _CtrlCAfter(25))
    cu = tmp_path / "cu.xyz"
    write(cu, bulk("Cu", cubic=True))
    cli_log = tmp_path / "cli.log"
    args = ["md", "emt", str(cu), "--steps", "100", "--log-interval", "5", "--log", str(cli_log)]
    assert main([*args, "--no-progress"]) == 130
    assert np.loadtxt(cli_log).shape[0] == 5


def test_eos_unknown_form_is_refused_before_any_energy():
    """An unknown form was evaluated on all volumes, then reported as 'EOS fit failed: 'foo''."""
    from matloop.analysis import equation_of_state

    class _NoEnergy(EMT):
        def calculate(self, *args, **kwargs):
            raise AssertionError("energy computed before the form was checked")

    with pytest.raises(ConfigError, match="unknown EOS form 'foo'"):
        equation_of_state(bulk("Cu", cubic=True), _NoEnergy(), form="foo")


def test_msd_warns_when_frames_are_too_far_apart_to_unwrap():
    """Steps comparable to the cell folded back by the minimum image gave a too-small MSD (and
    D) without a word; well-sampled frames stay silent."""
    import warnings

    from ase import Atoms

    from matloop.analysis import mean_squared_displacement

    rng = np.random.default_rng(0)

    def frames(step: float) -> list:
        walk = np.cumsum(rng.normal(0, step, (20, 10, 3)), axis=0)
        out = [Atoms("Cu10", positions=p, cell=[5.0] * 3, pbc=True) for p in walk]
        for a in out:
            a.wrap()
        return out

    with pytest.warns(UserWarning, match="write frames more often"):
        mean_squared_displacement(frames(1.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean_squared_displacement(frames(0.05))


def test_langevin_leaves_fixed_atoms_where_they_are():
    """FixCom was added next to the user's FixAtoms, and shifted the fixed bottom layers of a
    slab with the centre of mass (5e-3 Å in 200 steps, growing)."""
    from ase.build import fcc111
    from ase.constraints import FixAtoms

    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    fixed = [a.index for a in slab if a.tag == 3]
    slab.set_constraint(FixAtoms(indices=fixed))
    res = run_md(slab, EMT(), "nvt", temperature_k=600, steps=60, timestep_fs=2, progress=False)
    assert np.abs(res.atoms.positions[fixed] - slab.positions[fixed]).max() == 0.0
    assert np.abs(res.atoms.positions - slab.positions).max() > 0.01


def test_negative_initial_temperature_is_refused():
    """initial_temperature_k=-300 silently started from rest (zero velocities)."""
    with pytest.raises(ConfigError, match="initial temperature"):
        run_md(bulk("Cu", cubic=True), EMT(), steps=2, progress=False, initial_temperature_k=-300)
