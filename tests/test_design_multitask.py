"""Multi-task composition model (boosting + shared-trunk MLPs) and Student-t intervals."""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.utils import estimator_checks as ec

from matloop.cli import main
from matloop.compositions.features import CompositionFeaturizer
from matloop.design.metrics import regression_metrics
from matloop.design.models import PropertyModel
from matloop.design.multitask import (
    MultiTaskNet,
    aggregate_replicates,
    fit_student_t_calibration,
    gaussian_equivalent_factor,
)
from matloop.errors import ConfigError

COMPS = ["SiO2", "Na2O", "CaO", "B2O3"]
SMALL = {"hgb_params": {"max_iter": 60}, "nn_params": {"epochs": 60, "hidden": 32}}


def glass_like(n=300, seed=0):
    """Three smooth properties of 4-oxide compositions; each row measures ~1–2 of them."""
    rng = np.random.default_rng(seed)
    X = np.round(rng.dirichlet([5, 2, 1.5, 1.5], n) * 100, 2)
    f = X / 100
    nd = 1.46 + 0.25 * f[:, 1] + 0.35 * f[:, 2] + 0.05 * f[:, 3]
    tg = 1400 * f[:, 0] ** 2 - 900 * f[:, 1] + 300 * f[:, 2] + 300
    abbe = 90 - 400 * (nd - 1.46) + rng.normal(0, 0.5, n)
    Y = np.column_stack([nd + rng.normal(0, 0.003, n), tg + rng.normal(0, 8, n), abbe])
    Y[rng.random((n, 3)) < 0.4] = np.nan
    Y[np.isnan(Y).all(axis=1), 0] = nd[np.isnan(Y).all(axis=1)]
    return X, Y


@pytest.fixture(scope="module")
def fitted():
    X, Y = glass_like()
    m = PropertyModel(COMPS, ["nd", "Tg", "abbe"], kind="multitask", n_members=2, **SMALL)
    return X, Y, m.fit(X[:240], Y[:240])


def test_fit_predict_shapes_blend_and_student_t(fitted):
    X, Y, m = fitted
    mean, std = m.predict(X[240:], return_std=True)
    assert mean.shape == std.shape == (60, 3) and np.all(std > 0)
    assert m.intervals_ == "student-t" and len(m.tail_df_) == 3
    assert all(0.0 <= w <= 1.0 for w in m.blend_)
    for j in range(3):
        ok = np.isfinite(Y[240:, j])
        assert regression_metrics(Y[240:, j][ok], mean[ok, j])["r2"] > 0.8, j
    lo, hi = m.predict_interval(X[240:], 0.95)
    np.testing.assert_allclose(hi - lo, 2 * norm.ppf(0.975) * std, rtol=1e-9)
    lo68, hi68 = m.predict_interval(X[240:], 0.68)
    assert np.all(hi68 - lo68 < hi - lo)
    with pytest.raises(ConfigError, match="level"):
        m.predict_interval(X[:2], 1.5)


def test_save_load_round_trip_without_pickle(fitted, tmp_path):
    X, _, m = fitted
    path = tmp_path / "mt.npz"
    m.save(path)
    with zipfile.ZipFile(path) as zf:  # plain .npy arrays only; np.load refuses pickles
        assert all(name.endswith(".npy") for name in zf.namelist())
    with np.load(path, allow_pickle=False) as npz:
        assert any(k.startswith("mt.0.") for k in npz.files)
        assert npz["mt.quantiles"].shape[1] > 0  # the MLPs' input transform travels as arrays
    back = PropertyModel.load(path)
    for a, b in zip(back.predict(X, return_std=True), m.predict(X, return_std=True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert back.blend_ == m.blend_ and back.tail_df_ == m.tail_df_


def test_masked_targets_do_not_pull_predictions():
    """A property measured on 25 % of rows is still learnt where it is missing (a NaN read as
    0 would drag the masked rows to the property's mean)."""
    X, Y = glass_like(n=400, seed=1)
    f = X / 100
    Y[:, 1] = 1400 * f[:, 0] ** 2 - 900 * f[:, 1] + 300 * f[:, 2] + 300
    hidden = np.random.default_rng(2).random(len(X)) < 0.75
    Yobs = Y.copy()
    Yobs[hidden, 1] = np.nan
    net = MultiTaskNet(n_members=1, seed=0, epochs=150, hidden=32)
    feats = CompositionFeaturizer(COMPS, stats=False).transform(X)
    mean, _ = net.fit(feats, Yobs).predict(feats)
    assert regression_metrics(Y[hidden, 1], mean[hidden, 1])["r2"] > 0.9


def test_aggregate_replicates_means_and_counts():
    F = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    Y = np.array([[1.0, np.nan], [3.0, 5.0], [np.nan, 7.0]])
    Fu, Ym, counts = aggregate_replicates(F, Y)
    order = np.argsort(Fu[:, 0])  # rows: [0, 1] then [1, 0]
    np.testing.assert_array_equal(counts[order], [[0, 1], [2, 1]])
    np.testing.assert_array_equal(Ym[order], [[np.nan, 7.0], [2.0, 5.0]])


def test_loss_and_replicate_hooks_are_what_fit_uses():
    """Variants (benchmarks/glass.py --select mlp-variants) override these two methods only."""
    rng = np.random.default_rng(0)
    F = np.repeat(rng.random((20, 3)), 3, axis=0)  # every composition three times
    Y = (F @ [1.0, -2.0, 0.5])[:, None] + rng.normal(0, 0.1, (60, 1))
    Y[::3] += 50.0  # one gross replicate per composition

    class Medians(MultiTaskNet):
        def _aggregate(self, F, Y):
            Fu, _, counts = aggregate_replicates(F, Y)
            inv = np.unique(np.round(F, 10), axis=0, return_inverse=True)[1].ravel()
            return Fu, np.array([np.median(Y[inv == g], axis=0) for g in range(len(Fu))]), counts

    class Absolute(MultiTaskNet):
        def _loss(self, residual):
            return residual.abs()

    default = MultiTaskNet(1, 0, epochs=30).fit(F, Y).predict(F)[0]
    medians = Medians(1, 0, epochs=30).fit(F, Y).predict(F)[0]
    absolute = Absolute(1, 0, epochs=30).fit(F, Y).predict(F)[0]
    assert np.mean(default) > 10.0  # the means carry the gross replicates
    assert np.mean(medians) < 1.0  # the medians do not
    assert not np.allclose(absolute, default, atol=1e-3)


@pytest.mark.parametrize(("df", "heavy"), [(3.0, True), (np.inf, False)])
def test_student_t_calibration_covers_heavy_tailed_residuals(df, heavy):
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.2, 2.0, 6000)
    scale = np.sqrt((1.5 * spread) ** 2 + 0.3**2)
    noise = rng.standard_t(df, 6000) if heavy else rng.normal(size=6000)
    resid = scale * noise
    a, b, nu = fit_student_t_calibration(resid[:2000], spread[:2000])
    assert abs(a - 1.5) < 0.3 and (nu < 6 if heavy else nu > 20), (a, b, nu)
    s = np.sqrt((a * spread[2000:]) ** 2 + b**2) * gaussian_equivalent_factor(nu)
    coverage = np.mean(np.abs(resid[2000:]) <= 1.96 * s)
    assert 0.93 <= coverage <= 0.97
    # heteroscedastic: the interval follows the spread instead of one width for all rows
    small, big = spread[2000:] < 0.5, spread[2000:] > 1.7
    assert np.median(s[big]) > 3 * np.median(s[small])


def test_unknown_options_are_one_line_errors():
    X, Y = glass_like(n=40)
    with pytest.raises(ConfigError, match="intervals"):
        PropertyModel(COMPS, kind="multitask", intervals="cauchy").fit(X, Y)
    with pytest.raises(ConfigError, match="nn_params"):
        PropertyModel(COMPS, kind="multitask", nn_params={"width": 3}).fit(X, Y)
    with pytest.raises(ConfigError, match="inputs must be one of"):
        PropertyModel(COMPS, kind="multitask", nn_params={"inputs": "rank"}).fit(X, Y)


@pytest.mark.parametrize("inputs", ["quantile", "standard"])
def test_quantile_inputs_make_the_mlps_blind_to_monotone_feature_rescaling(inputs):
    """With normal-score inputs only each feature's ranks matter: cubing a (positive) feature
    leaves the predictions unchanged, while plain standardisation sees a different input."""
    X, Y = glass_like(n=200, seed=3)
    F = CompositionFeaturizer(COMPS, stats=False).transform(X) + 0.01
    cubed = F.copy()
    cubed[:, 0] = cubed[:, 0] ** 3
    kw = dict(n_members=1, seed=0, epochs=5, hidden=8, inputs=inputs)
    plain = MultiTaskNet(**kw).fit(F, Y).predict(F)[0]
    rescaled = MultiTaskNet(**kw).fit(cubed, Y).predict(cubed)[0]
    same = np.allclose(plain, rescaled, rtol=1e-5, atol=1e-6 * np.abs(plain).max())
    assert same == (inputs == "quantile")


def test_models_saved_with_standardised_inputs_still_load(tmp_path):
    X, Y = glass_like(n=120, seed=4)
    kw = {**SMALL, "nn_params": {**SMALL["nn_params"], "inputs": "standard"}}
    m = PropertyModel(COMPS, ["nd", "Tg", "abbe"], kind="multitask", n_members=1, **kw).fit(X, Y)
    m.save(tmp_path / "std.npz")
    back = PropertyModel.load(tmp_path / "std.npz")
    assert back.models_.net.quantiles_ is None
    np.testing.assert_allclose(back.predict(X), m.predict(X), rtol=1e-6)


CHECKS = [
    "check_no_attributes_set_in_init",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_estimator_cloneable",
    "check_estimators_unfitted",
    "check_fit_idempotent",
    "check_n_features_in",
    "check_regressor_multioutput",
    "check_methods_subset_invariance",
    "check_methods_sample_order_invariance",
    "check_fit_check_is_fitted",
    "check_dict_unchanged",
]


@pytest.mark.parametrize("check", CHECKS)
def test_sklearn_estimator_checks(check):
    est = PropertyModel(
        kind="multitask",
        features="raw",
        n_members=2,
        hgb_params={"max_iter": 10},
        nn_params={"epochs": 3, "hidden": 8},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ec, check)("PropertyModel", est)


def test_cli_fit_predict_with_multitask(tmp_path, capsys):
    import pandas as pd

    X, Y = glass_like(n=120)
    frame = pd.DataFrame(X, columns=COMPS).assign(nd=Y[:, 0], Tg=Y[:, 1])
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "m.npz"
    args = ["design", "fit", "--data", str(tmp_path / "d.csv"), "-p", "nd", "-p", "Tg"]
    assert main([*args, "--model", "multitask", "--members", "2", "--out", str(out)]) == 0
    assert "fitted multitask model" in capsys.readouterr().out
    pred = tmp_path / "p.csv"
    assert main(["design", "predict", "--model", str(out), "--data", str(tmp_path / "d.csv"),
                 "--out", str(pred)]) == 0  # fmt: skip
    p = pd.read_csv(pred)
    assert (p["pred_Tg_std"] > 0).all() and p["pred_nd_mean"].notna().all()


def test_inverse_design_uses_the_student_t_predictive(fitted, tmp_path):
    from scipy.stats import t as student_t

    from matloop.design.inverse import inverse_design
    from matloop.design.space import load_space

    _, _, m = fitted
    (tmp_path / "s.yaml").write_text(
        "total: 100\ncomponents:\n  SiO2: [50, 80]\n  Na2O: [5, 25]\n  CaO: [0, 20]\n"
        "  B2O3: [0, 10]\n"
    )
    table = inverse_design(
        m, load_space(tmp_path / "s.yaml"), {"nd": 1.52}, tolerances={"nd": 0.005},
        n_samples=300, top=3, seed=0,
    )  # fmt: skip
    X = table[COMPS].to_numpy()
    assert np.allclose(X.sum(axis=1), 100) and np.all(X[:, 0] >= 50 - 1e-6)
    mean, scale, nu = m.predict_distribution(X)
    p = student_t.cdf((1.525 - mean[:, 0]) / scale[:, 0], nu[:, 0]) - student_t.cdf(
        (1.515 - mean[:, 0]) / scale[:, 0], nu[:, 0]
    )
    np.testing.assert_allclose(table["p_within_tolerance"], p, rtol=1e-6)
