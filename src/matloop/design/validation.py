"""Cross-validation of :class:`~matloop.design.models.PropertyModel` with honest splits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from matloop.design.metrics import regression_metrics, topk_recall
from matloop.design.splits import composition_groups, family_groups, make_splits


def cross_validate(
    make_model: Callable[[], object],
    X: np.ndarray,
    Y: np.ndarray,
    components: list[str],
    properties: list[str],
    *,
    split: str = "group",
    n_splits: int = 5,
    groups: np.ndarray | None = None,
    times: np.ndarray | None = None,
    top_fraction: float = 0.05,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Out-of-fold predictions and metrics per property.

    `make_model()` returns an unfitted model with ``fit(X, Y, groups=...)`` and
    ``predict(X, return_std=True)``. Inner calibration inside the model uses only the training
    fold (grouped by identical composition). Returns ``{"split", "n_splits", "properties":
    {name: metrics}, "folds": [...], "oof_mean", "oof_std"}``; top-k recall (k = `top_fraction`
    of each test fold, at least 1) treats larger values as better.
    """
    X = np.asarray(X, float)
    Y = np.asarray(Y, float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if groups is None:
        groups = composition_groups(X, components)
    families = family_groups(X, components) if split == "family" else None
    oof_mean = np.full(Y.shape, np.nan)
    oof_std = np.full(Y.shape, np.nan)
    folds = []
    recalls: dict[str, list[float]] = {p: [] for p in properties}
    for k, (tr, te) in enumerate(
        make_splits(
            split,
            len(X),
            n_splits=n_splits,
            groups=groups,
            families=families,
            times=times,
            seed=seed,
        )
    ):
        if split in ("group", "family"):
            assert not set(groups[tr]) & set(groups[te]), "grouped split straddles"
        model = make_model()
        model.fit(X[tr], Y[tr], groups=groups[tr])
        mean, std = model.predict(X[te], return_std=True)
        oof_mean[te], oof_std[te] = mean, std
        fold = {"fold": k, "n_train": int(len(tr)), "n_test": int(len(te))}
        for j, p in enumerate(properties):
            m = regression_metrics(Y[te, j], mean[:, j], std[:, j])
            ok = np.isfinite(Y[te, j])
            if ok.sum():
                kk = max(1, int(round(top_fraction * ok.sum())))
                m["topk_recall"] = topk_recall(Y[te, j], mean[:, j], kk)
                recalls[p].append(m["topk_recall"])
            fold[p] = m
        folds.append(fold)
        if progress:
            txt = ", ".join(f"{p} RMSE {fold[p].get('rmse', float('nan')):.4g}" for p in properties)
            progress(f"fold {k + 1}: {txt}")
    result = {"split": split, "n_splits": len(folds), "properties": {}, "folds": folds}
    for j, p in enumerate(properties):
        m = regression_metrics(Y[:, j], oof_mean[:, j], oof_std[:, j])
        m["topk_recall"] = float(np.mean(recalls[p])) if recalls[p] else float("nan")
        m["rmse_fold_sd"] = float(np.std([f[p].get("rmse", np.nan) for f in folds]))
        result["properties"][p] = m
    result["oof_mean"] = oof_mean
    result["oof_std"] = oof_std
    return result
