"""Design space, constraints and Bayesian optimisation (BoTorch) on small known problems."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matloop.design import Space, load_space, pareto_mask, parse_objective, unit_box_problem
from matloop.design.bo import space_filling, suggest
from matloop.errors import ConfigError, DataError

DATA = Path(__file__).parent / "data" / "design"
FAST = dict(num_restarts=3, raw_samples=64, mc_samples=64)


def ternary_space(**kw) -> Space:
    spec = {"total": 100, "components": {"SiO2": [40, 80], "Na2O": [0, 40], "CaO": [0, 20]}}
    spec.update(kw)
    return Space.model_validate(spec)


def peak(x: np.ndarray) -> np.ndarray:
    """Known optimum inside the simplex: SiO2 60, Na2O 28, CaO 12 (value 0)."""
    return -(((x[:, 0] - 60) / 10) ** 2 + ((x[:, 1] - 28) / 8) ** 2 + ((x[:, 2] - 12) / 5) ** 2)


def test_space_yaml_and_errors(tmp_path):
    sp = load_space(DATA / "space.yaml")
    assert sp.names == ["SiO2", "Na2O", "CaO", "Al2O3", "PbO"]
    assert sp.upper()[-1] == 0.0  # forbidden → fixed at 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("total: 100\ncomponents: {SiO2: [0, 100]}\ncolour: red\n")
    with pytest.raises(ConfigError, match=r"unknown key 'colour' \(valid keys here: .*total"):
        load_space(bad)
    bad.write_text("components: {SiO2: {min: 0, max: 100, step: 1}}\n")
    with pytest.raises(
        ConfigError, match=r"'components\.SiO2\.step' \(valid keys here: max, min\)"
    ):
        load_space(bad)
    bad.write_text("components: {QqO: [0, 10], SiO2: [90, 100]}\n")
    with pytest.raises(ConfigError, match="component 'QqO': 'Qq' is not a chemical element"):
        load_space(bad)


def test_infeasible_spaces_raise_clear_errors():
    with pytest.raises(ConfigError, match="allow sums 40..140 but total is 150"):
        unit_box_problem(ternary_space(total=150))
    with pytest.raises(ConfigError, match="no feasible composition"):
        unit_box_problem(
            ternary_space(linear_constraints=[{"coefficients": {"Na2O": 1, "CaO": 1}, "ge": 65}])
        )
    with pytest.raises(ConfigError, match=r"forbidden: SiO2"):
        unit_box_problem(ternary_space(forbidden=["SiO2"]))


def test_space_filling_points_are_feasible_and_spread():
    sp = load_space(DATA / "space.yaml")
    prob = unit_box_problem(sp)
    z, _ = space_filling(prob, 8, seed=0)
    x = prob.round(prob.to_x(z))
    for row in x:
        assert sp.check_point(row) == []
        assert round(row.sum(), 6) == 100.0
    assert np.min([np.linalg.norm(a - b) for i, a in enumerate(x) for b in x[i + 1 :]]) > 1.0


def test_two_observations_give_space_filling_with_warning():
    sp = ternary_space()
    df = pd.DataFrame({"SiO2": [60, 70], "Na2O": [30, 20], "CaO": [10, 10], "y": [1.0, 2.0]})
    with pytest.warns(UserWarning, match="space-filling"):
        res = suggest(df, sp, [parse_objective("y:max")], batch=3, seed=1)
    assert res.mode == "space-filling" and len(res.table) == 3
    assert res.table["pred_y_mean"].isna().all()
    x = res.table[sp.names].to_numpy()
    assert all(sp.check_point(r) == [] for r in x)


def test_bad_data_errors():
    sp = ternary_space()
    ok = pd.DataFrame(
        {"SiO2": [60, 70, 65], "Na2O": [30, 20, 25], "CaO": [10, 10, 10], "y": [1.0, 2.0, 3.0]}
    )
    with pytest.raises(DataError, match=r"no column for the objectives \['nd'\]"):
        suggest(ok, sp, [parse_objective("nd:max")])
    off = ok.assign(SiO2=[60, 70, 50])
    with pytest.raises(DataError, match="row 3 sums to 85"):
        suggest(off, sp, [parse_objective("y:max")])
    extra = ok.assign(K2O=[0, 0, 1.0])
    with pytest.raises(DataError, match=r"\['K2O'\] are not in the space"):
        suggest(extra, sp, [parse_objective("y:max")])
    with pytest.raises(ConfigError, match="unknown direction"):
        parse_objective("y:biggest")


def test_constraints_hold_exactly_in_bo_batch():
    sp = load_space(DATA / "space.yaml")
    df = pd.read_csv(DATA / "observed.csv")
    res = suggest(df, sp, [parse_objective("nd:max")], batch=3, seed=0, **FAST)
    assert res.mode == "bo" and len(res.table) == 3
    x = res.table[sp.names].to_numpy()
    for row in x:
        assert sp.check_point(row, atol=1e-6) == []
        assert round(row.sum(), 6) == 100.0
        assert row[sp.names.index("PbO")] == 0.0
        assert row[1] + row[2] <= 30 + 1e-6  # Na2O + CaO <= 30
    assert np.all(res.table["pred_nd_std"] > 0)
    assert np.isfinite(res.table["acquisition"]).all()


def _random_best(sp, n, rng_seed):
    """Median best value of `n` uniformly random feasible compositions (400 draws)."""
    from matloop.design.bo import _polytope_samples

    prob = unit_box_problem(sp)
    pts = prob.to_x(_polytope_samples(prob, 400 * n, rng_seed))
    vals = peak(pts).reshape(400, n)
    return np.median(vals.max(axis=1))


def test_bo_beats_random_on_known_optimum():
    sp = ternary_space()
    n_init, n_iter = 3, 6
    bests = []
    seeds = (0, 1, 2)
    random_median = _random_best(sp, n_init + n_iter, 5)
    for seed in seeds:
        prob = unit_box_problem(sp)
        z, _ = space_filling(prob, n_init, seed=seed + 10)
        x = prob.to_x(z)
        df = pd.DataFrame(x, columns=sp.names).assign(y=peak(x))
        for it in range(n_iter):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = suggest(df, sp, [parse_objective("y:max")], seed=seed * 100 + it, **FAST)
            xn = res.table[sp.names].to_numpy()
            df = pd.concat(
                [df, pd.DataFrame(xn, columns=sp.names).assign(y=peak(xn))], ignore_index=True
            )
        bests.append(df["y"].max())
    print("BO bests", bests, "random median", random_median)
    # over the seeds, BO's typical best beats the median best of random feasible sampling
    assert np.mean(bests) > random_median, (bests, random_median)
    assert max(bests) > -0.5, bests


def test_target_and_minimise_objectives():
    sp = ternary_space()
    prob = unit_box_problem(sp)
    z, _ = space_filling(prob, 8, seed=3)
    x = prob.to_x(z)
    y = 0.5 * x[:, 1] + 0.1 * x[:, 2]  # increases with Na2O
    df = pd.DataFrame(x, columns=sp.names).assign(p=y)
    res = suggest(df, sp, [parse_objective("p:target=12")], seed=0, **FAST)
    assert abs(res.table["pred_p_mean"].iloc[0] - 12) < 2.0
    res = suggest(df, sp, [parse_objective("p:min")], seed=0, **FAST)
    assert res.table["Na2O"].iloc[0] < 5.0
    res = suggest(df, sp, [parse_objective("p:max")], acquisition="ucb", batch=2, seed=0, **FAST)
    assert res.acquisition.startswith("qUCB") and (res.table["Na2O"] > 30).all()
    # maximise p while keeping the (measured) CaO-like property c inside 0..5
    df["c"] = x[:, 2]
    res = suggest(
        df, sp, [parse_objective("p:max"), parse_objective("c:within=0,5")], seed=0, **FAST
    )
    assert res.table["CaO"].iloc[0] < 6.0 and res.table["Na2O"].iloc[0] > 30


def test_multi_objective_nehvi_and_pareto():
    u = np.array([[1, 5], [2, 4], [3, 1], [1, 1], [2, 2]], float)
    np.testing.assert_array_equal(pareto_mask(u), [True, True, True, False, False])
    sp = ternary_space()
    prob = unit_box_problem(sp)
    z, _ = space_filling(prob, 8, seed=4)
    x = prob.to_x(z)
    df = pd.DataFrame(x, columns=sp.names).assign(a=x[:, 1], b=x[:, 2] - 0.2 * x[:, 1])
    res = suggest(
        df, sp, [parse_objective("a:max"), parse_objective("b:max")], batch=2, seed=0, **FAST
    )
    assert res.acquisition == "qLogNEHVI" and len(res.table) == 2
    assert {"pred_a_mean", "pred_a_std", "pred_b_mean", "pred_b_std"} <= set(res.table.columns)
    for row in res.table[sp.names].to_numpy():
        assert sp.check_point(row) == []


def test_a_gp_refitted_with_the_length_scale_floor_is_named(monkeypatch):
    """When an objective's GP needed the retry with the length-scale floor, the user is told."""
    import botorch.fit
    from botorch.exceptions.errors import ModelFittingError

    real_fit = botorch.fit.fit_gpytorch_mll

    def fails_without_floor(mll, **kw):
        floor = mll.model.covar_module.base_kernel.raw_lengthscale_constraint.lower_bound
        if float(floor) == 0.0:
            raise ModelFittingError("All attempts to fit the model have failed.")
        return real_fit(mll, **kw)

    sp = load_space(DATA / "space.yaml")
    df = pd.read_csv(DATA / "observed.csv")
    res = suggest(df, sp, [parse_objective("nd:max")], batch=1, seed=0, **FAST)
    assert not [m for m in res.messages if "length scales" in m]
    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", fails_without_floor)
    res = suggest(df, sp, [parse_objective("nd:max")], batch=1, seed=0, **FAST)
    assert [m for m in res.messages if "GP of nd was refitted with length scales >= 0.025" in m]
