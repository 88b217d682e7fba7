"""Regression, uncertainty and ranking metrics for property models."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def regression_metrics(y, mean, std=None, *, level: float = 0.95) -> dict[str, float]:
    """MAE, RMSE, R² and (with `std`) the coverage of the central `level` Gaussian interval and
    the mean negative log-likelihood. NaN targets are ignored."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y, mean = np.asarray(y, float), np.asarray(mean, float)
    ok = np.isfinite(y) & np.isfinite(mean)
    out: dict[str, float] = {"n": int(ok.sum())}
    if ok.sum() == 0:
        return out
    out["mae"] = float(mean_absolute_error(y[ok], mean[ok]))
    out["rmse"] = float(np.sqrt(mean_squared_error(y[ok], mean[ok])))
    out["r2"] = float(r2_score(y[ok], mean[ok])) if ok.sum() > 1 else float("nan")
    if std is not None:
        s = np.maximum(np.asarray(std, float)[ok], 1e-12)
        z = norm.ppf(0.5 + level / 2)
        r = y[ok] - mean[ok]
        out[f"coverage{int(round(level * 100))}"] = float(np.mean(np.abs(r) <= z * s))
        out["nll"] = float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * (r / s) ** 2))
        out["mean_std"] = float(np.mean(s))
    return out


def topk_recall(y, score, k: int, *, maximise: bool = True) -> float:
    """Fraction of the true top-`k` rows (by `y`) that are among the top-`k` by `score`."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    ok = np.isfinite(y) & np.isfinite(score)
    y, score = y[ok], score[ok]
    k = min(k, len(y))
    if k == 0:
        return float("nan")
    sign = 1.0 if maximise else -1.0
    true_top = set(np.argsort(-sign * y, kind="stable")[:k])
    pred_top = set(np.argsort(-sign * score, kind="stable")[:k])
    return len(true_top & pred_top) / k
