"""Review of matloop.design (space, BO ask step, pool filter, inverse design): user-visible
defects found in review, each checked numerically on small real problems."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matloop.cli import main
from matloop.design import Space, parse_objective, unit_box_problem
from matloop.design.bo import suggest
from matloop.design.space import observed_compositions
from matloop.errors import ConfigError

DATA = Path(__file__).parent / "data" / "design"
SPACE = str(DATA / "space.yaml")
FAST = dict(num_restarts=2, raw_samples=32, mc_samples=32)


def ternary(**kw) -> Space:
    spec = {"total": 100, "components": {"SiO2": [40, 80], "Na2O": [0, 40], "CaO": [0, 20]}}
    return Space.model_validate({**spec, **kw})


def run(args, capsys):
    rc = main(["design", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_a_property_named_like_an_element_is_an_objective_not_a_component():
    """A bulk modulus column "K" (or "B") was refused as "component ['K'] not in the space"."""
    sp = ternary()
    df = pd.DataFrame({"SiO2": [60, 70], "Na2O": [30, 20], "CaO": [10, 10], "K": [40.0, 45.0]})
    with pytest.warns(UserWarning, match="space-filling"):
        res = suggest(df, sp, [parse_objective("K:max")], batch=2, seed=0)
    x = res.table[sp.names].to_numpy()
    assert all(sp.check_point(r) == [] for r in x)
    x = observed_compositions(df, sp, ignore=["K"])
    np.testing.assert_allclose(x.sum(axis=1), 100.0)


def test_a_numeric_column_the_continuous_design_ignores_is_named():
    """A process column (anneal_T) in --data was dropped without a word in continuous BO."""
    sp = ternary()
    df = pd.DataFrame(
        {"SiO2": [60, 70], "Na2O": [30, 20], "CaO": [10, 10], "y": [1.0, 2.0]}
    ).assign(anneal_T=[550.0, 600.0])
    with pytest.warns(UserWarning, match="space-filling"):
        res = suggest(df, sp, [parse_objective("y:max")], batch=1, seed=0, source="obs.csv")
    assert any("['anneal_T']" in m and "does not use" in m for m in res.messages)


def test_a_suggestion_equal_to_a_measured_composition_is_reported():
    """The best corner (80, 0, 20) was already measured, and BO silently asked for it again."""
    sp = ternary()
    rows = [[80, 20, 0], [80, 0, 20], [40, 40, 20], [60, 30, 10], [70, 20, 10], [50, 35, 15]]
    df = pd.DataFrame(rows, columns=sp.names, dtype=float)
    df["y"] = 0.05 * df.SiO2 + 0.001 * np.random.default_rng(0).normal(size=len(df))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = suggest(df, sp, [parse_objective("y:max")], batch=1, seed=0, **FAST)
    x = res.table[sp.names].to_numpy()
    observed = np.abs(x[:, None, :] - df[sp.names].to_numpy()[None]).max(axis=2) <= 1e-3
    assert observed.any()  # the situation: a measured composition suggested again
    assert any("already measured composition" in m for m in res.messages), res.messages
    assert any("= observed row" in m for m in res.messages)


def test_single_composition_space_reports_repeated_space_filling_points():
    """An equality constraint leaving one composition gave `batch` copies without a word."""
    sp = Space.model_validate(
        {
            "total": 100,
            "components": {"SiO2": [40, 80], "Na2O": [0, 60]},
            "linear_constraints": [{"coefficients": {"SiO2": 1}, "eq": 70}],
        }
    )
    df = pd.DataFrame({"SiO2": [70.0], "Na2O": [30.0], "y": [1.0]})
    with pytest.warns(UserWarning, match="space-filling"):
        res = suggest(df, sp, [parse_objective("y:max")], batch=3, seed=0)
    np.testing.assert_allclose(res.table[sp.names].to_numpy(), [[70, 30]] * 3)
    assert any("repeat an earlier suggestion" in m for m in res.messages), res.messages


def test_a_repeated_forbidden_component_gives_one_column():
    """`forbidden: [PbO, PbO]` gave two PbO columns in every suggestion table."""
    sp = ternary(forbidden=["PbO", "PbO"])
    assert sp.names == ["SiO2", "Na2O", "CaO", "PbO"]
    assert unit_box_problem(sp).lo.shape == (4,)


def test_sum_tolerance_scales_with_a_fraction_total():
    """With `total: 1` a measured row summing to 0.7 (30 % of the glass missing) passed the
    absolute default tolerance 0.5 meant for mol %."""
    from matloop.errors import DataError

    sp = ternary(total=1, components={"SiO2": [0.4, 0.8], "Na2O": [0, 0.4], "CaO": [0, 0.2]})
    assert sp.sum_tolerance == pytest.approx(0.005)
    assert ternary().sum_tolerance == 0.5 and ternary(sum_tolerance=2).sum_tolerance == 2
    df = pd.DataFrame({"SiO2": [0.6, 0.7], "Na2O": [0.3, 0.0], "CaO": [0.1, 0.0], "y": [1.0, 2]})
    with pytest.raises(DataError, match="row 2 sums to 0.7"):
        suggest(df, sp, [parse_objective("y:max")])


@pytest.mark.parametrize("spec", ["nd:target=nan", "nd:target=inf", "nd:within=nan,2"])
def test_non_finite_target_is_refused(spec):
    """`nd:target=nan` was accepted and crashed deep in BoTorch (NaN probability tensor)."""
    with pytest.raises(ConfigError, match="objective"):
        parse_objective(spec)


def _pool_files(tmp_path, bad: bool = False):
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(12):
        na, ca, al = rng.uniform(13, 18), rng.uniform(7, 10), rng.uniform(2, 4)
        rows.append([100 - na - ca - al, na, ca, al])
    pool = pd.DataFrame(np.round(rows, 2), columns=["SiO2", "Na2O", "CaO", "Al2O3"])
    if bad:
        pool = pool.astype(object)
        pool.loc[3, "SiO2"] = "abc"
    obs = pd.read_csv(DATA / "observed.csv").drop(columns="PbO")
    p_pool, p_obs = tmp_path / "pool.csv", tmp_path / "obs.csv"
    pool.to_csv(p_pool, index=False)
    obs.to_csv(p_obs, index=False)
    return pool, p_pool, p_obs


def test_pool_without_the_forbidden_column_is_filtered_by_the_space(tmp_path, capsys):
    """A pool with no PbO column (PbO forbidden) was refused: "no column(s) ['PbO']"."""
    pool, p_pool, p_obs = _pool_files(tmp_path)
    out = tmp_path / "next.csv"
    args = ["suggest", "--data", str(p_obs), "--space", SPACE, "--candidates", str(p_pool)]
    args += ["--objective", "nd:max", "--batch", "2", "--model", "rf", "--out", str(out), "-q"]
    rc, o, e = run(args, capsys)
    assert rc == 0, e
    picked = pd.read_csv(out)
    assert len(picked) == 2 and picked.pool_row.nunique() == 2
    np.testing.assert_allclose(picked[pool.columns].sum(axis=1), 100.0, atol=0.05)


def test_non_numeric_candidate_with_space_is_one_line_error(tmp_path, capsys):
    """A text cell in --candidates with --space was an "internal error (ValueError ...)"."""
    _, p_pool, p_obs = _pool_files(tmp_path, bad=True)
    out = tmp_path / "next.csv"
    args = ["suggest", "--data", str(p_obs), "--space", SPACE, "--candidates", str(p_pool)]
    args += ["--objective", "nd:max", "--model", "rf", "--out", str(out), "-q"]
    rc, o, e = run(args, capsys)
    assert rc == 1 and not out.exists()
    assert "not numeric" in e and "internal error" not in e and len(e.strip().splitlines()) == 1


def test_unreachable_inverse_target_warns_and_reports_zero_probability():
    """nd = 3 (no soda-lime glass gets near) ranked rows with P = 1e-300 and no message."""
    from matloop.design.inverse import inverse_design
    from matloop.design.models import PropertyModel

    comps = ["SiO2", "Na2O", "CaO"]
    rng = np.random.default_rng(0)
    x = rng.dirichlet([4, 2, 1.5], 150) * 100
    nd = 1.46 + 0.002 * x[:, 1] + 0.004 * x[:, 2]
    model = PropertyModel(comps, ["nd"], kind="rf", n_estimators=10).fit(x, nd[:, None])
    sp = ternary()
    with pytest.warns(UserWarning, match=r"no feasible composition is likely .*target 3\)"):
        table = inverse_design(model, sp, {"nd": 3.0}, tolerances={"nd": 0.01}, n_samples=300)
    assert (table["p_within_tolerance"] == 0.0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a reachable target: no warning
        ok = inverse_design(model, sp, {"nd": 1.55}, tolerances={"nd": 0.02}, n_samples=300)
    assert ok["p_within_tolerance"].iloc[0] > 0.01
    assert all(sp.check_point(r) == [] for r in ok[sp.names].to_numpy())


def _dated_table(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.dirichlet([4, 2, 1.5], 40) * 100
    df = pd.DataFrame(x.round(3), columns=["SiO2", "Na2O", "CaO"])
    df["SiO2"] += 100 - df.sum(axis=1)
    df["nd"] = 1.46 + 0.002 * df.Na2O + 0.004 * df.CaO + rng.normal(0, 0.003, 40)
    dates = pd.date_range("2019-01-01", periods=40, freq="20D")
    df["day"] = np.arange(40) * 20
    df["date"] = [f"{d.month}/{d.day}/{d.year}" for d in dates]  # as a US spreadsheet writes
    path = tmp_path / "dated.csv"
    df.to_csv(path, index=False)
    return path


def test_time_split_orders_date_strings_by_date_not_text(tmp_path, capsys):
    """ "10/13/2019" sorted before "2/6/2019" as text: the 'past' blocks were not the past."""
    data = _dated_table(tmp_path)
    base = ["evaluate", "--data", str(data), "-p", "nd", "--split", "time", "--folds", "2"]
    base += ["--model", "rf", "--trees", "10", "-q"]
    metrics = []
    for col in ("day", "date"):
        out = tmp_path / f"{col}.json"
        rc, o, e = run([*base, "--time-column", col, "--json", str(out)], capsys)
        assert rc == 0, e
        metrics.append(pd.read_json(out, typ="series")["properties"]["nd"]["rmse"])
    assert metrics[0] == pytest.approx(metrics[1], rel=1e-12)


def test_more_folds_than_rows_is_one_line_error(tmp_path, capsys):
    """--folds 5 on 4 rows was "internal error (ValueError: Cannot have number of splits ...)"."""
    data = _dated_table(tmp_path)
    small = tmp_path / "four.csv"
    pd.read_csv(data).head(4).to_csv(small, index=False)
    for split in ("random", "time"):
        args = ["evaluate", "--data", str(small), "-p", "nd", "--split", split, "--folds", "5"]
        rc, o, e = run([*args, "--time-column", "day", "--model", "rf", "-q"], capsys)
        assert rc != 0 and "internal error" not in e
        assert "only 4 rows for 5 folds" in e and len(e.strip().splitlines()) == 1
