"""`matloop eos fit|compute` end to end, including bad input (clear message, exit code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.eos import EquationOfState

from matloop.cli import main
from matloop.eos import compute_eos_data, read_eos_csv, write_eos_csv

DATA = Path(__file__).parent / "data" / "eos"


@pytest.fixture(scope="module")
def cu_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("eos") / "cu.csv"
    v, e = compute_eos_data(bulk("Cu", "fcc", a=3.6), "emt", strain=0.08, points=11)
    write_eos_csv(path, v, e)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _table(v, e) -> str:
    return "Volume,Energy\n" + "".join(
        f"{float(a)!r},{float(b)!r}\n" for a, b in zip(v, e, strict=True)
    )


def test_fit_json_and_plot(cu_csv, tmp_path, capsys):
    out, png = tmp_path / "fit.json", tmp_path / "fit.png"
    rc = main(["eos", "fit", str(cu_csv), "--json", str(out), "--plot", str(png)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "B0" in captured.out and "GPa" in captured.out
    assert "warning" not in captured.err
    d = json.loads(out.read_text())
    for key in ("v0_a3", "e0_ev", "b0_gpa", "b0_prime", "rmse_ev", "uncertainties", "bootstrap"):
        assert key in d
    v, e = read_eos_csv(cu_csv)
    v0, e0, b0 = EquationOfState(v, e, eos="birchmurnaghan").fit()
    assert d["v0_a3"] == pytest.approx(v0, rel=1e-6)
    assert d["b0_gpa"] == pytest.approx(b0 * 160.21766208, rel=1e-5)
    assert d["uncertainties"]["b0_gpa"] > 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("eos", ["bm4", "vinet", "murnaghan", "poly"])
def test_fit_other_forms(cu_csv, tmp_path, capsys, eos):
    out = tmp_path / f"{eos}.json"
    rc = main(["eos", "fit", str(cu_csv), "--eos", eos, "--bootstrap", "20", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["eos"] == eos


def test_shipped_qe_si_fixture(tmp_path, capsys):
    """Real PBE data (Quantum ESPRESSO, 30 Ry, 6×6×6 k; see docs/tutorial_si_eos.md)."""
    src = DATA / "si_qe_pbe.csv"
    out = tmp_path / "si.json"
    renamed = _write(
        tmp_path / "renamed.csv", src.read_text().replace("Volume,Energy", "V_A3,E_eV")
    )
    rc = main(["eos", "fit", str(renamed), "--x", "V_A3", "--y", "E_eV", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    a = (4 * d["v0_a3"]) ** (1 / 3)
    assert a == pytest.approx(5.47, abs=0.03)  # published PBE lattice constant of Si
    assert 80 < d["b0_gpa"] < 100  # PBE ≈ 88–89 GPa


def test_compute_then_fit(tmp_path, capsys):
    struct = tmp_path / "si.cif"
    bulk("Si", "diamond", a=5.431).write(struct)
    csv = tmp_path / "si.csv"
    rc = main(
        ["eos", "compute", str(struct), "--calculator", "sw", "--points", "7", "--out", str(csv)]
    )
    assert rc == 0, capsys.readouterr().err
    v, e = read_eos_csv(csv)
    assert v.size == 7 and v.min() == pytest.approx(40.048 * 0.95, rel=1e-3)
    assert main(["eos", "fit", str(csv)]) == 0
    assert "101." in capsys.readouterr().out  # SW B0 ≈ 101.4 GPa


@pytest.mark.parametrize(
    "text,args,message",
    [
        ("V,E\n1,2\n", [], "missing column(s) 'Volume', 'Energy'; the file has 'V', 'E'"),
        ("Volume,Energy\n40,-10.7\n41,abc\n", [], "line 3, column 'Energy': 'abc' is not a number"),
        ("Volume,Energy\n40,-10.7\n41,\n", [], "line 3, column 'Energy': empty value"),
        ("Volume,Energy\n39,-10.70\n40,-10.79\n41,-10.75\n", [], "3 distinct point(s)"),
        ("Volume,Energy\n", [], "no data rows"),
        ("", [], "empty file"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, capsys, text, args, message):
    path = _write(tmp_path / "bad.csv", text)
    rc = main(["eos", "fit", str(path), *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_duplicate_volumes(tmp_path, capsys, cu_csv):
    v, e = read_eos_csv(cu_csv)
    conflicting = _write(
        tmp_path / "dup.csv",
        _table(np.r_[v, v[4]], np.r_[e, e[4] + 0.02]),
    )
    assert main(["eos", "fit", str(conflicting)]) == 1
    assert "appears more than once with different energies" in capsys.readouterr().err
    same = _write(
        tmp_path / "same.csv",
        _table(np.r_[v, v[4]], np.r_[e, e[4]]),
    )
    assert main(["eos", "fit", str(same)]) == 0
    assert "warning: " in capsys.readouterr().err


def test_no_minimum_in_range_is_a_warning_and_concave_an_error(tmp_path, capsys, cu_csv):
    v, e = read_eos_csv(cu_csv)
    left = _write(
        tmp_path / "left.csv",
        _table(v[:5], e[:5]),
    )
    rc = main(["eos", "fit", str(left), "--bootstrap", "0"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: the fitted minimum V0" in err and "outside the data" in err
    concave = _write(
        tmp_path / "concave.csv",
        _table(v, -e),
    )
    assert main(["eos", "fit", str(concave)]) == 1
    assert "no minimum" in capsys.readouterr().err


def test_cli_option_errors(tmp_path, capsys, cu_csv):
    assert main(["eos", "fit", str(cu_csv), "--eos", "sj"]) == 1
    assert "unknown equation of state 'sj'" in capsys.readouterr().err
    assert main(["eos", "fit", str(tmp_path / "nope.csv")]) == 1
    assert "file not found" in capsys.readouterr().err
    struct = tmp_path / "cu.xyz"
    bulk("Cu", "fcc", a=3.6).write(struct)
    rc = main(["eos", "compute", str(struct), "-c", "nope:fn", "--out", str(tmp_path / "x.csv")])
    assert rc == 1 and "cannot import module 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_subprocess_smoke(cu_csv, tmp_path):
    out = tmp_path / "fit.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "matloop",
            "eos",
            "fit",
            str(cu_csv),
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--eos",
            "vinet",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert np.isfinite(json.loads(out.read_text())["b0_gpa"])


def test_compute_with_import_path(tmp_path, capsys):
    struct = tmp_path / "cu.xyz"
    bulk("Cu", "fcc", a=3.6).write(struct)
    csv = tmp_path / "cu.csv"
    rc = main(
        [
            "eos",
            "compute",
            str(struct),
            "-c",
            "ase.calculators.emt:EMT",
            "--strain",
            "0.1",
            "--points",
            "5",
            "--out",
            str(csv),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    v, e = read_eos_csv(csv)
    ref_v, ref_e = compute_eos_data(bulk("Cu", "fcc", a=3.6), "emt", strain=0.1, points=5)
    np.testing.assert_allclose(e, ref_e, atol=1e-12)


def test_espresso_factory_errors_and_run(tmp_path):
    import shutil

    from matloop.eos.dft import espresso_pbe
    from matloop.errors import ConfigError

    with pytest.raises(ConfigError, match="not found"):
        espresso_pbe(command="no-such-pw.x")
    if shutil.which("pw.x") is None or not Path("/usr/share/espresso/pseudo").is_dir():
        pytest.skip("Quantum ESPRESSO (pw.x + quantum-espresso-data) not installed")
    calc = espresso_pbe(ecutwfc=12, kpts=(2, 2, 2), directory=str(tmp_path / "qe"))
    v, e = compute_eos_data(bulk("Si", "diamond", a=5.47), calc, strain=0.05, points=3)
    assert np.all(np.isfinite(e)) and np.ptp(e) < 0.5


def test_calculator_that_cannot_handle_the_structure_is_one_line(tmp_path, capsys):
    from ase.io import write

    si, out = tmp_path / "si.xyz", tmp_path / "ev.csv"
    write(si, bulk("Si", "diamond", a=5.43))
    rc = main(["eos", "compute", str(si), "-c", "emt", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "element(s) Si" in err and "calculator 'emt'" in err
    assert "internal" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_same_column_for_volume_and_energy_is_an_error(tmp_path, capsys, cu_csv):
    # read_columns used to read a twice-named column twice (22 "volumes" from 11 rows)
    rc = main(["eos", "fit", str(cu_csv), "--x", "Volume", "--y", "Volume"])
    err = capsys.readouterr().err
    assert rc == 1 and "must differ" in err and len(err.strip().splitlines()) == 1
