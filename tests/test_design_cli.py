"""`matloop design suggest | fit | predict | evaluate` end to end, including bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matloop.cli import main

DATA = Path(__file__).parent / "data" / "design"
SPACE = str(DATA / "space.yaml")
OBS = str(DATA / "observed.csv")


def run(args, capsys):
    rc = main(["design", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_suggest_batch_writes_feasible_rows(tmp_path, capsys):
    out = tmp_path / "next.csv"
    rc, o, e = run(
        [
            "suggest",
            "--data",
            OBS,
            "--space",
            SPACE,
            "--objective",
            "nd:max",
            "--batch",
            "2",
            "--seed",
            "1",
            "--restarts",
            "3",
            "--raw-samples",
            "64",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, e
    df = pd.read_csv(out)
    comps = ["SiO2", "Na2O", "CaO", "Al2O3", "PbO"]
    assert list(df.columns[:5]) == comps
    assert {"pred_nd_mean", "pred_nd_std", "acquisition"} <= set(df.columns)
    assert len(df) == 2
    np.testing.assert_allclose(df[comps].sum(axis=1), 100.0, atol=1e-9)
    assert (df["PbO"] == 0).all() and (df["Na2O"] + df["CaO"] <= 30 + 1e-6).all()
    assert (df["SiO2"] >= 50 - 1e-9).all() and (df["Al2O3"] <= 5 + 1e-9).all()
    assert "2 suggestion(s)" in o


def test_two_rows_space_filling_says_so(tmp_path, capsys):
    two = tmp_path / "two.csv"
    pd.read_csv(OBS).head(2).to_csv(two, index=False)
    out = tmp_path / "next.csv"
    rc, o, e = run(
        [
            "suggest",
            "--data",
            str(two),
            "--space",
            SPACE,
            "--objective",
            "nd:max",
            "--batch",
            "3",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0
    assert "warning: only nd: 2 observation(s)" in e and "space-filling" in e
    assert len(pd.read_csv(out)) == 3


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_objective", "no column for the objectives ['abbe']"),
        ("sums_off", "row 2 sums to 90"),
        ("unknown_component", "component column(s) ['K2O'] are not in the space"),
        ("unknown_in_space", "component 'Xx2O': 'Xx' is not a chemical element"),
        ("infeasible", "constraints leave no feasible composition"),
        ("bad_objective", "unknown direction 'up'"),
        ("missing_file", "file not found"),
        ("not_a_table", "is not a comma-separated table"),
        ("model_without_pool", "--model rf: only --candidates"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, case, expected):
    data, space, objective = OBS, SPACE, "nd:max"
    frame = pd.read_csv(OBS)
    if case == "missing_objective":
        objective = "abbe:max"
    elif case == "sums_off":
        frame.loc[1, "SiO2"] -= 10
        data = tmp_path / "d.csv"
        frame.to_csv(data, index=False)
    elif case == "unknown_component":
        frame["K2O"] = [0, 1, 0, 0, 0, 0]
        frame.loc[1, "SiO2"] -= 1
        data = tmp_path / "d.csv"
        frame.to_csv(data, index=False)
    elif case == "unknown_in_space":
        space = tmp_path / "s.yaml"
        space.write_text("components: {SiO2: [50, 100], Xx2O: [0, 10]}\n")
    elif case == "infeasible":
        space = tmp_path / "s.yaml"
        space.write_text(
            "total: 100\ncomponents: {SiO2: [50, 60], Na2O: [0, 20], PbO: [0, 30]}"
            "\nforbidden: [PbO]\n"
        )
    elif case == "bad_objective":
        objective = "nd:up"
    elif case == "missing_file":
        data = tmp_path / "nope.csv"
    elif case == "not_a_table":  # an extxyz file given by mistake
        data = tmp_path / "cu.xyz"
        data.write_text('1\nLattice="3.6 0 0 0 3.6 0 0 0 3.6" pbc="T T T"\nCu 0 0 0\n')
    extra = ["--model", "rf"] if case == "model_without_pool" else []
    rc, o, e = run(
        [
            "suggest",
            "--data",
            str(data),
            "--space",
            str(space),
            "--objective",
            objective,
            "--out",
            str(tmp_path / "n.csv"),
            *extra,
        ],
        capsys,
    )
    assert rc == 1
    assert e.startswith("error: ") and expected in e, e
    assert len(e.strip().splitlines()) == 1 and "Traceback" not in e
    assert not (tmp_path / "n.csv").exists()


def test_fit_predict_evaluate(tmp_path, capsys):
    data = str(DATA / "glass_small.csv")
    model = tmp_path / "m.pkl"
    rc, o, e = run(
        [
            "fit",
            "--data",
            data,
            "-p",
            "nd",
            "-p",
            "Tg",
            "--model",
            "rf",
            "--trees",
            "30",
            "--out",
            str(model),
        ],
        capsys,
    )
    assert rc == 0, e
    assert "nd: 80" in o and "Tg: " in o and model.exists()
    pred = tmp_path / "pred.csv"
    rc, o, e = run(["predict", "--model", str(model), "--data", data, "--out", str(pred)], capsys)
    assert rc == 0, e
    df = pd.read_csv(pred)
    assert np.corrcoef(df["nd"], df["pred_nd_mean"])[0, 1] > 0.9
    assert (df["pred_Tg_std"] > 0).all()
    own = pd.read_csv(data).assign(batch_id=123456789.25)  # a user's column, 11 digits
    own.to_csv(tmp_path / "own.csv", index=False)
    pred = tmp_path / "own_pred.csv"
    rc, o, e = run(
        ["predict", "--model", str(model), "--data", str(tmp_path / "own.csv")]
        + ["--out", str(pred)],
        capsys,
    )
    assert rc == 0, e
    written = pd.read_csv(pred)
    assert (written["batch_id"] == 123456789.25).all()  # written as read, not to 6 digits
    assert np.allclose(written["SiO2"], own["SiO2"], rtol=0, atol=0)
    for split in ("group", "family"):
        js = tmp_path / f"{split}.json"
        rc, o, e = run(
            [
                "evaluate",
                "--data",
                data,
                "-p",
                "nd",
                "--split",
                split,
                "--folds",
                "3",
                "--model",
                "rf",
                "--trees",
                "30",
                "--json",
                str(js),
            ],
            capsys,
        )
        assert rc == 0, e
        res = json.loads(js.read_text())
        assert res["split"] == split and res["properties"]["nd"]["n"] == 80
        assert "RMSE" in o and "cov95" in o
    assert res["properties"]["nd"]["r2"] > 0.5
    rc, o, e = run(
        [
            "evaluate",
            "--data",
            data,
            "-p",
            "nd",
            "--split",
            "time",
            "--folds",
            "3",
            "--model",
            "rf",
            "--trees",
            "30",
        ],
        capsys,
    )
    assert rc == 1 and "--time-column" in e
    rc, o, e = run(
        [
            "evaluate",
            "--data",
            data,
            "-p",
            "nd",
            "--split",
            "time",
            "--folds",
            "3",
            "--time-column",
            "year",
            "--model",
            "rf",
            "--trees",
            "30",
        ],
        capsys,
    )
    assert rc == 0, e
    rc, o, e = run(["fit", "--data", data, "-p", "abbe", "--out", str(model)], capsys)
    assert rc == 1 and "no column for the properties ['abbe']" in e
    rc, o, e = run(["fit", "--data", data, "-p", "nD", "--out", str(model)], capsys)
    assert rc == 1 and "('nD': did you mean 'nd'?)" in e and len(e.strip().splitlines()) == 1


def test_subprocess_smoke(tmp_path):
    """A real process: a user error is one line on stderr, exit code 1."""
    out = tmp_path / "next.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "matloop",
            "design",
            "suggest",
            "--data",
            OBS,
            "--space",
            SPACE,
            "--objective",
            "Tg:min",
            "--objective",
            "abbe:max",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: {OBS}: no column for the objectives ['abbe']; columns are "
        "['SiO2', 'Na2O', 'CaO', 'Al2O3', 'PbO', 'nd', 'Tg']"
    )
    assert not out.exists()


def test_outputs_are_never_clobbered_and_long_work_shows_progress(tmp_path, capsys):
    data = str(DATA / "glass_small.csv")
    model = tmp_path / "m.npz"
    fit = ["fit", "--data", data, "-p", "nd", "--model", "rf", "--trees", "20", "--out"]
    rc, o, e = run([*fit, str(model)], capsys)
    assert rc == 0 and "fitting rf" in e  # a bar over the members while fitting
    rc, o, e = run([*fit, str(tmp_path / "m2.npz"), "-q"], capsys)
    assert rc == 0 and "fitting" not in e
    evaluate = ["evaluate", "--data", data, "-p", "nd", "--model", "rf", "--trees", "20"]
    for cmd, option in (
        (["predict", "--model", str(model), "--data", data], "--out"),
        ([*evaluate, "--folds", "2"], "--json"),
    ):
        existing = tmp_path / f"{cmd[0]}.out"
        existing.write_text("keep me")
        rc, o, e = run([*cmd, option, str(existing)], capsys)
        assert rc == 1 and len(e.strip().splitlines()) == 1, e
        assert "already exists; use --force" in e and existing.read_text() == "keep me"
        rc, o, e = run([*cmd, option, str(existing), "--force"], capsys)
        assert rc == 0, e
        assert existing.read_text() != "keep me"
    assert "fold 1: nd RMSE" in e  # evaluate reports each fold as it finishes


def test_negative_beta_is_one_line_before_any_work(tmp_path, capsys):
    from matloop.design.acquisition import build_acquisition
    from matloop.design.objectives import parse_objective
    from matloop.errors import ConfigError

    out = tmp_path / "n.csv"
    args = ["suggest", "--data", OBS, "--space", SPACE, "--objective", "nd:max"]
    rc, o, e = run([*args, "--acquisition", "ucb", "--beta", "-1", "--out", str(out)], capsys)
    assert rc == 2 and "--beta" in e and len(e.strip().splitlines()) == 1 and not out.exists()
    with pytest.raises(ConfigError, match="beta"):  # the library refuses it too
        build_acquisition(None, None, [parse_objective("nd:max")], np.zeros((2, 1)), beta=-1.0)


def test_pool_with_space_keeps_file_rows_and_rounded_sums(tmp_path, capsys):
    """`pool_row` is the row of the --candidates file even when --space drops rows before it,
    and rows whose sum is within the space's sum_tolerance (rounded mol %) are kept."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        na, ca, al = rng.uniform(13, 18), rng.uniform(7, 10), rng.uniform(2, 4)
        pb = 2.0 if i % 2 == 0 else 0.0  # PbO is forbidden: even rows are outside the space
        rows.append([100.0 - na - ca - al - pb, na, ca, al, pb])
    pool = pd.DataFrame(np.round(rows, 1), columns=["SiO2", "Na2O", "CaO", "Al2O3", "PbO"])
    pool.loc[1, "SiO2"] += 0.3  # sums to 100.3: inside sum_tolerance 0.5
    pool_path = tmp_path / "pool.csv"
    pool.to_csv(pool_path, index=False)
    out = tmp_path / "next.csv"
    args = ["suggest", "--data", OBS, "--space", SPACE, "--candidates", str(pool_path)]
    args += ["--objective", "nd:max", "--batch", "8", "--model", "rf", "--out", str(out), "-q"]
    rc, o, e = run(args, capsys)
    assert rc == 0, e
    assert "8 candidate(s) outside the space were skipped" in o
    picked = pd.read_csv(out)
    assert sorted(picked.pool_row) == list(range(1, 16, 2))
    for _, r in picked.iterrows():
        np.testing.assert_allclose(
            r[pool.columns].to_numpy(float), pool.iloc[int(r.pool_row)].to_numpy(float)
        )
    pool.loc[1::2, "PbO"] = 1.0
    pool.to_csv(pool_path, index=False)
    rc, o, e = run([*args[:-2], str(tmp_path / "none.csv"), "-q"], capsys)
    assert rc == 1 and "none of the 16 candidate rows is inside the space" in e


def test_repeated_batch_suggestions_are_reported():
    from matloop.design.bo import _repeated_rows

    x = np.array([[60.0, 40.0], [50.0, 50.0], [60.00001, 39.99999], [50.0, 50.0]])
    assert _repeated_rows(x) == [2, 3]
    assert _repeated_rows(x[:2]) == []
