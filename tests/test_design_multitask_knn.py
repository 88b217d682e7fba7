"""The nearest-composition (kNN) member of the multi-task blend: predictions, blend weights,
files (with and without the member) and settings errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matloop.design.models import PropertyModel
from matloop.design.multitask import MultiTaskBlend, NearestCompositions
from matloop.errors import ConfigError
from matloop.utils.safe_io import META_KEY

COMPS = ["SiO2", "Na2O", "CaO", "B2O3"]
SMALL = {"hgb_params": {"max_iter": 40}, "nn_params": {"epochs": 30, "hidden": 16}}


def test_weighted_mean_and_spread_of_the_nearest_distinct_compositions():
    F = np.array([[1.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    Y = np.array([[10.0], [14.0], [20.0], [99.0]])  # rows 0 and 1: replicates, mean 12
    knn = NearestCompositions(2, k=2, eps=1e-3).fit(F, Y)
    assert knn.Z_.shape == (3, 2)  # replicates merged before the neighbour search
    mean, spread = knn.predict(np.array([[0.95, 0.05]]))
    d = np.hypot(0.05, 0.05)  # equidistant from (1, 0) and (0.9, 0.1)
    w = np.array([1.0, 1.0]) / (d + 1e-3)
    w /= w.sum()
    np.testing.assert_allclose(mean[0, 0], w @ [12.0, 20.0])
    np.testing.assert_allclose(spread[0, 0], 4.0)
    mean, spread = NearestCompositions(2, k=1).fit(F, Y).predict(np.array([[0.1, 0.9]]))
    assert mean[0, 0] == 99.0 and spread[0, 0] == 0.0


def test_missing_values_are_skipped_per_property():
    F = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    Y = np.array([[1.0, np.nan], [np.nan, 7.0], [3.0, 9.0]])
    mean, _ = NearestCompositions(2, k=1).fit(F, Y).predict(np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(mean, [[3.0, 7.0]])  # property 0 never sees row 1


def test_choose_weights_finds_the_member_that_is_right():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 1))
    noise = lambda: (y + rng.normal(0, 1.0, y.shape), np.ones_like(y))  # noqa: E731
    exact = (y.copy(), np.zeros_like(y))
    blend = MultiTaskBlend([None], None, knn=object())
    blend.choose_weights([noise(), noise(), exact], y)
    assert blend.weights[0] == 0.0 and blend.knn_weights[0] == 1.0
    blend.choose_weights([exact, noise(), noise()], y)
    assert blend.weights[0] == 1.0 and blend.knn_weights[0] == 0.0
    mean, spread = MultiTaskBlend.combine([noise(), noise(), exact], [0.0], [1.0])
    np.testing.assert_allclose(mean, y) and np.testing.assert_allclose(spread, 0.0)


def test_choose_weights_is_not_steered_by_a_few_gross_outliers():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(300, 1))
    good = y + rng.normal(0, 0.1, y.shape)  # right on every ordinary record
    poor = y + rng.normal(0, 1.0, y.shape)
    y[:3], good[:3], poor[:3] = 100.0, 0.0, 60.0  # three gross records the poor member "gets"
    blend = MultiTaskBlend([None], None)
    parts = [(good, np.ones_like(y)), (poor, np.ones_like(y))]
    assert blend.choose_weights(parts, y)[0] >= 0.8  # absolute error, the default
    assert blend.choose_weights(parts, y, criterion="mse")[0] == 0.0  # the three records rule
    with pytest.raises(ConfigError, match="criterion"):
        blend.choose_weights(parts, y, criterion="huber")


def lookup_table(n=400, seed=0):
    """A property that jumps between neighbouring composition clusters (papers of one glass
    family): smooth models interpolate it poorly, the nearest compositions know it."""
    rng = np.random.default_rng(seed)
    centres = rng.dirichlet([2, 2, 2, 2], 40) * 100
    label = rng.integers(0, 40, n)
    X = np.abs(centres[label] + rng.normal(0, 0.3, (n, 4)))
    X = X / X.sum(axis=1, keepdims=True) * 100
    level = rng.normal(0, 30, 40)
    y = level[label] + 2 * X[:, 0] + rng.normal(0, 1.0, n)
    return X, np.column_stack([y, 0.01 * X[:, 1] + rng.normal(0, 0.01, n)])


def test_knn_member_is_weighted_in_where_local_structure_matters():
    X, Y = lookup_table()
    kw = dict(kind="multitask", n_members=1, features="fractions", **SMALL)
    with_knn = PropertyModel(COMPS, ["rough", "smooth"], knn_params={"k": 3}, **kw)
    with_knn.fit(X[:300], Y[:300])
    without = PropertyModel(COMPS, ["rough", "smooth"], knn_params={"k": 0}, **kw)
    without.fit(X[:300], Y[:300])
    assert without.blend_knn_ is None and without.models_.knn is None
    assert with_knn.blend_knn_[0] >= 0.3, with_knn.blend_knn_
    rmse = [
        np.sqrt(np.mean((m.predict(X[300:])[:, 0] - Y[300:, 0]) ** 2)) for m in (with_knn, without)
    ]
    assert rmse[0] < 0.8 * rmse[1], rmse
    _, std = with_knn.predict(X[300:], return_std=True)
    assert np.all(np.isfinite(std)) and np.all(std > 0)


@pytest.fixture(scope="module")
def knn_model():
    X, Y = lookup_table(n=200, seed=1)
    m = PropertyModel(COMPS, ["a", "b"], kind="multitask", n_members=1, **SMALL)
    return X, m.fit(X, Y)


def test_save_load_keeps_the_knn_member(knn_model, tmp_path):
    X, m = knn_model
    assert m.models_.knn is not None and len(m.blend_knn_) == 2  # on by default
    m.save(tmp_path / "m.npz")
    back = PropertyModel.load(tmp_path / "m.npz")
    for a, b in zip(back.predict(X, return_std=True), m.predict(X, return_std=True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def _strip_knn(src, dst):
    """A file as written before the kNN member existed: no knn parameters, weights or arrays."""
    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if not k.startswith("knn.")}
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    del meta["params"]["knn_params"], meta["fitted"]["blend_knn_"], meta["knn"]
    arrays[META_KEY] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez_compressed(dst, **arrays)


def test_files_from_before_the_knn_member_still_load(knn_model, tmp_path):
    X, m = knn_model
    m.save(tmp_path / "new.npz")
    _strip_knn(tmp_path / "new.npz", tmp_path / "old.npz")
    old = PropertyModel.load(tmp_path / "old.npz")
    assert old.models_.knn is None and old.blend_knn_ is None
    mean, std = old.predict(X, return_std=True)
    parts = m.models_.predict_parts(m._features(X))[:2]
    raw, _ = MultiTaskBlend.combine(parts, m.blend_)  # the two-member blend, as saved
    np.testing.assert_allclose(mean, raw, rtol=1e-6)
    assert np.all(std > 0)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"neighbours": 5}, "knn_params"),
        ({"k": -1}, "k must be"),
        ({"k": 2.5}, "k must be"),
        ({"space": "cosine"}, "space must be"),
        ({"eps": 0}, "eps must be"),
    ],
)
def test_bad_knn_settings_are_one_line_errors(params, match):
    X, Y = lookup_table(n=40)
    with pytest.raises(ConfigError, match=match):
        PropertyModel(COMPS, kind="multitask", knn_params=params, **SMALL).fit(X, Y)


def test_boosting_members_without_bootstrap_differ_through_column_subsampling():
    from matloop.design.models import _SingleProperty

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = X[:, 0] - 2 * X[:, 1] + np.sin(3 * X[:, 2]) + rng.normal(0, 0.1, 300)
    base = {"max_iter": 50, "early_stopping": False}

    def fit(**extra):
        return _SingleProperty("hgb", 0, 3, 0, 0, {**base, **extra}).fit(X, y)

    same = fit(bootstrap=False)  # all rows, all columns: the members are one model thrice
    assert np.all(same.predict(X)[1] < 1e-9)
    sub = fit(bootstrap=False, max_features=0.5)
    assert np.median(sub.predict(X)[1]) > 1e-3
    assert all(m.n_features_in_ == 6 for m in sub.members)
    bagged = fit()  # the default: bootstrap rows
    assert np.median(bagged.predict(X)[1]) > 1e-3


def test_default_members_are_the_benchmarked_ones():
    rng = np.random.default_rng(2)
    X = rng.dirichlet(np.ones(len(COMPS)), size=60)
    Y = (X @ np.array([500.0, 300.0, 700.0, 450.0]))[:, None]
    m = PropertyModel(COMPS, ["Tg"], kind="multitask", **SMALL).fit(X, Y)
    assert m.n_members is None and m.n_members_ == 2 and len(m.models_.net.nets) == 2
    h = PropertyModel(COMPS, ["Tg"], kind="hgb", hgb_params={"max_iter": 20}).fit(X, Y)
    assert h.n_members_ == 5
    with pytest.raises(ConfigError, match="n_members must be >= 1"):
        PropertyModel(COMPS, ["Tg"], kind="hgb", n_members=0).fit(X, Y)
