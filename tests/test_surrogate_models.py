"""matloop.surrogate: poly / GP / ensemble / delta models on real E(V) data (matscipy Si)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_score

from matloop.eos import compute_eos_data
from matloop.errors import ConfigError, DataError, ModelFileError
from matloop.surrogate import (
    BootstrapEnsemble,
    DeltaModel,
    ExtrapolationWarning,
    GPSurrogate,
    PolynomialSurrogate,
    interval_coverage,
    load_surrogate,
    regression_metrics,
    save_surrogate,
)

SI = bulk("Si", "diamond", a=5.431)


@pytest.fixture(scope="module")
def sw():
    """11 training volumes (±6 %) and 41 dense test volumes of Stillinger–Weber Si."""
    v, e = compute_eos_data(SI, "sw", strain=0.06, points=11)
    vt, et = compute_eos_data(SI, "sw", strain=0.06, points=41)
    return v[:, None], e, vt[:, None], et


def _quiet(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return model.predict(X, return_std=True)


@pytest.mark.parametrize(
    "model",
    [
        PolynomialSurrogate(degree=3),
        GPSurrogate(),
        GPSurrogate(kernel="matern52"),
        BootstrapEnsemble(PolynomialSurrogate(degree=3), n_estimators=15),
    ],
    ids=["poly3", "gp-rbf", "gp-matern52", "ensemble"],
)
def test_interpolation_accuracy(sw, model):
    X, y, Xt, yt = sw
    model = clone(model).fit(X, y)
    mean, std = _quiet(model, Xt)
    m = regression_metrics(yt, mean, std)
    assert m["rmse"] < 5e-4 and m["r2"] > 0.999  # energies span ≈ 60 meV
    assert np.all(std >= 0) and std.shape == yt.shape


def test_gp_band_widens_outside_data(sw):
    X, y, _, _ = sw
    gp = GPSurrogate().fit(X, y)
    wide = np.linspace(25, 55, 61)[:, None]
    with pytest.warns(ExtrapolationWarning, match="extrapolations"):
        mean, std = gp.predict(wide, return_std=True)
    inside = (wide[:, 0] >= X.min()) & (wide[:, 0] <= X.max())
    assert std[~inside].max() > 100 * std[inside].max()
    assert std[0] > std[15]  # grows with distance from the data
    _, _, flags = gp.predict_with_flags(wide)
    np.testing.assert_array_equal(flags, ~inside)


def test_std_threshold_and_margin(sw):
    X, y, _, _ = sw
    model = PolynomialSurrogate(degree=3, std_threshold=1e-3, domain_margin=0.1).fit(X, y)
    pad = 0.05 * np.ptp(X)
    _, std, flags = model.predict_with_flags(np.array([[X.min() - pad], [40.0], [30.0]]))
    assert not flags[0]  # inside the 10 % margin, std small
    assert not flags[1]
    assert flags[2] and std[2] > 1e-3


def test_polynomial_coverage_on_noisy_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 40)
    f = lambda t: 1.0 - 2.0 * t + 3.0 * t**2  # noqa: E731
    model = PolynomialSurrogate(degree=2).fit(x[:, None], f(x) + rng.normal(0, 0.1, x.size))
    xt = rng.uniform(-1, 1, 2000)
    yt = f(xt) + rng.normal(0, 0.1, xt.size)
    mean, std, _ = model.predict_with_flags(xt[:, None])
    assert model.noise_std_ == pytest.approx(0.1, rel=0.3)
    assert 0.9 < interval_coverage(yt, mean, std) < 0.99


def test_gp_ard_and_kernels():
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (30, 2))
    y = np.sin(6 * X[:, 0]) + 0.01 * X[:, 1]  # second feature nearly irrelevant
    gp = GPSurrogate(ard=True, noise=1e-3, n_restarts_optimizer=1).fit(X, y)
    ls = gp.kernel_.k1.k2.length_scale
    assert np.shape(ls) == (2,) and ls[1] > 3 * ls[0]
    assert GPSurrogate(kernel="rq", n_restarts_optimizer=0).fit(X, y).predict(X[:3]).shape == (3,)
    with pytest.raises(ConfigError, match="unknown kernel"):
        GPSurrogate(kernel="cosine").fit(X, y)
    with pytest.raises(DataError, match="fitted on 2"):
        gp.predict(np.zeros((2, 3)))


def test_sklearn_compatibility(sw):
    X, y, _, _ = sw
    cv = KFold(n_splits=3, shuffle=True, random_state=0)
    model = PolynomialSurrogate(degree=3, warn_extrapolation=False)
    scores = cross_val_score(model, X, y, cv=cv, scoring="r2")
    assert np.all(scores > 0.99)
    params = GPSurrogate(kernel="matern32", ard=True).get_params()
    assert params["kernel"] == "matern32" and params["ard"] is True


def test_bad_training_input():
    with pytest.raises(DataError, match="only 2 samples"):
        PolynomialSurrogate(degree=2).fit([[1.0], [2.0]], [1.0, 2.0])
    with pytest.raises(DataError, match="non-finite"):
        GPSurrogate().fit([[1.0], [np.nan], [3.0]], [1, 2, 3])
    with pytest.raises(DataError, match="3 targets for 2 samples"):
        GPSurrogate().fit([[1.0], [2.0]], [1, 2, 3])


def test_save_load_roundtrip_and_corruption(sw, tmp_path):
    X, y, Xt, _ = sw
    model = GPSurrogate().fit(X, y)
    path = tmp_path / "gp.joblib"
    save_surrogate(model, path, x_columns=["Volume"], y_column="Energy")
    loaded, info = load_surrogate(path, with_info=True)
    np.testing.assert_array_equal(loaded.predict(Xt), model.predict(Xt))
    assert info["x_columns"] == ["Volume"] and info["format_version"] == 2
    broken = tmp_path / "broken.joblib"
    broken.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        load_surrogate(broken)
    import joblib

    joblib.dump({"something": 1}, tmp_path / "other.joblib")
    with pytest.raises(ModelFileError, match="not a matloop surrogate"):
        load_surrogate(tmp_path / "other.joblib")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_surrogate(tmp_path / "missing.joblib")


def test_delta_learning_beats_accurate_only():
    """Cheap = Stillinger–Weber (21 volumes), accurate = Kumagai (3 volumes), test on 41."""
    vc, ec = compute_eos_data(SI, "sw", strain=0.1, points=21)
    va, ea = compute_eos_data(SI, "kumagai", strain=0.1, points=3)
    vt, et = compute_eos_data(SI, "kumagai", strain=0.1, points=41)
    delta = DeltaModel(
        base=GPSurrogate(n_restarts_optimizer=2), correction=PolynomialSurrogate(degree=1)
    )
    delta.fit(va[:, None], ea, X_base=vc[:, None], y_base=ec)
    mean, std = _quiet(delta, vt[:, None])
    rmse_delta = regression_metrics(et, mean, std)["rmse"]
    rmse_only = {}
    for name, est in {"gp": GPSurrogate(), "poly2": PolynomialSurrogate(degree=2)}.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # poly2 on 3 points interpolates (zero dof)
            est.fit(va[:, None], ea)
        rmse_only[name] = regression_metrics(et, est.predict(vt[:, None]))["rmse"]
    assert rmse_delta < 0.5 * min(rmse_only.values()), (rmse_delta, rmse_only)
    # a prefitted base works too
    base = GPSurrogate(n_restarts_optimizer=2).fit(vc[:, None], ec)
    again = DeltaModel(base=base, correction=PolynomialSurrogate(degree=1)).fit(va[:, None], ea)
    np.testing.assert_allclose(again.predict(vt[:, None]), mean, atol=1e-9)
    with pytest.raises(ConfigError, match="fitted base"):
        DeltaModel(base=GPSurrogate()).fit(va[:, None], ea)
