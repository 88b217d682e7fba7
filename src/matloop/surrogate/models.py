"""Surrogate regressors with predictive uncertainty (scikit-learn estimator API).

All return ``predict(X, return_std=True) -> (mean, std)`` where std is the 1σ predictive standard
deviation of a new observation (model uncertainty plus the fitted noise, unless
``include_noise=False``), in the units of y.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import clone
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from matloop.errors import ConfigError, DataError
from matloop.surrogate.base import SurrogateBase, as_1d, as_2d, dependent_inputs

KERNELS = ("rbf", "matern32", "matern52", "rq")


class PolynomialSurrogate(SurrogateBase):
    """Polynomial (ridge) regression of total `degree` in standardised features.

    The std combines the covariance of the least-squares coefficients with the residual noise
    σ² = SSR/(n − p), the textbook prediction interval of linear regression.
    """

    def __init__(
        self,
        degree: int = 2,
        alpha: float = 0.0,
        include_noise: bool = True,
        domain_margin: float = 0.0,
        std_threshold: float | None = None,
        warn_extrapolation: bool = True,
    ):
        self.degree = degree
        self.alpha = alpha
        self.include_noise = include_noise
        self.domain_margin = domain_margin
        self.std_threshold = std_threshold
        self.warn_extrapolation = warn_extrapolation

    def _features(self, X):
        return self.poly_.transform(self.scaler_.transform(X))

    def _fit(self, X, y):
        if int(self.degree) < 1:
            raise ConfigError(f"degree must be ≥ 1, got {self.degree}")
        self.scaler_ = StandardScaler().fit(X)
        self.poly_ = PolynomialFeatures(degree=int(self.degree), include_bias=True).fit(
            self.scaler_.transform(X)
        )
        phi = self._features(X)
        n, p = phi.shape
        if n < p:
            raise DataError(
                f"a degree-{self.degree} polynomial in {X.shape[1]} feature(s) has {p} "
                f"coefficients but only {n} samples were given"
            )
        rank = int(np.linalg.matrix_rank(phi))
        if rank < p:  # repeated inputs: the coefficients would be set arbitrarily by pinv
            reason = dependent_inputs(X)
            if reason is not None:
                raise DataError(f"a polynomial cannot be fitted: {reason}")
            raise DataError(
                f"a degree-{self.degree} polynomial in {X.shape[1]} feature(s) has {p} "
                f"coefficients but the {n} samples determine only {rank} of them (too few "
                "distinct input values); use a lower degree or more distinct points"
            )
        gram = phi.T @ phi
        reg = self.alpha * np.eye(p)
        reg[0, 0] = 0.0  # never shrink the intercept
        a_inv = np.linalg.pinv(gram + reg)
        self.coef_ = a_inv @ phi.T @ y
        resid = y - phi @ self.coef_
        dof = n - p
        self.noise_std_ = float(np.sqrt(resid @ resid / dof)) if dof > 0 else 0.0
        if dof <= 0:
            warnings.warn(
                f"{n} samples for {p} coefficients: the fit interpolates and its std is zero",
                UserWarning,
                stacklevel=3,
            )
        self.coef_cov_ = self.noise_std_**2 * a_inv @ gram @ a_inv
        return self

    def _predict(self, X):
        phi = self._features(X)
        mean = phi @ self.coef_
        var = np.einsum("ij,jk,ik->i", phi, self.coef_cov_, phi)
        if self.include_noise:
            var = var + self.noise_std_**2
        return mean, np.sqrt(np.clip(var, 0.0, None))


def make_kernel(name: str, n_features: int, ard: bool = False, length_scale_bounds=(1e-2, 1e3)):
    """ConstantKernel × {RBF, Matérn 3/2, Matérn 5/2, RationalQuadratic} on standardised X."""
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, RationalQuadratic

    ls = np.ones(n_features) if ard and n_features > 1 else 1.0
    key = str(name).lower().replace("-", "").replace("_", "")
    if key == "rbf":
        base = RBF(ls, length_scale_bounds)
    elif key in ("matern32", "matern1.5"):
        base = Matern(ls, length_scale_bounds, nu=1.5)
    elif key in ("matern52", "matern2.5", "matern"):
        base = Matern(ls, length_scale_bounds, nu=2.5)
    elif key in ("rq", "rationalquadratic"):
        if ard and n_features > 1:
            raise ConfigError("kernel 'rq' has no ARD form in scikit-learn; use rbf or matern")
        base = RationalQuadratic(1.0, 1.0, length_scale_bounds)
    else:
        raise ConfigError(f"unknown kernel {name!r}; choose one of {', '.join(KERNELS)}")
    return ConstantKernel(1.0, (1e-3, 1e3)) * base


class GPSurrogate(SurrogateBase):
    """Gaussian-process regression (scikit-learn) on standardised X with normalised y.

    `kernel`: ``rbf``, ``matern32``, ``matern52``, ``rq`` or a scikit-learn kernel object;
    `ard`: one length scale per feature; `noise`: ``"fit"``
    (a WhiteKernel fitted by marginal likelihood), a fixed noise std in y units,
    or ``None`` (noise-free apart from a small jitter).
    """

    def __init__(
        self,
        kernel="rbf",
        ard: bool = False,
        noise="fit",
        n_restarts_optimizer: int = 5,
        random_state: int | None = 0,
        include_noise: bool = True,
        domain_margin: float = 0.0,
        std_threshold: float | None = None,
        warn_extrapolation: bool = True,
    ):
        self.kernel = kernel
        self.ard = ard
        self.noise = noise
        self.n_restarts_optimizer = n_restarts_optimizer
        self.random_state = random_state
        self.include_noise = include_noise
        self.domain_margin = domain_margin
        self.std_threshold = std_threshold
        self.warn_extrapolation = warn_extrapolation

    def _fit(self, X, y):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import Kernel, WhiteKernel

        if X.shape[0] < 2:
            raise DataError("a Gaussian process needs at least 2 samples")
        self.scaler_ = StandardScaler().fit(X)
        y_scale = float(np.std(y)) or 1.0
        if isinstance(self.kernel, Kernel):
            kernel = clone(self.kernel)
        else:
            kernel = make_kernel(self.kernel, X.shape[1], self.ard)
        if self.noise == "fit":
            kernel = kernel + WhiteKernel(1e-2, (1e-10, 1.0))
        elif self.noise is not None:
            try:
                level = (float(self.noise) / y_scale) ** 2
            except (TypeError, ValueError):
                raise ConfigError(
                    f"noise must be 'fit', None or a std in y units, got {self.noise!r}"
                ) from None
            kernel = kernel + WhiteKernel(max(level, 1e-12), "fixed")
        self.gp_ = GaussianProcessRegressor(
            kernel=kernel,
            alpha=1e-10,
            normalize_y=True,
            n_restarts_optimizer=self.n_restarts_optimizer,
            random_state=self.random_state,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp_.fit(self.scaler_.transform(X), y)
        self.kernel_ = self.gp_.kernel_
        self.noise_std_ = float(np.sqrt(self._white_level()) * y_scale)
        return self

    def _white_level(self) -> float:
        from sklearn.gaussian_process.kernels import WhiteKernel

        level = 0.0
        stack = [self.gp_.kernel_]
        while stack:
            k = stack.pop()
            if isinstance(k, WhiteKernel):
                level += float(k.noise_level)
            for attr in ("k1", "k2"):
                if hasattr(k, attr):
                    stack.append(getattr(k, attr))
        return level

    def _predict(self, X):
        mean, std = self.gp_.predict(self.scaler_.transform(X), return_std=True)
        if not self.include_noise:
            std = np.sqrt(np.clip(std**2 - self.noise_std_**2, 0.0, None))
        return np.asarray(mean, dtype=float).ravel(), np.asarray(std, dtype=float).ravel()


class BootstrapEnsemble(SurrogateBase):
    """Ensemble of `estimator` clones fitted on bootstrap resamples; std = spread of the members
    combined with the out-of-bag residual noise (``include_noise=True``).

    `estimator` defaults to :class:`PolynomialSurrogate` (degree 2); any regressor works.
    """

    def __init__(
        self,
        estimator=None,
        n_estimators: int = 20,
        random_state: int | None = 0,
        include_noise: bool = True,
        domain_margin: float = 0.0,
        std_threshold: float | None = None,
        warn_extrapolation: bool = True,
    ):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.include_noise = include_noise
        self.domain_margin = domain_margin
        self.std_threshold = std_threshold
        self.warn_extrapolation = warn_extrapolation

    def _member(self):
        est = clone(self.estimator) if self.estimator is not None else PolynomialSurrogate(2)
        if "warn_extrapolation" in est.get_params():
            est.set_params(warn_extrapolation=False)
        return est

    def _fit(self, X, y):
        if int(self.n_estimators) < 2:
            raise ConfigError(f"n_estimators must be ≥ 2, got {self.n_estimators}")
        n = X.shape[0]
        self._check_enough_samples(n, X.shape[1])
        rng = np.random.default_rng(self.random_state)
        self.estimators_ = []
        oob_sum = np.zeros(n)
        oob_cnt = np.zeros(n)
        for _ in range(int(self.n_estimators)):
            for _attempt in range(20):
                idx = rng.integers(0, n, n)
                est = self._member()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        est.fit(X[idx], y[idx])
                    break
                except (DataError, ValueError, np.linalg.LinAlgError):
                    continue
            else:
                try:  # a member that cannot fit even the full data says why in its own words
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        self._member().fit(X, y)
                except DataError as exc:
                    raise DataError(f"ensemble member: {exc}") from exc
                raise DataError(
                    f"could not fit the ensemble member on bootstrap resamples of {n} samples; "
                    "use more data or a simpler estimator"
                )
            self.estimators_.append(est)
            oob = np.setdiff1d(np.arange(n), idx)
            if oob.size:
                oob_sum[oob] += self._member_predict(est, X[oob])
                oob_cnt[oob] += 1
        ok = oob_cnt > 0
        if np.any(ok):
            resid = y[ok] - oob_sum[ok] / oob_cnt[ok]
            self.noise_std_ = float(np.sqrt(np.mean(resid**2)))
        else:  # pragma: no cover - only with a single sample
            self.noise_std_ = 0.0
        return self

    def _check_enough_samples(self, n: int, n_features: int) -> None:
        """Refuse polynomial members with n ≤ p samples (p coefficients): every resample that
        can be fitted holds the same ≤ p points, so all members interpolate them, agree, and
        the band would claim certainty (std ~1e-16). With n = p + 1 the members are nearly all
        leave-one-out interpolants: a spread exists but rests on one spare sample (warning)."""
        member = self._member()
        if not isinstance(member, PolynomialSurrogate) or int(member.degree) < 1:
            return
        from math import comb

        degree = int(member.degree)
        p = comb(degree + n_features, n_features)
        what = f"a bootstrap ensemble of degree-{degree} polynomials in {n_features} feature(s)"
        if n <= p:
            raise DataError(
                f"{what} ({p} coefficients) needs more than {p} samples, got {n}: its members "
                f"would all interpolate the data and its std would be zero; give at least "
                f"{p + 2} samples or use a lower degree"
            )
        if n == p + 1:
            warnings.warn(
                f"{what} ({p} coefficients) on only {n} samples: each member interpolates "
                f"{p} of them, so its std is a rough leave-one-out estimate; give at least "
                f"{p + 2} samples for a meaningful band",
                UserWarning,
                stacklevel=4,
            )

    @staticmethod
    def _member_predict(est, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(est.predict(X), dtype=float).ravel()

    def _predict(self, X):
        preds = np.stack([self._member_predict(e, X) for e in self.estimators_])
        mean = preds.mean(axis=0)
        var = preds.var(axis=0, ddof=1)
        if self.include_noise:
            var = var + self.noise_std_**2
        return mean, np.sqrt(var)


class DeltaModel(SurrogateBase):
    """Delta learning: ``base`` fitted on many cheap labels + ``correction`` on (accurate − base).

    ``fit(X, y, X_base=..., y_base=...)``: X, y are the few accurate points; X_base, y_base the
    cheap ones (omit them when `base` is already fitted). Prediction = base + correction, with
    std² = std_base² + std_correction². The training domain is that of the cheap data.
    """

    def __init__(
        self,
        base=None,
        correction=None,
        domain_margin: float = 0.0,
        std_threshold: float | None = None,
        warn_extrapolation: bool = True,
    ):
        self.base = base
        self.correction = correction
        self.domain_margin = domain_margin
        self.std_threshold = std_threshold
        self.warn_extrapolation = warn_extrapolation

    def fit(self, X, y, X_base=None, y_base=None):
        X = as_2d(X, "X (accurate)")
        y = as_1d(y, X.shape[0], "y (accurate)")
        base = self.base if self.base is not None else GPSurrogate()
        if X_base is not None:
            Xb = as_2d(X_base, "X_base (cheap)")
            yb = as_1d(y_base, Xb.shape[0], "y_base (cheap)")
            self.base_ = clone(base)
            if "warn_extrapolation" in self.base_.get_params():
                self.base_.set_params(warn_extrapolation=False)
            self.base_.fit(Xb, yb)
            self._set_domain(np.vstack([Xb, X]))
        else:
            if not hasattr(base, "predict") or not _is_fitted(base):
                raise ConfigError("DeltaModel: pass X_base/y_base or a fitted base model")
            self.base_ = base
            self._set_domain(X)
        base_mean, _ = _predict_std(self.base_, X)
        corr = self.correction if self.correction is not None else PolynomialSurrogate(degree=1)
        self.correction_ = clone(corr)
        if "warn_extrapolation" in self.correction_.get_params():
            self.correction_.set_params(warn_extrapolation=False)
        self.correction_.fit(X, y - base_mean)
        return self

    def _predict(self, X):
        mb, sb = _predict_std(self.base_, X)
        mc, sc = _predict_std(self.correction_, X)
        return mb + mc, np.sqrt(sb**2 + sc**2)


def _is_fitted(est) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(est)
        return True
    except NotFittedError:
        return False


def _predict_std(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mean, std = est.predict(X, return_std=True)
        except TypeError:
            mean, std = est.predict(X), np.zeros(len(X))
    return np.asarray(mean, dtype=float).ravel(), np.asarray(std, dtype=float).ravel()


def make_surrogate(model: str, degree: int = 2, **kwargs):
    """A surrogate by name: ``poly`` (degree), ``gp`` or ``ensemble`` (of degree-`degree` polys)."""
    key = str(model).strip().lower()
    if key in ("poly", "polynomial"):
        return PolynomialSurrogate(degree=degree, **kwargs)
    if key in ("gp", "gaussian-process"):
        return GPSurrogate(**kwargs)
    if key in ("ensemble", "bootstrap"):
        return BootstrapEnsemble(PolynomialSurrogate(degree=degree), **kwargs)
    raise ConfigError(f"unknown surrogate model {model!r}; choose poly, gp or ensemble")
