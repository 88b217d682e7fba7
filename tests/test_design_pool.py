"""Pool-based BO (Liang et al. protocol) on a synthetic pool with a known optimum."""

from __future__ import annotations

import numpy as np
import pytest

from matloop.design.pool import pool_bo_batched, pool_bo_run, top_fraction_curve


def test_pool_bo_finds_top_candidates_faster_than_random():
    rng = np.random.default_rng(0)
    X = rng.random((100, 2))
    y = (X[:, 0] - 0.7) ** 2 + (X[:, 1] - 0.3) ** 2  # minimise; best near (0.7, 0.3)
    budget = 20
    orders = pool_bo_batched(
        X,
        y,
        seeds=[0, 1],
        n_cycles=budget,
        acquisition="lcb",
        ard=True,
        maxiter=20,
        refit=lambda t: t <= 6 or t % 4 == 0,  # fewer hyper-parameter fits keep the test quick
    )
    found = []
    for order in orders:
        assert len(order) == budget and len(set(order.tolist())) == budget
        curve = top_fraction_curve(order, y)
        assert np.all(np.diff(curve) >= 0) and curve[-1] <= 1.0
        found.append(curve[-1])
    # random sampling finds budget/N = 20 % of the top-5 on average
    assert np.mean(found) >= 0.8, found
    order = pool_bo_run(X, y, n_cycles=6, acquisition="ei", ard=False, seed=0)
    assert len(set(order.tolist())) == 6


def test_top_fraction_curve_counts():
    y = np.arange(40.0)  # top 5 % = 2 candidates: indices 0 and 1
    np.testing.assert_allclose(top_fraction_curve(np.array([5, 1, 7, 0]), y), [0, 0.5, 0.5, 1])


def test_outcome_warps():
    import pytest

    from matloop.design.pool import warp_outcomes
    from matloop.errors import ConfigError

    rng = np.random.default_rng(3)
    y = rng.normal(size=(2, 30))
    cop = warp_outcomes(y, "copula")
    # the copula sees only the order: any increasing map of y gives the same values
    np.testing.assert_allclose(warp_outcomes(np.exp(3 * y), "copula"), cop)
    np.testing.assert_allclose(cop.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(cop.std(axis=1, ddof=1), 1.0)
    # HEBO's power warp undoes a log-normal skew (Box-Cox with λ near 0, i.e. the log)
    pw = warp_outcomes(np.exp(y), "power")
    assert np.corrcoef(pw[0], y[0])[0, 1] > 0.99
    assert np.corrcoef(warp_outcomes(np.exp(y), "standardize")[0], y[0])[0, 1] < 0.95
    with pytest.raises(ConfigError, match="outcome warp"):
        warp_outcomes(y, "log")


def test_simplex_columns_drop_only_a_redundant_fraction():
    from matloop.design.pool import simplex_columns

    rng = np.random.default_rng(4)
    F = rng.dirichlet(np.ones(3), size=20).round(2)  # rounded fractions: sums 0.99-1.01
    assert simplex_columns(F).tolist() == [0, 1]
    assert simplex_columns(100 * F).tolist() == [0, 1]  # percentages
    assert simplex_columns(rng.random((20, 3))).tolist() == [0, 1, 2]


def test_copula_runs_depend_only_on_the_order_of_the_outcomes():
    rng = np.random.default_rng(5)
    X = rng.random((40, 2))
    y = (X[:, 0] - 0.6) ** 2 + (X[:, 1] - 0.4) ** 2
    kw = dict(seeds=[0], n_cycles=8, kappa=1.0, maxiter=15, refit=lambda t: t <= 5)
    a = pool_bo_batched(X, y, y_warp="copula", **kw)
    b = pool_bo_batched(X, np.exp(10 * y), y_warp="copula", **kw)
    assert a.tolist() == b.tolist()


def test_auto_input_options_switch_on_for_mixtures_only():
    from matloop.design.pool import mixture_options
    from matloop.errors import ConfigError

    rng = np.random.default_rng(6)
    F = rng.dirichlet(np.ones(3), size=30)
    y = (F[:, 0] - 0.5) ** 2 + F[:, 1]
    kw = dict(seeds=[0, 1], n_cycles=7, kappa=1.0, maxiter=10, refit=lambda t: t <= 4)
    auto = pool_bo_batched(F, y, input_warp="auto", drop_simplex="auto", **kw)
    on = pool_bo_batched(F, y, input_warp=True, drop_simplex=True, **kw)
    warp, keep = mixture_options(F, input_warp="auto", drop_simplex="auto")
    assert warp and keep.tolist() == [0, 1]  # warped, the redundant last fraction left out
    assert auto.tolist() == on.tolist()
    X = rng.random((30, 3))  # not mixture fractions: "auto" is the plain GP
    warp, keep = mixture_options(X, input_warp="auto", drop_simplex="auto")
    assert not warp and keep.tolist() == [0, 1, 2]
    auto = pool_bo_batched(X, y, input_warp="auto", drop_simplex="auto", **kw)
    assert auto.tolist() == pool_bo_batched(X, y, **kw).tolist()
    with pytest.raises(ConfigError, match="input_warp must be True, False or 'auto'"):
        pool_bo_batched(X, y, input_warp="yes", **kw)
