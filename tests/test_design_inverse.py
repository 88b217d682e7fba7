"""Inverse design to a target property set (`matloop design inverse`) end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matloop.cli import main

SPACE = """total: 100
components:
  SiO2: [15, 80]
  Na2O: [5, 25]
  CaO: [0, 20]
  PbO: [0, 30]
forbidden: [PbO]
"""


def _table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """nd rises with CaO and PbO, Tg falls with Na2O (smooth, known, with noise)."""
    rng = np.random.default_rng(seed)
    x = rng.dirichlet([4, 2, 1.5, 1.0], n) * 100
    f = x / 100
    nd = 1.46 + 0.2 * f[:, 1] + 0.4 * f[:, 2] + 0.9 * f[:, 3] + rng.normal(0, 0.002, n)
    tg = 900 - 900 * f[:, 1] + 200 * f[:, 2] - 300 * f[:, 3] + rng.normal(0, 5, n)
    df = pd.DataFrame(x.round(3), columns=["SiO2", "Na2O", "CaO", "PbO"])
    df["SiO2"] += 100 - df.sum(axis=1)
    return df.assign(nd=nd, Tg=tg)


def run(args, capsys):
    rc = main(["design", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_inverse_design_cli_ranked_feasible_list(tmp_path: Path, capsys):
    data, model, space = tmp_path / "g.csv", tmp_path / "m.pkl", tmp_path / "space.yaml"
    _table().to_csv(data, index=False)
    space.write_text(SPACE)
    rc, o, e = run(
        [
            "fit",
            "--data",
            str(data),
            "-p",
            "nd",
            "-p",
            "Tg",
            "--model",
            "rf",
            "--trees",
            "60",
            "--out",
            str(model),
        ],
        capsys,
    )
    assert rc == 0, e
    out = tmp_path / "ranked.csv"
    args = [
        "inverse",
        "--model",
        str(model),
        "--space",
        str(space),
        "--target",
        "nd=1.55",
        "--target",
        "Tg=800",
        "--tolerance",
        "nd=0.01",
        "--samples",
        "3000",
        "--top",
        "10",
        "--out",
        str(out),
    ]
    rc, o, e = run(args, capsys)
    assert rc == 0, e
    df = pd.read_csv(out)
    assert len(df) == 10 and "10 ranked composition(s)" in o
    comps = ["SiO2", "Na2O", "CaO", "PbO"]
    np.testing.assert_allclose(df[comps].sum(axis=1), 100, atol=1e-9)  # as rounded, not to 6 digits
    assert (df["PbO"] == 0).all() and (df["SiO2"] >= 15 - 1e-3).all()
    assert np.all(np.diff(df["p_within_tolerance"]) <= 1e-12)  # ranked
    # the best rows are predicted near the targets, inside their own 95 % intervals
    top = df.head(3)
    assert (abs(top["pred_nd_mean"] - 1.55) < 0.01).all()
    assert (top["pred_nd_lo95"] < 1.55).all() and (top["pred_nd_hi95"] > 1.55).all()
    # and the true (synthetic) property of the best composition is close to the target
    f = top[comps].to_numpy() / 100
    true_nd = 1.46 + 0.2 * f[:, 1] + 0.4 * f[:, 2] + 0.9 * f[:, 3]
    assert np.all(abs(true_nd - 1.55) < 0.02), true_nd
    rc, o, e = run(args, capsys)
    assert rc == 1 and "already exists; use --force" in e
    rc, o, e = run([*args[:-2], "--target", "abbe=38", "--out", str(tmp_path / "x.csv")], capsys)
    assert rc == 1 and "target(s) ['abbe'] are not properties" in e
    assert len(e.strip().splitlines()) == 1


@pytest.mark.parametrize("spec", ["nd", "nd=abc", "=3"])
def test_bad_target_spec(spec):
    from matloop.design.inverse import parse_targets
    from matloop.errors import ConfigError

    with pytest.raises(ConfigError, match="write NAME=VALUE"):
        parse_targets([spec])


def test_repeated_or_non_finite_target_and_bad_tolerance():
    from matloop.design.inverse import inverse_design, parse_targets
    from matloop.errors import ConfigError

    with pytest.raises(ConfigError, match="more than once"):
        parse_targets(["nd=1.6", "nd=1.7"])
    with pytest.raises(ConfigError, match="finite"):
        parse_targets(["nd=nan"])

    class _Model:
        properties_ = ["nd"]

    for tol in (0.0, -0.1):
        with pytest.raises(ConfigError, match="tolerances must be > 0"):
            inverse_design(_Model(), None, {"nd": 1.6}, tolerances={"nd": tol})
