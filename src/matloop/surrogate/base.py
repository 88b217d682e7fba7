"""Shared pieces of matloop's surrogate estimators: input checks, training domain, extrapolation."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from matloop.errors import DataError


class ExtrapolationWarning(UserWarning):
    """Predictions requested outside the training domain or with a large predicted std."""


def as_2d(X, name: str = "X") -> np.ndarray:
    """X as a float 2-D array (a 1-D input is one feature), checked for finiteness."""
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: values must be numbers ({exc})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array (samples × features), got {arr.ndim}-D")
    if arr.shape[0] == 0:
        raise DataError(f"{name}: no samples")
    if not np.all(np.isfinite(arr)):
        row = int(np.flatnonzero(~np.all(np.isfinite(arr), axis=1))[0])
        raise DataError(f"{name}: non-finite value in sample {row}")
    return arr


def as_1d(y, n: int, name: str = "y") -> np.ndarray:
    try:
        arr = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: values must be numbers ({exc})") from None
    if arr.size != n:
        raise DataError(f"{name}: {arr.size} targets for {n} samples")
    if not np.all(np.isfinite(arr)):
        first = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise DataError(f"{name}: non-finite target at sample {first}")
    return arr


def dependent_inputs(X, names: list[str] | None = None) -> str | None:
    """A one-line reason why the input columns of `X` cannot be separated by a linear model, or
    None: a column with one value in every row, or columns that are linearly dependent (most
    often composition fractions or percentages that sum to a constant). Only judged with more
    samples than columns; with fewer, any columns are dependent and the sample count is at fault.
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2:
        return None
    n, p = X.shape
    labels = [repr(str(c)) for c in names] if names else [str(j + 1) for j in range(p)]
    scale = np.abs(X).max(axis=0)
    sd = X.std(axis=0)
    for j in range(p):
        if sd[j] <= 1e-12 * max(scale[j], 1e-300):
            return (
                f"input column {labels[j]} has the same value ({X[0, j]:g}) in every row, so "
                "its effect cannot be fitted; drop it"
            )
    if p < 2 or n <= p:
        return None
    z = (X - X.mean(axis=0)) / sd
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    if s[-1] > s[0] * max(n, p) * np.finfo(float).eps * 1e3:
        return None
    weight = np.abs(vt[-1])
    involved = np.flatnonzero(weight > 1e-6 * weight.max())
    which = ", ".join(labels[j] for j in involved)
    total = X[:, involved].sum(axis=1)
    if np.ptp(total) <= 1e-9 * max(np.abs(total).max(), 1e-300):
        why = f"they sum to {total[0]:g} in every row (fractions of a whole)"
    else:
        why = "one is a fixed linear combination of the others"
    return (
        f"input columns {which} are linearly dependent: {why}, so their separate effects cannot be "
        f"fitted; drop one of them (e.g. column {labels[involved[-1]]})"
    )


class SurrogateBase(RegressorMixin, BaseEstimator):
    """scikit-learn regressor with ``predict(X, return_std=True)`` and extrapolation flags.

    Subclasses implement ``_fit(X, y)`` and ``_predict(X) -> (mean, std)``. The training domain is
    the per-feature [min, max] box widened by ``domain_margin`` × range on each side; a point is
    flagged when it lies outside it or its std exceeds ``std_threshold`` (same units as y).
    """

    def _set_domain(self, X: np.ndarray) -> None:
        self.n_features_in_ = X.shape[1]
        self.x_min_ = X.min(axis=0)
        self.x_max_ = X.max(axis=0)

    def fit(self, X, y):
        X = as_2d(X)
        y = as_1d(y, X.shape[0])
        self._set_domain(X)
        self._fit(X, y)
        return self

    def _check_X(self, X) -> np.ndarray:
        check_is_fitted(self, "x_min_")
        X = as_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise DataError(
                f"X has {X.shape[1]} feature(s) but the model was fitted on {self.n_features_in_}"
            )
        return X

    def outside_domain(self, X) -> np.ndarray:
        """Boolean per row: True where any feature lies outside the (widened) training box."""
        X = self._check_X(X)
        width = np.where(self.x_max_ > self.x_min_, self.x_max_ - self.x_min_, 0.0)
        margin = getattr(self, "domain_margin", 0.0) * width
        lo, hi = self.x_min_ - margin, self.x_max_ + margin
        return np.any((X < lo) | (X > hi), axis=1)

    def extrapolation_flags(self, X, std=None) -> np.ndarray:
        """True per row where the prediction is an extrapolation (domain or std threshold)."""
        flags = self.outside_domain(X)
        threshold = getattr(self, "std_threshold", None)
        if threshold is not None:
            if std is None:
                _, std = self._predict(self._check_X(X))
            flags = flags | (np.asarray(std) > threshold)
        return flags

    def predict(self, X, return_std: bool = False):
        """Mean prediction; with ``return_std=True`` also the predictive std (1σ, units of y).

        Warns (:class:`ExtrapolationWarning`) when rows are outside the training domain or above
        ``std_threshold``.
        """
        X = self._check_X(X)
        mean, std = self._predict(X)
        flags = self.extrapolation_flags(X, std=std)
        if np.any(flags) and getattr(self, "warn_extrapolation", True):
            lo = ", ".join(f"{a:.4g}" for a in self.x_min_)
            hi = ", ".join(f"{b:.4g}" for b in self.x_max_)
            warnings.warn(
                f"{int(flags.sum())} of {len(flags)} prediction(s) are extrapolations (outside "
                f"the training range [{lo}] – [{hi}]"
                + (
                    f" or std > {self.std_threshold:g}"
                    if getattr(self, "std_threshold", None) is not None
                    else ""
                )
                + "); treat them with caution",
                ExtrapolationWarning,
                stacklevel=2,
            )
        return (mean, std) if return_std else mean

    def predict_with_flags(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, std, extrapolation flag) per row, without issuing a warning."""
        X = self._check_X(X)
        mean, std = self._predict(X)
        return mean, std, self.extrapolation_flags(X, std=std)
