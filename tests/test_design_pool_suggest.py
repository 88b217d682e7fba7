"""Pool-based suggestion (`matloop design suggest --candidates`) and the shared BO pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matloop.cli import main
from matloop.design.objectives import parse_objective
from matloop.design.pool import suggest_from_pool


def _pool(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Process-parameter pool (temperature °C, time h) with a known yield peak at 640 °C, 3 h."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(500, 800, n).round(1)
    t = rng.uniform(0.5, 6, n).round(2)
    y = 90 - ((T - 640) / 60) ** 2 * 20 - (t - 3) ** 2 * 4
    return pd.DataFrame({"temperature": T, "time": t, "yield": y})


def run(args, capsys):
    rc = main(["design", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def _files(tmp_path, n_obs: int = 8):
    pool = _pool()
    obs = pool.sample(n_obs, random_state=1)
    cand = pool.drop(columns="yield")
    (p_obs, p_cand) = (tmp_path / "observed.csv", tmp_path / "pool.csv")
    obs.to_csv(p_obs, index=False)
    cand.to_csv(p_cand, index=False)
    return pool, obs, p_obs, p_cand


@pytest.mark.parametrize("model", ["gp", "rf"])
def test_cli_pool_suggest_picks_unobserved_good_rows(tmp_path, capsys, model):
    pool, obs, p_obs, p_cand = _files(tmp_path)
    out = tmp_path / "next.csv"
    rc, o, e = run(
        [
            "suggest",
            "--data",
            str(p_obs),
            "--candidates",
            str(p_cand),
            "--objective",
            "yield:max",
            "--batch",
            "3",
            "--seed",
            "2",
            "--model",
            model,
            "--out",
            str(out),
        ],
        capsys,
    )
    assert rc == 0, e
    df = pd.read_csv(out)
    assert len(df) == 3 and df["pool_row"].nunique() == 3
    assert {"temperature", "time", "pred_yield_mean", "pred_yield_std"} <= set(df.columns)
    assert not set(df["pool_row"]) & set(obs.index)  # observed rows are never suggested again
    # the rows are the pool's own rows
    np.testing.assert_allclose(
        df[["temperature", "time"]], pool.loc[df["pool_row"], ["temperature", "time"]]
    )
    # better than the pool median on average (the model found the peak's neighbourhood)
    assert pool.loc[df["pool_row"], "yield"].mean() > pool["yield"].median()
    assert "inputs: temperature, time" in o and "3 suggestion(s)" in o


def test_cli_refuses_to_overwrite_without_force(tmp_path, capsys):
    _, _, p_obs, p_cand = _files(tmp_path)
    out = tmp_path / "next.csv"
    out.write_text("keep me\n")
    args = [
        "suggest",
        "--data",
        str(p_obs),
        "--candidates",
        str(p_cand),
        "--objective",
        "yield:max",
        "--out",
        str(out),
    ]
    rc, o, e = run(args, capsys)
    assert rc == 1 and "already exists; use --force" in e and len(e.strip().splitlines()) == 1
    assert out.read_text() == "keep me\n"
    rc, o, e = run([*args, "--force"], capsys)
    assert rc == 0, e and len(pd.read_csv(out)) == 1


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_input", "no column(s) ['time'] (the inputs of"),
        ("text_column", "input column(s) ['batch_id'] are not numeric"),
        ("no_space_no_pool", "give --space (continuous design) or --candidates"),
        ("too_few_left", "only 0 candidate(s) not yet observed"),
        ("bad_warp", "--input-warp must be auto, on or off, got 'yes'"),
        ("warp_without_pool", "--input-warp applies to --candidates (a finite pool) only"),
    ],
)
def test_cli_pool_bad_input_one_line(tmp_path, capsys, case, expected):
    pool, obs, p_obs, p_cand = _files(tmp_path)
    args = ["--candidates", str(p_cand)]
    if case == "missing_input":
        obs.drop(columns="time").to_csv(p_obs, index=False)
    elif case == "text_column":
        cand = pool.drop(columns="yield").assign(batch_id="a")
        cand.to_csv(p_cand, index=False)
    elif case == "no_space_no_pool":
        args = []
    elif case == "too_few_left":
        obs.drop(columns="yield").to_csv(p_cand, index=False)
    elif case == "bad_warp":
        args += ["--input-warp", "yes"]
    elif case == "warp_without_pool":
        args = ["--space", str(tmp_path / "space.yaml"), "--input-warp", "on"]
    out = tmp_path / "n.csv"
    rc, o, e = run(
        ["suggest", "--data", str(p_obs), *args, "--objective", "yield:max", "--out", str(out)],
        capsys,
    )
    assert rc == 1 and e.startswith("error: ") and expected in e, e
    assert len(e.strip().splitlines()) == 1 and not out.exists()


def test_one_observation_gives_space_filling_pool_rows():
    pool = _pool(40)
    objs = [parse_objective("yield:max")]
    with pytest.warns(UserWarning, match="space-filling"):
        res = suggest_from_pool(pool.head(1), pool.drop(columns="yield"), objs, batch=2)
    assert res.mode == "space-filling" and 0 not in set(res.table["pool_row"])


@pytest.mark.parametrize("acq", ["ucb", "ei", "pi", "logei"])
def test_gp_from_two_points_and_every_acquisition(acq):
    pool = _pool(60)
    objs = [parse_objective("yield:min")]
    res = suggest_from_pool(pool.head(2), pool.drop(columns="yield"), objs, acquisition=acq, seed=0)
    row = res.table.iloc[0]
    assert row["pool_row"] >= 2 and np.isfinite(row["acquisition"]) and row["pred_yield_std"] > 0


def test_two_objectives_pool_nehvi():
    pool = _pool(80).assign(cost=lambda d: d["temperature"] * 0.01 + d["time"])
    objs = [parse_objective("yield:max"), parse_objective("cost:min")]
    res = suggest_from_pool(
        pool.sample(10, random_state=0), pool.drop(columns=["yield", "cost"]), objs, batch=2, seed=0
    )
    assert res.acquisition == "qLogNEHVI" and len(res.table) == 2


def test_input_warping_learns_a_non_stationary_input():
    import torch

    from matloop.design.surrogates import fit_gp

    rng = np.random.default_rng(0)
    X = np.sort(rng.random((25, 1)), axis=0)

    def f(x):  # flat at small x, wiggly near 1: x⁴ makes it stationary
        return np.sin(3 * np.pi * x[:, 0] ** 4)

    grid = np.linspace(0, 1, 200)[:, None]
    rmse = {}
    for warp in (False, True):
        gp = fit_gp(X, f(X), input_warp=warp)
        with torch.no_grad():
            mu = gp.posterior(torch.tensor(grid)).mean.numpy()[:, 0]
        rmse[warp] = float(np.sqrt(np.mean((mu - f(grid)) ** 2)))
    k = gp.covar_module
    assert float(k.raw_a_constraint.transform(k.raw_a)) > 2.0  # w(x) ≈ x^a stretches x → 1
    assert rmse[True] < 0.6 * rmse[False], rmse


def test_pool_of_mixtures_can_model_all_but_the_last_fraction():
    rng = np.random.default_rng(1)
    F = rng.dirichlet(np.ones(3), size=60).round(3)
    F[:, 2] = (1 - F[:, 0] - F[:, 1]).round(3)
    y = (F[:, 0] - 0.6) ** 2 + (F[:, 1] - 0.3) ** 2  # minimum at (0.6, 0.3, 0.1)
    pool = pd.DataFrame({"CsPbI": F[:, 0], "FAPbI": F[:, 1], "MAPbI": F[:, 2], "loss": y})
    objs = [parse_objective("loss:min")]
    obs = pool.sample(20, random_state=0)
    res = suggest_from_pool(
        obs, pool.drop(columns="loss"), objs, seed=0, drop_simplex=True, input_warp=True
    )
    assert any("the GP models CsPbI, FAPbI" in m for m in res.messages), res.messages
    assert any(m.startswith("inputs warped") for m in res.messages), res.messages
    assert pool.loc[res.table["pool_row"], "loss"].mean() < pool["loss"].quantile(0.25)
    auto = suggest_from_pool(obs, pool.drop(columns="loss"), objs, seed=0)  # the default
    assert auto.table["pool_row"].tolist() == res.table["pool_row"].tolist()
    plain = suggest_from_pool(
        obs, pool.drop(columns="loss"), objs, seed=0, drop_simplex=False, input_warp=False
    )
    assert not any("mixture fractions" in m or "warped" in m for m in plain.messages)
    process = _pool(60)  # process parameters: "auto" leaves them as they are
    msgs = suggest_from_pool(process.head(10), process.drop(columns="yield"), [_MAX], seed=0)
    assert not any("mixture fractions" in m or "warped" in m for m in msgs.messages)


_MAX = parse_objective("yield:max")


def test_pool_default_acquisition_is_the_benchmarks_ucb_for_one_max_objective():
    pool = _pool(40)
    cand = pool.drop(columns="yield")
    best = suggest_from_pool(pool.head(6), cand, [_MAX], seed=0)
    assert best.acquisition == "UCB(beta=1)", best.acquisition
    target = suggest_from_pool(pool.head(6), cand, [parse_objective("yield:target=80")], seed=0)
    assert target.acquisition == "qLogNEI", target.acquisition


def test_warped_gp_can_restart_from_prior_samples():
    """BoTorch's fit retries from samples of every prior; the warp's a, b must take them."""
    import torch
    from botorch.optim.utils import sample_all_priors

    from matloop.design.surrogates import make_covar_module

    k = make_covar_module(3, ard=True, priors=True, bias=False, input_warp=True)
    torch.manual_seed(0)
    sample_all_priors(k)
    a = k.raw_a_constraint.transform(k.raw_a)
    assert torch.all(a > 0) and not torch.allclose(a, torch.ones_like(a))


def test_an_observed_column_missing_from_the_pool_is_named():
    """A process parameter the pool lacks is not modelled; the user is told which one."""
    pool = _pool(60).assign(operator="A")
    obs = pool.sample(8, random_state=0)
    objs = [parse_objective("yield:max")]
    res = suggest_from_pool(obs, pool.drop(columns=["yield", "time", "operator"]), objs, seed=0)
    unused = [m for m in res.messages if "not in candidates" in m]
    assert len(unused) == 1 and "['time']" in unused[0]  # text columns are not inputs anyway
    res = suggest_from_pool(obs, pool.drop(columns=["yield", "operator"]), objs, seed=0)
    assert not [m for m in res.messages if "not in candidates" in m]


def test_length_scale_floor_holds_on_a_rapidly_varying_function():
    """The floor of the retry (BoTorch's own default) bounds the length scales from below."""
    from matloop.design.surrogates import FALLBACK_MIN_LENGTHSCALE, _build_gp

    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 2))
    y = np.sin(X[:, 0] * 200.0)  # varies on a scale far below the floor
    bounds = np.array([[0.0, 0.0], [1.0, 1.0]])
    kw = dict(bounds=bounds, ard=True, kernel="matern52", priors=True, bias=False)
    free = _build_gp(X, y, fixed_noise=None, **kw)
    floored = _build_gp(X, y, fixed_noise=None, min_lengthscale=FALLBACK_MIN_LENGTHSCALE, **kw)
    for model in (free, floored):  # push the raw length scales far down, as a bad fit would
        model.covar_module.base_kernel.raw_lengthscale.data.fill_(-30.0)
    assert free.covar_module.base_kernel.lengthscale.max() < 1e-6
    assert floored.covar_module.base_kernel.lengthscale.min() >= FALLBACK_MIN_LENGTHSCALE


def test_a_failed_gp_fit_is_retried_with_the_floor(monkeypatch):
    """A fit that fails (e.g. a kernel matrix numerically not positive definite) is retried once
    with length scales >= the floor; the model conditioned on more rows keeps that kernel."""
    import botorch.fit
    from botorch.exceptions.errors import ModelFittingError

    from matloop.design import surrogates

    real_fit, calls = botorch.fit.fit_gpytorch_mll, []

    def fails_without_floor(mll, **kw):
        floor = mll.model.covar_module.base_kernel.raw_lengthscale_constraint.lower_bound
        calls.append(float(floor))
        if float(floor) == 0.0:
            raise ModelFittingError("All attempts to fit the model have failed.")
        return real_fit(mll, **kw)

    monkeypatch.setattr(botorch.fit, "fit_gpytorch_mll", fails_without_floor)
    pool = _pool(60)
    X, y = pool[["temperature", "time"]].to_numpy(), pool["yield"].to_numpy()
    model = surrogates.fit_gp(X, y, max_fit_rows=30)
    assert calls == pytest.approx([0.0, surrogates.FALLBACK_MIN_LENGTHSCALE])
    assert model.min_lengthscale == surrogates.FALLBACK_MIN_LENGTHSCALE
    lengthscale = model.covar_module.base_kernel.lengthscale
    assert lengthscale.min() >= surrogates.FALLBACK_MIN_LENGTHSCALE * (1 - 1e-6)


def test_a_missing_pool_value_names_its_data_row(tmp_path, capsys):
    """Rows are counted from 1 after the header, as in the other design messages."""
    pool, obs, p_obs, p_cand = _files(tmp_path)
    cand = pd.read_csv(p_cand)
    cand.loc[2, "time"] = np.nan  # the third data row
    cand.to_csv(p_cand, index=False)
    args = ["suggest", "--data", str(p_obs), "--candidates", str(p_cand)]
    rc, o, e = run([*args, "--objective", "yield:max", "--out", str(tmp_path / "n.csv")], capsys)
    assert rc == 1 and "pool.csv: row 3 has a missing or non-finite input value" in e, e


def test_pool_suggestion_uses_matloops_thread_count_and_restores_the_callers(monkeypatch):
    import torch

    from matloop.design import pool as pool_module

    seen = []
    inner = pool_module.pool_inputs  # called inside, after the thread count is set
    monkeypatch.setattr(
        pool_module,
        "pool_inputs",
        lambda *a, **k: seen.append(torch.get_num_threads()) or inner(*a, **k),
    )
    monkeypatch.setenv("MATLOOP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = _pool(40)
        suggest_from_pool(
            data.sample(5, random_state=1),
            data.drop(columns="yield"),
            [parse_objective("yield:max")],
        )
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
