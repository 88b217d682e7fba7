"""Regression metrics with uncertainty: R², RMSE, MAE and prediction-interval coverage."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split


def interval_coverage(y_true, mean, std, level: float = 0.95) -> float:
    """Fraction of `y_true` inside the central `level` Gaussian interval mean ± z·std."""
    z = norm.ppf(0.5 + level / 2)
    y, m, s = (np.asarray(a, dtype=float).ravel() for a in (y_true, mean, std))
    return float(np.mean(np.abs(y - m) <= z * s))


def regression_metrics(y_true, y_pred, std=None, level: float = 0.95) -> dict[str, float]:
    """R², RMSE, MAE, max |error| and, with `std`, the coverage of the `level` interval."""
    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    out = {
        "n": int(y.size),
        "r2": float(r2_score(y, p)) if y.size > 1 else float("nan"),
        "rmse": float(np.sqrt(mean_squared_error(y, p))),
        "mae": float(mean_absolute_error(y, p)),
        "max_abs_error": float(np.max(np.abs(y - p))),
    }
    if std is not None:
        out["coverage"] = interval_coverage(y, p, std, level)
        out["coverage_level"] = level
        out["mean_std"] = float(np.mean(std))
    return out


def holdout_evaluate(model, X, y, test_size=0.2, random_state: int | None = 42, level=0.95):
    """Fit a clone of `model` on a random split; return (fitted model, metrics on the test part)."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, np.asarray(y, dtype=float), test_size=test_size, random_state=random_state
    )
    fitted = clone(model).fit(X_tr, y_tr)
    mean, std = (
        fitted.predict_with_flags(X_te)[:2]
        if hasattr(fitted, "predict_with_flags")
        else fitted.predict(X_te, return_std=True)
    )
    return fitted, regression_metrics(y_te, mean, std, level)
