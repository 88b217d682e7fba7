"""matloop models in LAMMPS: `fix external` (any family, stock PyPI wheel) and the `.yace` export.

The `fix external` tests need only the LAMMPS Python module. The `.yace` export is checked
against an independent evaluator of the format everywhere, and against LAMMPS' ``pair_style
pace`` where this LAMMPS has it (a build with the ML-PACE package; the PyPI wheel has none).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.calculators.potential import MatloopCalculator
from matloop.cli import main
from matloop.data import Dataset, label_with
from matloop.errors import ConfigError, ModelFileError, UnknownElementError
from matloop.export import export_lammps, read_yace, yace_from_model
from matloop.export import lammps as lmp_mod
from matloop.export import pace_reference as ref
from matloop.export.yace import YaceBond, YaceFunction, YaceModel, write_yace
from matloop.models.ace.family import AceParams, AcePotential
from matloop.models.io import save_model
from matloop.training import TrainConfig

ELEMENTS = ["Cu", "Ni"]
SPLINE_STEP = 1.0e-4  # Å; ML-PACE's tabulation then agrees with the analytic model to ~1e-9


def _random_cell(seed: int, n_rep: int = 2) -> Atoms:
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=3.58, cubic=True).repeat(n_rep)
    atoms.symbols[rng.random(len(atoms)) < 0.5] = "Ni"
    shear = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3))
    atoms.set_cell(atoms.cell @ shear, scale_atoms=True)
    atoms.rattle(0.12, seed=seed)
    return atoms


def _emt_dataset(n: int) -> Dataset:
    calc = EMT()
    cells = [_random_cell(100 + s, n_rep=1 + s % 2) for s in range(n)]
    return Dataset([label_with(a, calc) for a in cells], source="emt-cuni")


@pytest.fixture(scope="module")
def fitted() -> AcePotential:
    """A small Cu–Ni `ace` model fitted with the family's own (Bayesian linear) fit."""
    params = AceParams(cutoff=4.2, correlation_order=3, max_degree=6.0, max_l=2, core_strength=5.0)
    model = AcePotential(ELEMENTS, params)
    model.fit(_emt_dataset(6), None, TrainConfig(), out_dir=None, progress=False)
    model.set_reference_energies({"Cu": -0.3, "Ni": 0.2})
    assert float(model.coefficients.abs().max()) > 0
    return model


def _matloop(model: AcePotential, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
    """Total energy (eV), forces (eV/Å) and virial ∂E/∂ε (Voigt, eV) from matloop."""
    out = model.predict(model.graph(atoms), forces=True, stress=True)
    v = out["virial"][0].detach().double().numpy()
    voigt = np.array([v[0, 0], v[1, 1], v[2, 2], v[1, 2], v[0, 2], v[0, 1]])
    energy = float(out["energy"][0]) + model.reference_energy(atoms)
    return energy, out["forces"].detach().double().numpy(), voigt


def _assert_close(got, want, rtol: float) -> None:
    e, f, v = want
    assert abs(got[0] - e) <= rtol * abs(e)
    assert np.abs(got[1] - f).max() <= rtol * np.abs(f).max()
    assert np.abs(got[2] - v).max() <= rtol * np.abs(v).max()


def _tiny_yace() -> YaceModel:
    """Hand-made two-element model: rank-1 to rank-3 C-tilde functions, core repulsion."""
    rng = np.random.default_rng(0)
    bonds = {
        (i, j): YaceBond(
            rcut=4.4 + 0.2 * (i + j),
            crad=rng.normal(size=(2, 3, 3)),
            lam=5.25,
            dcut=0.3,
            rcut_in=1.6,
            dcut_in=0.3,
            prehc=2.0,
            lambdahc=1.5,
        )
        for i in range(2)
        for j in range(2)
    }
    funcs = {}
    for mu0 in range(2):
        fl = [
            YaceFunction(mu0, (mu,), (k,), (0,), ((0,),), (float(rng.normal()),))
            for mu in range(2)
            for k in (1, 2, 3)
        ]
        for l in (0, 1, 2):  # noqa: E741
            ms = tuple((m, -m) for m in range(-l, l + 1))
            fl.append(
                YaceFunction(mu0, (0, 1), (1, 2), (l, l), ms, tuple(0.3 * (-1) ** m for m, _ in ms))
            )
        ms3 = tuple((m, -m, 0) for m in (-1, 0, 1))
        fl.append(YaceFunction(mu0, (0, 0, 1), (1, 1, 2), (1, 1, 0), ms3, (0.1, -0.1, 0.1)))
        funcs[mu0] = fl
    return YaceModel(ELEMENTS, [-0.5, -1.5], bonds, funcs, spline_step=SPLINE_STEP)


def _pace_available() -> bool:
    return lmp_mod.has_pair_style("pace")


needs_pace = pytest.mark.skipif(
    not _pace_available(),
    reason="this LAMMPS has no pair_style pace (needs ML-PACE; the PyPI wheel lacks it)",
)
needs_lammps = pytest.mark.skipif(
    importlib.util.find_spec("lammps") is None, reason="the LAMMPS Python module is not installed"
)


# --------------------------------------------------------------------------- the format
def test_yace_round_trip_is_exact(tmp_path):
    model = _tiny_yace()
    path = write_yace(model, tmp_path / "tiny.yace")
    back = read_yace(path)
    atoms = _random_cell(1)
    a, b = ref.evaluate(model, atoms), ref.evaluate(back, atoms)
    assert a.energy == b.energy
    assert np.array_equal(a.forces, b.forces)


def test_reference_evaluator_forces_and_virial_are_derivatives():
    model, atoms = _tiny_yace(), _random_cell(2)
    res = ref.evaluate(model, atoms)
    h = 1e-5
    for k, axis in ((3, 1), (10, 2)):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[k, axis] += h
        minus.positions[k, axis] -= h
        fd = -(ref.evaluate(model, plus).energy - ref.evaluate(model, minus).energy) / (2 * h)
        assert fd == pytest.approx(res.forces[k, axis], rel=1e-6, abs=1e-7)
    eps = np.zeros((3, 3))
    eps[0, 1] = eps[1, 0] = h / 2
    plus, minus = atoms.copy(), atoms.copy()
    plus.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
    minus.set_cell(atoms.cell @ (np.eye(3) - eps), scale_atoms=True)
    fd = (ref.evaluate(model, plus).energy - ref.evaluate(model, minus).energy) / (2 * h)
    assert fd == pytest.approx(res.virial[5], rel=1e-6)


def test_reference_evaluator_is_rotation_invariant():
    model, atoms = _tiny_yace(), _random_cell(3)
    rot = np.linalg.qr(np.random.default_rng(4).normal(size=(3, 3)))[0]
    turned = atoms.copy()
    turned.set_cell(atoms.cell @ rot.T)
    turned.positions = atoms.positions @ rot.T
    a, b = ref.evaluate(model, atoms), ref.evaluate(model, turned)
    assert b.energy == pytest.approx(a.energy, rel=1e-12)
    np.testing.assert_allclose(b.forces, a.forces @ rot.T, atol=1e-10)


# --------------------------------------------------------------------------- matloop → yace
def test_exported_yace_reproduces_matloop_exactly(fitted, tmp_path):
    paths = export_lammps(fitted, tmp_path / "lmp", spline_step=SPLINE_STEP)
    yace = read_yace(paths[0])
    assert yace.elements == ELEMENTS
    for seed in (5, 6):
        atoms = _random_cell(seed)
        got = ref.evaluate(yace, atoms)
        _assert_close((got.energy, got.forces, got.virial), _matloop(fitted, atoms), 1e-9)


def test_export_writes_input_and_refuses_to_overwrite(fitted, tmp_path):
    out = tmp_path / "lmp"
    export_lammps(fitted, out)
    text = (out / "in.matloop").read_text()
    assert "units           metal" in text
    assert "pair_style      pace" in text
    assert "pair_coeff      * * model.yace Cu Ni" in text
    before = (out / "model.yace").read_text()
    fitted.coefficients.mul_(2.0)
    try:
        with pytest.raises(ConfigError, match="--force"):
            export_lammps(fitted, out)
        assert (out / "model.yace").read_text() == before
        export_lammps(fitted, out, force=True)
        assert (out / "model.yace").read_text() != before
    finally:
        fitted.coefficients.mul_(0.5)


def test_cli_export_and_non_ace_model(fitted, tmp_path, capsys):
    path = tmp_path / "model.pt"
    save_model(fitted, path)
    assert main(["export", str(path), "--format", "lammps", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "model.yace").is_file()
    assert main(["export", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "--force" in capsys.readouterr().err

    from matloop.models import get_family

    other = get_family("bpnn")(["Cu"], get_family("bpnn").Params())
    with pytest.raises(ConfigError, match="needs an 'ace' model"):
        yace_from_model(other)
    with pytest.raises(ModelFileError, match="fit the model first"):
        export_lammps(AcePotential(ELEMENTS), tmp_path / "unfitted")
    assert not (tmp_path / "unfitted" / "model.yace").exists()


def test_cli_export_refuses_a_delta_model(fitted, tmp_path, capsys):
    """A delta model's .yace would hold only the correction (pair_style pace drops the base)."""
    path = tmp_path / "model.pt"
    save_model(fitted, path, {"delta_base": "emt"})
    assert main(["export", str(path), "--format", "lammps", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "delta model" in err and "matloop lammps run" in err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------- LAMMPS: fix external
def _calc(family: str, fitted: AcePotential) -> MatloopCalculator:
    if family == "ace":
        return MatloopCalculator(fitted)
    from matloop.models import get_family

    cls = get_family(family)
    torch.manual_seed(0)
    return MatloopCalculator(cls(ELEMENTS, cls.Params()).double())


def _ase(calc, atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
    """Energy (eV), forces (eV/Å) and virial V·σ = ∂E/∂ε (Voigt, eV) from the ASE calculator."""
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress() * atoms.get_volume()


@needs_lammps
@pytest.mark.parametrize("family", ["ace", "bpnn"])
def test_fix_external_run0_matches_ase_calculator(fitted, family):
    """LAMMPS pe, forces and pressure tensor through the callback equal the ASE calculator's."""
    calc = _calc(family, fitted)
    atoms = _random_cell(11)  # triclinic: LAMMPS sees it rotated to its lower-triangular frame
    got = lmp_mod.evaluate(atoms, None, ELEMENTS, calculator=calc)
    _assert_close((got.energy, got.forces, got.virial), _ase(calc, atoms), 1e-6)


def _lammps_positions(lmp, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LAMMPS' positions back in the ASE frame, in atom-ID order, and the local ID order."""
    n = lmp.get_natoms()
    ids = np.array(lmp.numpy.extract_atom("id")[:n])
    x = np.array(lmp.numpy.extract_atom("x")[:n], dtype=float)
    return x[np.argsort(ids)] @ rot, ids


@needs_lammps
def test_fix_external_nve_conserves_energy_and_tracks_atom_order(fitted):
    calc = MatloopCalculator(fitted)
    atoms = _random_cell(12)
    lmp = lmp_mod.open_lammps()
    try:
        lmp_mod.setup_cell(lmp, atoms, ELEMENTS)
        fix = lmp_mod.attach(lmp, calc)
        lmp.commands_list(
            [
                "atom_modify sort 10 2.0",  # LAMMPS reorders its atoms during the run
                "velocity all create 1200.0 8812 mom yes rot yes",
                "timestep 0.001",
                "fix nve all nve",
                "thermo_style custom step pe ke etotal",
                "run 0",
            ]
        )
        etot = [lmp.get_thermo("etotal")]
        ke0 = lmp.get_thermo("ke")
        for _ in range(10):
            lmp.command("run 20")
            etot.append(lmp.get_thermo("etotal"))
        fix.check()
        assert fix.calls >= 200
        drift = np.abs(np.array(etot) - etot[0]).max()
        print(f"NVE: max |etotal - etotal0| = {drift:.3g} eV, initial ke {ke0:.3g} eV")
        # 1 fs steps at 1200 K: measured 0.16 meV/atom; a force that is not −∂E/∂x gives eV
        assert drift / len(atoms) < 1e-3, (drift, ke0)
        positions, ids = _lammps_positions(lmp, lmp._matloop_rotation)  # noqa: SLF001
        assert not np.array_equal(ids, np.arange(1, len(atoms) + 1))
        lmp.commands_list(
            ["velocity all set 0.0 0.0 0.0", "thermo_style custom step pe press", "run 0"]
        )
        got = lmp_mod.read_result(lmp, len(atoms))
    finally:
        lmp.close()
    moved = atoms.copy()
    moved.positions = positions
    assert np.abs(positions - atoms.positions).max() > 0.05
    _assert_close((got.energy, got.forces, got.virial), _ase(calc, moved), 1e-6)


@needs_lammps
def test_fix_external_refuses_what_it_cannot_run(fitted):
    lmp = lmp_mod.open_lammps()
    try:
        with pytest.raises(ConfigError, match="box"):
            lmp_mod.attach(lmp, MatloopCalculator(fitted))
        lmp_mod.setup_cell(lmp, _random_cell(13), ["Cu", "Ni", "Fe"][:2])
        with pytest.raises(ConfigError, match="2 atom type"):
            lmp_mod.attach(lmp, MatloopCalculator(fitted), elements="Cu")
        with pytest.raises(UnknownElementError, match="Fe"):
            lmp_mod.attach(lmp, MatloopCalculator(fitted), elements=["Cu", "Fe"])
    finally:
        lmp.close()
    lmp = lmp_mod.open_lammps()
    try:
        lmp.commands_list(["units real", "region b block 0 5 0 5 0 5", "create_box 2 b"])
        with pytest.raises(ConfigError, match="units metal"):
            lmp_mod.attach(lmp, MatloopCalculator(fitted))
    finally:
        lmp.close()


LAMMPS_INPUT = """# NVE with a matloop model: no pair_style, the model comes through fix external
units           metal
atom_style      atomic
read_data       ${data}
velocity        all create ${temp} 4928459 mom yes rot yes
timestep        0.001
fix             nve all nve
thermo_style    custom step pe ke etotal press
thermo          10
run             30
velocity        all set 0.0 0.0 0.0
run             0
print           "${pe_line}" file pe.txt
write_data      final.data
"""


@needs_lammps
def test_cli_lammps_run(fitted, tmp_path, monkeypatch, capsys):
    from ase.io import read, write

    save_model(fitted, tmp_path / "model.pt")
    write(
        tmp_path / "cell.data",
        _random_cell(14),
        format="lammps-data",
        specorder=ELEMENTS,
        masses=True,
    )
    (tmp_path / "in.nve").write_text(LAMMPS_INPUT.replace("${pe_line}", "$(pe:%.15g)"))
    monkeypatch.chdir(tmp_path)
    args = ["lammps", "run", "model.pt", "in.nve", "--var", "data=cell.data", "--var", "temp=300"]
    assert main([*args, "--log", "log.lammps"]) == 0
    assert "model evaluations in LAMMPS" in capsys.readouterr().out
    log = (tmp_path / "log.lammps").read_text()
    assert "fix matloop all external pf/callback 1 1" in log  # attached after read_data
    assert "Step" in log and "Loop time" in log
    # LAMMPS' energy of the structure after 30 NVE steps, against the ASE calculator's
    pe = float((tmp_path / "pe.txt").read_text().split()[0])
    final = read(tmp_path / "final.data", format="lammps-data", Z_of_type={1: 29, 2: 28})
    assert pe == pytest.approx(_ase(MatloopCalculator(fitted), final)[0], rel=1e-6)
    assert main([*args, "--log", "log.lammps"]) == 1  # never overwrites the log
    assert "not overwriting" in capsys.readouterr().err
    (tmp_path / "loop.in").write_text("label a\nrun 1\njump SELF a\n")
    assert main(["lammps", "run", "model.pt", "loop.in"]) == 1
    assert "loop.in:1" in capsys.readouterr().err
    assert main(["lammps", "run", "model.pt", "in.nve", "--var", "data=missing.data"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "in.nve:4" in err and "missing.data" in err


MASSES_AFTER_BOX = """units metal
atom_style atomic
region b block 0 7.2 0 7.2 0 7.2
create_box 2 b
create_atoms 1 random 8 123 NULL overlap 2.0
create_atoms 2 random 8 456 NULL overlap 2.0
mass 1 58.6934
mass 2 63.546
run 0
"""


@needs_lammps
def test_cli_lammps_run_refuses_types_in_another_order(fitted, tmp_path, monkeypatch, capsys):
    """A data file written with another specorder would silently run Cu as Ni and Ni as Cu."""
    from ase.io import write

    save_model(fitted, tmp_path / "model.pt")  # elements Cu, Ni
    write(tmp_path / "swapped.data", _random_cell(15), format="lammps-data",
          specorder=["Ni", "Cu"], masses=True)  # fmt: skip
    (tmp_path / "in.run0").write_text(
        "units metal\natom_style atomic\nread_data swapped.data\n"
        'run 0\nprint "$(pe:%.15g)" file pe.txt\n'
    )
    monkeypatch.chdir(tmp_path)
    args = ["lammps", "run", "model.pt", "in.run0"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "type 1 has the mass of Ni" in err and "--elements Ni,Cu" in err
    assert not (tmp_path / "pe.txt").exists()
    # naming the types' elements runs the right structure
    assert main([*args, "--elements", "Ni,Cu"]) == 0
    want = _ase(MatloopCalculator(fitted), _random_cell(15))[0]
    assert float((tmp_path / "pe.txt").read_text()) == pytest.approx(want, rel=1e-6)
    assert main([*args, "--no-mass-check"]) == 0  # deliberately other masses: allowed
    # masses set by `mass` commands after the box (and the fix) exist: caught at the first call
    (tmp_path / "in.later").write_text(MASSES_AFTER_BOX)
    assert main(["lammps", "run", "model.pt", "in.later"]) == 1
    assert "type 1 has the mass of Ni" in capsys.readouterr().err
    # masses of no element (isotopes, scaled masses) pass
    lmp = lmp_mod.open_lammps()
    try:
        lmp_mod.setup_cell(lmp, _random_cell(16), ELEMENTS)
        lmp.command("mass 1 70.0")
        lmp.command("mass 2 1.0")  # a placeholder (H's mass; H is not in the model): passes
        lmp_mod.attach(lmp, MatloopCalculator(fitted))
    finally:
        lmp.close()


@needs_lammps
def test_cli_lammps_run_with_replicate(fitted, tmp_path, monkeypatch, capsys):
    """`replicate` after read_data (LAMMPS refuses it while a fix external exists)."""
    from ase.io import write

    save_model(fitted, tmp_path / "model.pt")
    cell = _random_cell(17, n_rep=1)
    write(tmp_path / "cell.data", cell, format="lammps-data", specorder=ELEMENTS, masses=True)
    (tmp_path / "in.rep").write_text(
        "units metal\natom_style atomic\nread_data cell.data\nrun 0\nreplicate 2 1 1\n"
        'run 0\nprint "$(pe:%.15g) $(atoms)" file pe.txt\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["lammps", "run", "model.pt", "in.rep"]) == 0
    assert "matloop: 2 model evaluations" in capsys.readouterr().out
    pe, n = (tmp_path / "pe.txt").read_text().split()
    assert int(n) == 2 * len(cell)
    want = _ase(MatloopCalculator(fitted), cell.repeat((2, 1, 1)))[0]
    assert float(pe) == pytest.approx(want, rel=1e-6)


# ------------------------------------------------------------------------- LAMMPS: pair_style pace
@needs_pace
def test_lammps_reads_hand_made_yace(tmp_path):
    model = _tiny_yace()
    path = write_yace(model, tmp_path / "tiny.yace")
    atoms = _random_cell(7)
    want = ref.evaluate(model, atoms)
    got = lmp_mod.evaluate(atoms, ["pair_style pace", f"pair_coeff * * {path} Cu Ni"], ELEMENTS)
    _assert_close(
        (got.energy, got.forces, got.virial), (want.energy, want.forces, want.virial), 1e-6
    )


@needs_pace
def test_lammps_matches_matloop(fitted, tmp_path):
    paths = export_lammps(fitted, tmp_path / "lmp", spline_step=SPLINE_STEP)
    for style in ("pace", "pace product"):
        atoms = _random_cell(8)
        cmds = [f"pair_style {style}", f"pair_coeff * * {paths[0]} Cu Ni"]
        got = lmp_mod.evaluate(atoms, cmds, ELEMENTS)
        _assert_close((got.energy, got.forces, got.virial), _matloop(fitted, atoms), 1e-6)


@needs_pace
def test_written_input_runs_md_in_lammps(fitted, tmp_path, monkeypatch):
    """`in.matloop` runs as written (NVE MD) on a data file made with ASE."""
    from ase.io import write

    out = tmp_path / "lmp"
    export_lammps(fitted, out)
    write(
        out / "structure.data",
        _random_cell(9),
        format="lammps-data",
        specorder=ELEMENTS,
        masses=True,
    )
    monkeypatch.chdir(out)
    lmp = lmp_mod.open_lammps()
    try:
        lmp.command("variable data string structure.data")
        lmp.file("in.matloop")
        assert int(lmp.get_thermo("step")) == 1000
        assert np.isfinite(lmp.get_thermo("etotal"))
    finally:
        lmp.close()


@needs_lammps
def test_lammps_run_warns_of_what_the_model_does_not_cover(fitted, tmp_path, monkeypatch, capsys):
    """A slab box gets the model's virial (nothing to say); a pair_style in the input adds to
    the model: said."""
    save_model(fitted, tmp_path / "model.pt")
    slab = MASSES_AFTER_BOX.replace("atom_style atomic", "atom_style atomic\nboundary p p f")
    slab = slab.replace("mass 1 58.6934\nmass 2 63.546", "mass 1 63.546\nmass 2 58.6934")
    (tmp_path / "in.slab").write_text(slab)
    with_pair = slab.replace("boundary p p f\n", "").replace(
        "run 0", "pair_style lj/cut 2.5\npair_coeff * * 0.01 2.0\nrun 0"
    )
    (tmp_path / "in.pair").write_text(with_pair)
    monkeypatch.chdir(tmp_path)
    assert main(["lammps", "run", "model.pt", "in.slab"]) == 0
    err = capsys.readouterr().err
    assert "not periodic" not in err and "pair_style" not in err
    assert main(["lammps", "run", "model.pt", "in.pair"]) == 0
    err = capsys.readouterr().err
    assert "in.pair:9: 'pair_style lj/cut' adds its energy and forces" in err
    assert "not periodic" not in err
