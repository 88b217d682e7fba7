"""`matloop surrogate fit|predict` end to end, with bad input and corrupted model files."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matloop.cli import main
from matloop.eos import fit_eos, read_eos_csv

DATA = Path(__file__).parent / "data" / "eos" / "si_qe_pbe.csv"


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def grid_csv(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("Volume\n" + "".join(f"{v}\n" for v in (25.0, 38.5, 40.0, 55.0)))
    return path


@pytest.mark.parametrize("model", ["poly", "gp", "ensemble"])
def test_fit_predict_roundtrip(tmp_path, capsys, grid_csv, model):
    out = tmp_path / f"{model}.joblib"
    rc = main(
        [
            "surrogate",
            "fit",
            str(DATA),
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--model",
            model,
            "--degree",
            "3",
            "--test-size",
            "0.2",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "train: R²" in captured.out and "test (3 rows)" in captured.out
    pred = tmp_path / "pred.csv"
    assert main(["surrogate", "predict", str(out), str(grid_csv), "--out", str(pred)]) == 0
    captured = capsys.readouterr()
    assert "2 of 4 rows are outside the training domain" in captured.err
    rows = _read(pred)
    assert list(rows[0]) == ["Volume", "Energy_mean", "Energy_std", "extrapolation"]
    flags = [r["extrapolation"] for r in rows]
    assert flags == ["True", "False", "False", "True"]
    std = np.array([float(r["Energy_std"]) for r in rows])
    assert std[0] > 10 * std[1] and std[3] > 10 * std[2]
    # 38.5 Å³ is inside the PBE data (36.8–43.3 Å³): every model agrees with the BM3 fit
    ref = fit_eos(*read_eos_csv(DATA), "bm3").energy(38.5)
    assert float(rows[1]["Energy_mean"]) == pytest.approx(ref, abs=1e-3)


def test_fit_with_band_plot(tmp_path, capsys):
    png = tmp_path / "band.png"
    rc = main(
        [
            "surrogate",
            "fit",
            str(DATA),
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--model",
            "poly",
            "--degree",
            "3",
            "--out",
            str(tmp_path / "m.joblib"),
            "--plot",
            str(png),
            "--plot-range",
            "25,55",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert png.read_bytes()[:4] == b"\x89PNG"
    rc = main(
        [
            "surrogate",
            "fit",
            str(DATA),
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--model",
            "poly",
            "--out",
            str(tmp_path / "m.joblib"),
            "--plot",
            str(png),
            "--plot-range",
            "25",
        ]
    )
    assert rc == 1 and "--plot-range must be MIN,MAX" in capsys.readouterr().err


def test_std_threshold_flags_inside_points(tmp_path, capsys, grid_csv):
    out = tmp_path / "poly.joblib"
    rc = main(
        [
            "surrogate",
            "fit",
            str(DATA),
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--model",
            "poly",
            "--degree",
            "2",
            "--std-threshold",
            "1e-9",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    pred = tmp_path / "pred.csv"
    assert main(["surrogate", "predict", str(out), str(grid_csv), "--out", str(pred)]) == 0
    assert all(r["extrapolation"] == "True" for r in _read(pred))


def test_bad_inputs(tmp_path, capsys, grid_csv):
    model = tmp_path / "m.joblib"
    args = ["surrogate", "fit", str(DATA), "--y", "Energy", "--out", str(model)]
    assert main([*args, "--x", "Pressure"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing column(s) 'Pressure'" in err
    assert main([*args, "--x", "Volume", "--model", "forest"]) == 1
    assert "unknown surrogate model 'forest'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("Volume,Energy\n40,-1\n41,x\n42,-1.2\n")
    assert (
        main(["surrogate", "fit", str(bad), "--x", "Volume", "--y", "Energy", "--out", str(model)])
        == 1
    )
    assert "line 3, column 'Energy': 'x' is not a number" in capsys.readouterr().err
    assert not model.exists()
    # corrupted and foreign model files
    model.write_bytes(b"\x80\x04garbage")
    assert (
        main(["surrogate", "predict", str(model), str(grid_csv), "--out", str(tmp_path / "p.csv")])
        == 1
    )
    assert "truncated or corrupted" in capsys.readouterr().err
    # prediction CSV lacking the model's input column
    good = tmp_path / "good.joblib"
    assert (
        main(
            [
                "surrogate",
                "fit",
                str(DATA),
                "--x",
                "Volume",
                "--y",
                "Energy",
                "--model",
                "poly",
                "--out",
                str(good),
            ]
        )
        == 0
    )
    capsys.readouterr()
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("V\n40\n")
    assert (
        main(["surrogate", "predict", str(good), str(wrong), "--out", str(tmp_path / "p.csv")]) == 1
    )
    assert "missing column(s) 'Volume'" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_subprocess_smoke(tmp_path, grid_csv):
    out = tmp_path / "ens.joblib"
    assert (
        main(
            [
                "surrogate",
                "fit",
                str(DATA),
                "--x",
                "Volume",
                "--y",
                "Energy",
                "--model",
                "ensemble",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    pred = subprocess.run(
        [
            sys.executable,
            "-m",
            "matloop",
            "surrogate",
            "predict",
            str(out),
            str(grid_csv),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pred.returncode == 0, pred.stderr
    assert "warning:" in pred.stderr and len(_read(tmp_path / "p.csv")) == 4


def test_two_input_columns_with_ard(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x1, x2 = rng.uniform(0, 1, 25), rng.uniform(0, 1, 25)
    data = tmp_path / "two.csv"
    data.write_text(
        "a,b,target\n"
        + "".join(
            f"{float(p)!r},{float(q)!r},{float(np.sin(4 * p) + 0.1 * q)!r}\n"
            for p, q in zip(x1, x2, strict=True)
        )
    )
    model = tmp_path / "gp2.joblib"
    rc = main(
        [
            "surrogate",
            "fit",
            str(data),
            "--x",
            "a,b",
            "--y",
            "target",
            "--model",
            "gp",
            "--ard",
            "--kernel",
            "matern52",
            "--out",
            str(model),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    query = tmp_path / "q.csv"
    query.write_text("b,a\n0.5,0.5\n0.5,3.0\n")  # column order does not matter
    pred = tmp_path / "p.csv"
    assert main(["surrogate", "predict", str(model), str(query), "--out", str(pred)]) == 0
    rows = _read(pred)
    assert [r["extrapolation"] for r in rows] == ["False", "True"]
    assert float(rows[0]["target_mean"]) == pytest.approx(np.sin(2.0) + 0.05, abs=0.05)
    assert (
        main(
            [
                "surrogate",
                "fit",
                str(data),
                "--x",
                "a,b",
                "--y",
                "target",
                "--out",
                str(model),
                "--plot",
                str(tmp_path / "x.png"),
            ]
        )
        == 1
    )
    assert "--plot needs exactly one --x column" in capsys.readouterr().err


def test_repeated_column_names(tmp_path, capsys):
    from matloop.surrogate import read_columns

    cols = read_columns(DATA, ["Volume", "Volume", "Energy"])
    n = len(_read(DATA))
    assert len(cols["Volume"]) == n and len(cols["Energy"]) == n
    for x, y, message in (
        ("Volume,Volume", "Energy", "more than once"),
        ("Volume", "Volume", "also an input column"),
    ):
        out = tmp_path / "m.npz"
        rc = main(["surrogate", "fit", str(DATA), "--x", x, "--y", y, "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()
