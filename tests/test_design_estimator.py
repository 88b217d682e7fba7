"""`PropertyModel` is a scikit-learn estimator (checked with sklearn's own estimator checks)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks as ec

from matloop.design.models import PropertyModel
from matloop.errors import ConfigError

# every sklearn check that applies to a multi-output regressor with NaN-tolerant targets;
# left out: check_supervised_y_2d (a 1-column Y is one property, not a mistake) and the
# sample-weight checks (no sample_weight argument)
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
    "check_regressors_train",
    "check_regressor_multioutput",
    "check_fit2d_predict1d",
    "check_estimators_nan_inf",
    "check_methods_subset_invariance",
    "check_methods_sample_order_invariance",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_repr",
    "check_dict_unchanged",
    "check_fit_check_is_fitted",
    "check_regressors_int",
    "check_estimators_dtypes",
    "check_fit2d_1sample",
    "check_fit2d_1feature",
    "check_fit1d",
    "check_estimators_empty_data_messages",
]


@pytest.mark.parametrize("check", CHECKS)
def test_sklearn_estimator_checks(check):
    est = PropertyModel(kind="rf", features="raw", n_estimators=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ec, check)("PropertyModel", est)


def test_params_untouched_by_fit_and_search():
    rng = np.random.default_rng(0)
    X = rng.dirichlet([3, 2, 1], 60) * 100
    Y = np.column_stack([X[:, 0] * 0.01 + rng.normal(0, 0.01, 60), X[:, 1] * 2])
    search = [{"max_leaf_nodes": 7}, {"max_leaf_nodes": 15}]
    m = PropertyModel(
        ["SiO2", "Na2O", "CaO"],
        ["nd", "Tg"],
        kind="hgb",
        n_members=2,
        hgb_params={"max_iter": 30},
        search=search,
    )
    before = m.get_params()
    m.fit(X, Y)
    assert m.get_params() == before and m.hgb_params == {"max_iter": 30}
    assert (
        m.selected_ in search and m.hgb_params_["max_leaf_nodes"] == m.selected_["max_leaf_nodes"]
    )
    assert m.components_ == ["SiO2", "Na2O", "CaO"] and m.n_features_in_ == 3
    c = clone(m)
    assert c.get_params() == before and not hasattr(c, "models_")
    mean, std = m.predict(X[:4], return_std=True)
    assert mean.shape == std.shape == (4, 2) and np.all(std > 0)
    assert m.set_params(kind="nope") is m
    with pytest.raises(ConfigError, match="unknown model kind 'nope'"):
        m.fit(X, Y)
