"""Metrics and plots for structure → property models (one place for the subpackage).

Regression: MAE, RMSE, R² (in the target's unit), 95 % interval coverage, top-k recall and
enrichment (ranking). Classification: accuracy, F1, ROC-AUC. Plots: parity, ROC, calibration
(matplotlib, Agg backend).
"""

from __future__ import annotations

import os

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score, roc_curve

from matloop.surrogate.metrics import interval_coverage, regression_metrics


def top_k_recall(y_true, y_pred, k: int, largest: bool = False) -> float:
    """Fraction of the true top-`k` (smallest unless `largest`) found in the predicted top-`k`."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    k = min(k, len(y))
    sign = -1.0 if largest else 1.0
    true_top = set(np.argsort(sign * y, kind="stable")[:k])
    pred_top = set(np.argsort(sign * p, kind="stable")[:k])
    return len(true_top & pred_top) / k if k else float("nan")


def enrichment(y_true, y_pred, k: int, fraction: float = 0.1, largest: bool = False) -> float:
    """Hit rate of the predicted top-`k` over the base rate (hit: in the true best `fraction`)."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    k = min(k, len(y))
    n_best = max(1, int(round(fraction * len(y))))
    sign = -1.0 if largest else 1.0
    best = np.zeros(len(y), bool)
    best[np.argsort(sign * y, kind="stable")[:n_best]] = True
    hits = best[np.argsort(sign * p, kind="stable")[:k]].mean()
    return float(hits / (n_best / len(y)))


def regression_report(y_true, y_pred, std=None, k: int | None = None, largest=False) -> dict:
    """``mae``, ``rmse``, ``r2``, ``coverage_95`` (with `std`), ``top_k_recall``, ``enrichment``."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    base = regression_metrics(y, p)
    out = {"n": base["n"], "mae": base["mae"], "rmse": base["rmse"], "r2": base["r2"]}
    if std is not None:
        s = np.asarray(std, float)
        out["coverage_95"] = interval_coverage(y, p, s, 0.95)
        out["mean_std"] = float(np.mean(s))
    k = k or max(1, len(y) // 10)
    out["k"] = int(k)
    out["top_k_recall"] = top_k_recall(y, p, k, largest)
    out["enrichment"] = enrichment(y, p, k, 0.1, largest)
    return out


def classification_report(y_true: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """``accuracy``, ``balanced_accuracy``, ``f1`` (binary: of the last class; else macro) and
    ``roc_auc`` (binary: of the last class; else the one-vs-rest mean over classes present)."""
    y = np.asarray(y_true, int)
    pred = np.asarray(proba).argmax(1)
    binary = len(classes) == 2
    out = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)])),
        "f1": float(f1_score(y, pred, average="binary" if binary else "macro", zero_division=0)),
        "positive_class": classes[-1] if binary else None,
    }
    out["roc_auc"] = _roc_auc(y, np.asarray(proba), binary)
    return out


def _roc_auc(y: np.ndarray, proba: np.ndarray, binary: bool) -> float:
    """ROC-AUC of the positive (last) class, or the one-vs-rest mean over the classes present
    in `y` (a class with no member has no AUC); NaN when `y` holds one class only."""
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if binary:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(np.mean([roc_auc_score(y == c, proba[:, c]) for c in present]))


def ood_precision(flags: np.ndarray, errors: np.ndarray, threshold: float) -> dict:
    """How often an OOD flag marks a large error (|error| above `threshold`)."""
    f = np.asarray(flags, bool)
    bad = np.asarray(errors, float) > threshold
    return {
        "flag_rate": float(f.mean()),
        "precision": float(bad[f].mean()) if f.any() else float("nan"),
        "base_rate": float(bad.mean()),
        "mae_flagged": float(np.mean(errors[f])) if f.any() else float("nan"),
        "mae_unflagged": float(np.mean(errors[~f])) if (~f).any() else float("nan"),
    }


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(4.5, 4.5), layout="constrained")


def _save(fig, path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    from matloop.utils.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_parity(y_true, y_pred, std, path, label: str = "") -> None:
    """Parity plot with ±1.96σ error bars (σ calibrated)."""
    fig, ax = _figure()
    y, p = np.asarray(y_true), np.asarray(y_pred)
    if std is not None:
        ax.errorbar(y, p, yerr=1.96 * np.asarray(std), fmt="none", alpha=0.2, lw=0.6)
    ax.scatter(y, p, s=8)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel=f"reference {label}", ylabel=f"predicted {label}", title="parity")
    _save(fig, path)


def plot_calibration(y_true, y_pred, std, path) -> None:
    """Observed vs expected coverage of central Gaussian intervals (regression)."""
    from scipy.stats import norm

    levels = np.linspace(0.05, 0.95, 19)
    z = np.abs(np.asarray(y_true) - np.asarray(y_pred)) / np.maximum(np.asarray(std), 1e-12)
    observed = [np.mean(z <= norm.ppf(0.5 + q / 2)) for q in levels]
    fig, ax = _figure()
    ax.plot(levels, observed, "o-")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="expected coverage", ylabel="observed coverage", title="calibration")
    _save(fig, path)


def plot_roc(y_true, proba, classes, path) -> None:
    """ROC curve of the positive (last) class, or one-vs-rest per class."""
    fig, ax = _figure()
    y = np.asarray(y_true, int)
    cols = [1] if len(classes) == 2 else range(len(classes))
    for c in cols:
        if len(np.unique(y == c)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y == c, proba[:, c])
        ax.plot(fpr, tpr, label=str(classes[c]))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    if ax.get_legend_handles_labels()[0]:  # the diagonal has no label
        ax.legend()
    _save(fig, path)


def plot_reliability(y_true, proba, path, n_bins: int = 10) -> None:
    """Reliability diagram of the predicted-class probability (classification calibration)."""
    y = np.asarray(y_true, int)
    conf = proba.max(1)
    correct = proba.argmax(1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges) - 1, 0, n_bins - 1)
    xs = [conf[idx == b].mean() for b in range(n_bins) if (idx == b).any()]
    ys = [correct[idx == b].mean() for b in range(n_bins) if (idx == b).any()]
    fig, ax = _figure()
    ax.plot(xs, ys, "o-")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed accuracy", title="calibration")
    _save(fig, path)
