"""Inputs a user hits on the design commands: repeated pool recipes, infinite property values,
repeated property names, weight-% data and spaces, component columns a model does not know."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matloop.cli import main
from matloop.compositions import mol_to_wt, wt_to_mol
from matloop.design.models import PropertyModel
from matloop.errors import ConfigError, DataError

OXIDES = ["SiO2", "Na2O", "CaO", "PbO"]


def run(args, capsys):
    rc = main(["design", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _glasses(n: int = 80, seed: int = 0) -> pd.DataFrame:
    """mol % of four oxides (rows sum to 100) and an nd that rises with PbO and CaO."""
    rng = np.random.default_rng(seed)
    x = rng.dirichlet([4, 2, 1.5, 1.0], n) * 100
    nd = 1.46 + 0.002 * x[:, 1] + 0.004 * x[:, 2] + 0.009 * x[:, 3] + rng.normal(0, 0.002, n)
    df = pd.DataFrame(x.round(4), columns=OXIDES)
    df["SiO2"] += 100 - df.sum(axis=1)
    return df.assign(nd=nd)


def _recipes() -> pd.DataFrame:
    """Furnace recipes (°C, h) with a measured yield peaking at 640 °C and 3 h."""
    T = np.array([520.0, 560, 600, 680, 720, 760, 640, 650])
    t = np.array([1.0, 2, 5, 1.5, 4, 2.5, 3, 3.5])
    y = 90 - ((T - 640) / 60) ** 2 * 20 - (t - 3) ** 2 * 4
    return pd.DataFrame({"temperature": T, "time": t, "yield": y})


# --------------------------------------------------------------------------- pool


def test_pool_recipe_listed_twice_is_suggested_once(tmp_path, capsys):
    rec = _recipes()
    observed = rec.iloc[:6]
    # the two unmeasured recipes are each listed twice (e.g. two stock sheets merged)
    pool = pd.concat([rec, rec.iloc[6:]], ignore_index=True).drop(columns="yield")
    p_obs, p_pool = tmp_path / "observed.csv", tmp_path / "pool.csv"
    observed.to_csv(p_obs, index=False)
    pool.to_csv(p_pool, index=False)
    base = ["suggest", "--data", str(p_obs), "--candidates", str(p_pool)]
    base += ["--objective", "yield:max", "--seed", "0", "--model", "rf", "-q"]

    # only two distinct recipes are left: a batch of three cannot be filled
    rc, o, e = run([*base, "--batch", "3", "--out", str(tmp_path / "three.csv")], capsys)
    assert rc == 1 and "only 2 candidate(s) not yet observed" in e
    assert "Traceback" not in e and not (tmp_path / "three.csv").exists()

    out = tmp_path / "next.csv"
    rc, o, e = run([*base, "--batch", "2", "--out", str(out)], capsys)
    assert rc == 0, e
    df = pd.read_csv(out)
    assert len(df.drop_duplicates(["temperature", "time"])) == 2  # two different recipes
    assert set(df["pool_row"]) == {6, 7}  # the first listing of each
    assert "2 row(s) repeat the inputs of an earlier row" in o


# --------------------------------------------------------------------------- properties


def test_infinite_property_value_is_an_error_not_a_missing_value(tmp_path, capsys):
    df = _glasses()
    df.loc[4, "nd"] = np.inf  # e.g. a spreadsheet's division by zero exported as "inf"
    path = tmp_path / "glasses.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "model.npz"
    rc, o, e = run(
        ["fit", "--data", str(path), "-p", "nd", "--model", "rf", "--trees", "5", "-q"]
        + ["--out", str(out)],
        capsys,
    )
    assert rc == 1 and not out.exists()
    assert e.count("\n") == 1 and "row 5 has an infinite value of 'nd'" in e
    # an empty cell is still "not measured"
    df.loc[4, "nd"] = np.nan
    df.to_csv(path, index=False)
    rc, o, e = run(
        ["fit", "--data", str(path), "-p", "nd", "--model", "rf", "--trees", "5", "-q"]
        + ["--out", str(out)],
        capsys,
    )
    assert rc == 0, e
    assert "nd: 79" in o


def test_repeated_property_name_is_refused(tmp_path, capsys):
    df = _glasses()
    with pytest.raises(ConfigError, match=r"property name\(s\) \['nd'\] given more than once"):
        PropertyModel(OXIDES, ["nd", "nd"], kind="rf", n_estimators=5).fit(
            df[OXIDES].to_numpy(), df[["nd", "nd"]].to_numpy()
        )
    path = tmp_path / "glasses.csv"
    df.to_csv(path, index=False)
    out = tmp_path / "model.npz"
    rc, o, e = run(
        ["fit", "--data", str(path), "-p", "nd", "-p", "nd", "--model", "rf", "--trees", "5"]
        + ["-q", "--out", str(out)],
        capsys,
    )
    assert rc == 1 and "given more than once" in e and not out.exists()


# --------------------------------------------------------------------------- units


def test_predict_reads_weight_percent_data_as_fit_did(tmp_path, capsys):
    mol = _glasses()
    wt = mol.copy()
    wt[OXIDES] = mol_to_wt(mol[OXIDES].to_numpy(), OXIDES)
    p_wt, p_mol = tmp_path / "glasses_wt.csv", tmp_path / "glasses_mol.csv"
    wt.to_csv(p_wt, index=False)
    mol.to_csv(p_mol, index=False)
    model = tmp_path / "model.npz"
    rc, o, e = run(
        ["fit", "--data", str(p_wt), "--basis", "wt", "-p", "nd", "--model", "rf"]
        + ["--trees", "20", "-q", "--out", str(model)],
        capsys,
    )
    assert rc == 0, e
    # the same wt % file, predicted without repeating --basis: converted as fit converted it
    rc, o, e = run(
        ["predict", "--model", str(model), "--data", str(p_wt), "--out", str(tmp_path / "a.csv")],
        capsys,
    )
    assert rc == 0, e
    rc, o, e = run(
        ["predict", "--model", str(model), "--data", str(p_mol), "--basis", "mol"]
        + ["--out", str(tmp_path / "b.csv")],
        capsys,
    )
    assert rc == 0, e
    a, b = pd.read_csv(tmp_path / "a.csv"), pd.read_csv(tmp_path / "b.csv")
    np.testing.assert_allclose(a["pred_nd_mean"], b["pred_nd_mean"], rtol=1e-5)
    np.testing.assert_allclose(a[OXIDES], wt[OXIDES])  # the input columns as they were read


def test_inverse_converts_a_weight_percent_space_for_the_model():
    from matloop.design.inverse import inverse_design
    from matloop.design.space import Space

    df = _glasses(200)
    model = PropertyModel(OXIDES, ["nd"], kind="rf", n_estimators=20).fit(
        df[OXIDES].to_numpy(), df[["nd"]].to_numpy()
    )
    space = Space(
        total=100,
        basis="wt",
        components={"SiO2": [40, 80], "Na2O": [5, 25], "CaO": [0, 20], "PbO": [0, 30]},
    )
    table = inverse_design(model, space, {"nd": 1.6}, n_samples=300, top=5, seed=0)
    wt = table[OXIDES].to_numpy()
    np.testing.assert_allclose(wt.sum(axis=1), 100.0, atol=1e-6)  # rows in the space's wt %
    expected = model.predict(wt_to_mol(wt, OXIDES))[:, 0]
    np.testing.assert_allclose(table["pred_nd_mean"], expected, rtol=1e-9)


def test_predict_names_a_component_the_model_was_not_fitted_on(tmp_path, capsys):
    df = _glasses()
    path = tmp_path / "glasses.csv"
    df.to_csv(path, index=False)
    model = tmp_path / "model.npz"
    rc, o, e = run(
        ["fit", "--data", str(path), "-p", "nd", "--model", "rf", "--trees", "5", "-q"]
        + ["--out", str(model)],
        capsys,
    )
    assert rc == 0, e
    new = df.drop(columns="nd").head(5).copy()
    new["Bi2O3"] = 0.0
    new.loc[0, "Bi2O3"] = 10.0
    new.loc[0, "SiO2"] -= 10.0
    p_new = tmp_path / "new.csv"
    new.to_csv(p_new, index=False)
    out = tmp_path / "pred.csv"
    rc, o, e = run(
        ["predict", "--model", str(model), "--data", str(p_new), "--out", str(out)], capsys
    )
    assert rc == 1 and not out.exists()
    assert "component column(s) ['Bi2O3'] are not among the model's components" in e
    assert e.count("\n") == 1


def test_objective_values_reject_infinity_in_python():
    from matloop.design.objectives import objective_values, parse_objective

    frame = pd.DataFrame({"SiO2": [70.0, 80.0], "Na2O": [30.0, 20.0], "nd": [1.5, -np.inf]})
    with pytest.raises(DataError, match="row 2 has an infinite value of 'nd'"):
        objective_values(frame, [parse_objective("nd:max")])
