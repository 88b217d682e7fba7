"""Composition → several properties at once, each prediction with an uncertainty.

:class:`PropertyModel` follows the scikit-learn API: ``fit(X, Y)`` with X the component
amounts (rows × components) and Y the properties (rows × properties, NaN where a property was
not measured), ``predict(X, return_std=True)`` → (mean, std), both rows × properties.

Kinds (``kind=``):

* ``"gp"`` — Gaussian process per property, Matern-5/2 kernel with one length scale per
  feature (ARD) + white noise (scikit-learn); at most ``gp_max_train`` rows per property
  (a random subset beyond that, with a warning: exact GPs scale as n³);
* ``"rf"`` / ``"et"`` — random forest / extra trees; spread = std over the trees;
* ``"hgb"`` — bagged histogram gradient boosting (``n_members`` bootstrap members); spread over
  members;
* ``"nn"`` — deep ensemble of multi-output MLPs (torch) with a Gaussian likelihood head, trained
  on all properties at once with a mask for missing values;
* ``"multitask"`` — per property, bagged gradient boosting blended with a deep ensemble of
  shared-trunk multi-task MLPs and a distance-weighted nearest-composition (kNN) member
  (:mod:`matloop.design.multitask`; ``knn_params={"k": 0}`` leaves the kNN out); the blend
  weights are chosen on the inner validation split, the spread is the mixture spread of the
  members.

Uncertainty calibration (``calibrate=True``): the model is first fitted on an inner training
part (grouped by identical composition when ``groups`` is given) and
σ² = (a·spread)² + b² is fitted by maximum likelihood on the inner validation part; then the
model is refitted on all rows. The test data of an outer CV are never used.

Intervals (``intervals=``): ``"gaussian"`` (normal predictive, the default for every kind but
multitask) or ``"student-t"`` (default for multitask): the scale and the degrees of freedom ν
of a Student-t predictive are fitted together, so heavy-tailed records do not widen every
interval. ``predict(X, return_std=True)`` then returns the Gaussian-equivalent σ at 95 %
(mean ± 1.96·σ is the exact 95 % t interval); :meth:`PropertyModel.predict_interval` gives
exact t intervals at any level.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from matloop.compositions.features import CompositionFeaturizer
from matloop.errors import ConfigError, DataError, ModelFileError
from matloop.utils.safe_io import nets_from_arrays, nets_to_arrays
from matloop.utils.threads import with_default_torch_threads

MODEL_KINDS = ("gp", "rf", "et", "hgb", "nn", "multitask")
INTERVALS = ("gaussian", "student-t")
_FORMAT = "matloop.design.PropertyModel"
_FORMAT_VERSION = 2  # 2: JSON + arrays (.npz); 1 was a pickle and is refused
FEATURES = ("stats", "glass", "fractions", "raw")


class _Scaler:
    def fit(self, X):
        self.mu = X.mean(axis=0)
        self.sd = X.std(axis=0)
        self.sd[self.sd < 1e-12] = 1.0
        return self

    def transform(self, X):
        return (X - self.mu) / self.sd


def _fit_sigma_calibration(resid: np.ndarray, spread: np.ndarray) -> tuple[float, float]:
    """(a, b) maximising the Gaussian likelihood of residuals with σ² = (a·spread)² + b²."""
    from scipy.optimize import minimize

    r2 = resid**2
    s2 = spread**2
    scale = np.sqrt(np.mean(r2)) + 1e-12

    def nll(p):
        a2, b2 = np.exp(2 * p[0]), np.exp(2 * p[1]) * scale**2
        var = a2 * s2 + b2 + 1e-300
        return 0.5 * np.mean(np.log(var) + r2 / var)

    best = None
    for a0, b0 in ((0.0, -1.0), (1.0, -3.0), (-2.0, 0.0)):
        res = minimize(
            nll,
            np.array([a0, b0]),
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-8, "maxiter": 400},
        )
        if best is None or res.fun < best.fun:
            best = res
    return float(np.exp(best.x[0])), float(np.exp(best.x[1]) * scale)


class _SingleProperty:
    """One property, tree/GP kinds: mean and raw spread."""

    def __init__(
        self,
        kind: str,
        seed: int,
        n_members: int,
        n_estimators: int,
        gp_max_train: int,
        hgb_params: dict | None,
    ):
        self.kind = kind
        self.seed = seed
        self.n_members = n_members
        self.n_estimators = n_estimators
        self.gp_max_train = gp_max_train
        self.hgb_params = hgb_params or {}

    def fit(self, X, y):
        rng = np.random.default_rng(self.seed)
        if self.kind in ("rf", "et"):
            from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

            cls = RandomForestRegressor if self.kind == "rf" else ExtraTreesRegressor
            self.est = cls(
                n_estimators=self.n_estimators,
                max_features=0.5 if self.kind == "et" else 1 / 3,
                min_samples_leaf=1,
                bootstrap=True,
                n_jobs=1,
                random_state=self.seed,
            ).fit(X, y)
        elif self.kind == "hgb":
            from sklearn.ensemble import HistGradientBoostingRegressor

            params = dict(
                max_iter=600,
                learning_rate=0.08,
                max_leaf_nodes=63,
                min_samples_leaf=10,
                l2_regularization=1.0,
            )
            params.update(self.hgb_params)
            # bootstrap=False: every member sees every row and the members differ only through
            # max_features (column subsampling) and their seeds
            bootstrap = params.pop("bootstrap", True) and self.n_members > 1
            self.members = []
            for m in range(self.n_members):
                idx = rng.integers(0, len(y), len(y)) if bootstrap else np.arange(len(y))
                est = HistGradientBoostingRegressor(random_state=self.seed + m, **params)
                self.members.append(est.fit(X[idx], y[idx]))
        elif self.kind == "gp":
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

            if len(y) > self.gp_max_train:
                warnings.warn(
                    f"GP: using a random {self.gp_max_train} of {len(y)} rows (exact GP cost "
                    "grows as n³); use kind 'hgb' or 'rf' for large tables",
                    stacklevel=3,
                )
                sel = rng.choice(len(y), self.gp_max_train, replace=False)
                X, y = X[sel], y[sel]
            self.scaler = _Scaler().fit(X)
            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
                length_scale=np.ones(X.shape[1]), length_scale_bounds=(1e-2, 1e3), nu=2.5
            ) + WhiteKernel(1e-2, (1e-6, 1.0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.est = GaussianProcessRegressor(
                    kernel, normalize_y=True, n_restarts_optimizer=1, random_state=self.seed
                ).fit(self.scaler.transform(X), y)
        else:  # pragma: no cover - checked by PropertyModel
            raise ConfigError(f"unknown kind {self.kind!r}")
        return self

    def predict(self, X):
        if self.kind in ("rf", "et"):
            per_tree = np.stack([t.predict(X) for t in self.est.estimators_])
            return per_tree.mean(axis=0), per_tree.std(axis=0)
        if self.kind == "hgb":
            per = np.stack([m.predict(X) for m in self.members])
            return per.mean(axis=0), per.std(axis=0)
        mean, std = self.est.predict(self.scaler.transform(X), return_std=True)
        return mean, std


class _NNEnsemble:
    """Deep ensemble of MLPs, all properties at once, masked Gaussian NLL."""

    def __init__(
        self,
        n_members: int,
        seed: int,
        hidden: int = 128,
        epochs: int = 300,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        batch_size: int = 256,
    ):
        self.n_members, self.seed = n_members, seed
        self.hidden, self.epochs, self.lr = hidden, epochs, lr
        self.weight_decay, self.batch_size = weight_decay, batch_size

    @with_default_torch_threads
    def fit(self, X, Y):
        import torch

        self.xs = _Scaler().fit(X)
        self.y_mu = np.nanmean(Y, axis=0)
        self.y_sd = np.nanstd(Y, axis=0)
        self.y_sd[~(self.y_sd > 0)] = 1.0
        Xt = torch.tensor(self.xs.transform(X), dtype=torch.float32)
        Yn = (Y - self.y_mu) / self.y_sd
        M = torch.tensor(np.isfinite(Yn), dtype=torch.float32)
        Yt = torch.tensor(np.nan_to_num(Yn), dtype=torch.float32)
        p, d = Y.shape[1], X.shape[1]
        self.nets = []
        for m in range(self.n_members):
            torch.manual_seed(self.seed + m)
            net = self._net(d, p)
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.epochs)
            n = len(Xt)
            g = torch.Generator().manual_seed(self.seed + m)
            for _ in range(self.epochs):
                perm = torch.randperm(n, generator=g)
                for i in range(0, n, self.batch_size):
                    b = perm[i : i + self.batch_size]
                    out = net(Xt[b])
                    mu, logv = out[:, :p], out[:, p:].clamp(-10, 5)
                    nll = 0.5 * (logv + (Yt[b] - mu) ** 2 / logv.exp()) * M[b]
                    loss = nll.sum() / M[b].sum().clamp_min(1.0)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                sched.step()
            net.eval()
            self.nets.append(net)
        return self

    def _net(self, d: int, p: int):
        import torch

        return torch.nn.Sequential(
            torch.nn.Linear(d, self.hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(self.hidden, self.hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(self.hidden, 2 * p),
        )

    _PARAMS = ("n_members", "seed", "hidden", "epochs", "lr", "weight_decay", "batch_size")

    def to_data(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able parameters, arrays) describing the fitted ensemble: no pickled modules."""
        arrays = {
            "nn.x_mu": self.xs.mu,
            "nn.x_sd": self.xs.sd,
            "nn.y_mu": self.y_mu,
            "nn.y_sd": self.y_sd,
        }
        arrays.update(nets_to_arrays(self.nets, "nn"))
        return {k: getattr(self, k) for k in self._PARAMS}, arrays

    @classmethod
    def from_data(cls, params: dict, arrays: dict[str, np.ndarray]) -> _NNEnsemble:

        self = cls(**params)
        self.xs = _Scaler()
        self.xs.mu, self.xs.sd = arrays["nn.x_mu"], arrays["nn.x_sd"]
        self.y_mu, self.y_sd = arrays["nn.y_mu"], arrays["nn.y_sd"]
        d, p = len(self.xs.mu), len(self.y_mu)
        self.nets = nets_from_arrays(arrays, "nn", self.n_members, lambda: self._net(d, p))
        return self

    def predict(self, X):
        import torch

        Xt = torch.tensor(self.xs.transform(X), dtype=torch.float32)
        with torch.no_grad():
            outs = [net(Xt).numpy() for net in self.nets]
        p = len(self.y_mu)
        mus = np.stack([o[:, :p] for o in outs])
        vars_ = np.stack([np.exp(np.clip(o[:, p:], -10, 5)) for o in outs])
        mean = mus.mean(axis=0)
        var = vars_.mean(axis=0) + mus.var(axis=0)
        return mean * self.y_sd + self.y_mu, np.sqrt(var) * self.y_sd


#: ensemble members when ``n_members=None``: the multi-task model's as benchmarked
#: (benchmarks/glass.py: 2 boosting members and 2 MLPs), 5 for the others
DEFAULT_MEMBERS = {"multitask": 2}


class PropertyModel(RegressorMixin, BaseEstimator):
    """Composition → properties with uncertainty (see module docstring); a scikit-learn estimator.

    Constructor arguments are stored untouched (``get_params``/``set_params``/``clone`` work);
    everything learnt by :meth:`fit` ends in an underscore. ``components`` names the columns of
    X (chemical formulas, needed for ``features="stats"``); ``features="glass"`` adds the
    oxide-glass structure descriptors of :data:`matloop.compositions.features.GLASS_FEATURES`
    (former/modifier fractions, NBO/T, field strength …); ``features="raw"`` uses the columns
    as given (e.g. process parameters). ``properties`` names the columns of Y (default y0, y1 …).
    ``progress=True`` shows a bar over the members being fitted (stderr; the CLI's default).
    """

    blend_knn_ = None  # models saved before the kNN member existed blend without it

    def __init__(
        self,
        components: list[str] | None = None,
        properties: list[str] | None = None,
        kind: str = "hgb",
        *,
        features: str = "stats",
        calibrate: bool = True,
        n_members: int | None = None,
        n_estimators: int = 200,
        gp_max_train: int = 1500,
        hgb_params: dict | None = None,
        nn_params: dict | None = None,
        knn_params: dict | None = None,
        seed: int = 0,
        n_threads: int = 1,
        search: list[dict] | None = None,
        intervals: str | None = None,
        progress: bool = False,
    ):
        self.components = components
        self.properties = properties
        self.kind = kind
        self.features = features
        self.calibrate = calibrate
        self.n_members = n_members
        self.n_estimators = n_estimators
        self.gp_max_train = gp_max_train
        self.hgb_params = hgb_params
        self.nn_params = nn_params
        self.knn_params = knn_params
        self.seed = seed
        self.n_threads = n_threads
        self.search = search
        self.intervals = intervals
        self.progress = progress

    # ----------------------------------------------------------------- fitting
    def _validate_params(self, n_cols: int, n_props: int) -> None:
        if self.kind not in MODEL_KINDS:
            raise ConfigError(f"unknown model kind {self.kind!r}; choose from {MODEL_KINDS}")
        if self.n_members is not None and self.n_members < 1:
            raise ConfigError(f"n_members must be >= 1, got {self.n_members}")
        if self.intervals is not None and self.intervals not in INTERVALS:
            raise ConfigError(f"intervals must be one of {INTERVALS}, got {self.intervals!r}")
        if self.kind == "multitask":
            from matloop.design.multitask import MultiTaskNet

            MultiTaskNet(1, 0, **(self.nn_params or {}))  # unknown keys or bad values: one line
            self._knn_settings()
        if self.features not in FEATURES:
            raise ConfigError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.components is None and self.features != "raw":
            raise ConfigError(f"features={self.features!r} needs component names (components=)")
        comps = (
            list(self.components)
            if self.components is not None
            else [f"x{i}" for i in range(n_cols)]
        )
        props = (
            list(self.properties)
            if self.properties is not None
            else [f"y{j}" for j in range(n_props)]
        )
        for what, names in (("component", comps), ("property", props)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ConfigError(f"{what} name(s) {repeated} given more than once")
        self.components_, self.properties_ = comps, props
        self.featurizer_ = (
            None
            if self.features == "raw"
            else CompositionFeaturizer(
                comps, stats=self.features != "fractions", glass=self.features == "glass"
            )
        )

    def _features(self, X):
        return X if self.featurizer_ is None else self.featurizer_.transform(X)

    def _check(self, X, Y=None):
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            raise DataError(
                f"X must be 2-D (rows × {len(self.components_)} components); "
                "Reshape your data with X.reshape(1, -1) for a single row"
            )
        if X.ndim != 2 or X.shape[1] != len(self.components_):
            raise DataError(
                f"expected {len(self.components_)} component columns {self.components_}, "
                f"got shape {X.shape}"
            )
        if not np.all(np.isfinite(X)):
            raise DataError("X contains NaN or infinite values")
        if Y is None:
            return X
        Y = np.asarray(Y, dtype=float)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.shape != (len(X), len(self.properties_)):
            raise DataError(f"expected Y of shape {(len(X), len(self.properties_))}, got {Y.shape}")
        return X, Y

    def _fit_raw(self, F, Y):
        if self.kind == "nn":
            nets = _NNEnsemble(self.n_members_, self.seed, **self.nn_params_).fit(F, Y)
            self._tick("networks")
            return nets
        if self.kind == "multitask":
            return self._fit_multitask(F, Y)
        return self._fit_per_property(F, Y, self.kind)

    def _knn_settings(self) -> dict:
        """The kNN member's settings (defaults + ``knn_params``), validated."""
        from matloop.design.multitask import knn_settings

        return knn_settings(self.knn_params)

    def _fit_multitask(self, F, Y):
        from matloop.design.multitask import (
            HGB_DEFAULTS,
            MultiTaskBlend,
            MultiTaskNet,
            NearestCompositions,
        )

        # a fixed budget of ~one boosting round per 20 rows (100–600) unless max_iter is given
        budget = {"max_iter": int(np.clip(len(F) // 20, 100, HGB_DEFAULTS["max_iter"]))}
        params = {**HGB_DEFAULTS, **budget, **self.hgb_params_}
        trees = self._fit_per_property(F, Y, "hgb", params)
        net = MultiTaskNet(self.n_members_, self.seed, **self.nn_params_).fit(F, Y)
        self._tick("multi-task MLPs")
        knn, settings = None, self._knn_settings()
        if settings["k"] > 0:
            n_frac = F.shape[1] if self.featurizer_ is None else len(self.components_)
            knn = NearestCompositions(n_frac, **settings).fit(F, Y)
        self._tick("nearest compositions")
        return MultiTaskBlend(trees, net, getattr(self, "blend_", None), knn, self.blend_knn_)

    def _fit_per_property(self, F, Y, kind, hgb_params=None):
        models = []
        for j, name in enumerate(self.properties_):
            ok = np.isfinite(Y[:, j])
            if ok.sum() < 2:
                raise DataError(f"property {name!r} has {int(ok.sum())} measured rows (need >= 2)")
            models.append(
                _SingleProperty(
                    kind,
                    self.seed + 17 * j,
                    self.n_members_,
                    self.n_estimators_,
                    self.gp_max_train,
                    self.hgb_params_ if hgb_params is None else hgb_params,
                ).fit(F[ok], Y[ok, j])
            )
            self._tick(f"{kind} {name}")
        return models

    def _predict_raw(self, models, F):
        if self.kind in ("nn", "multitask"):
            return models.predict(F)
        outs = [m.predict(F) for m in models]
        return np.column_stack([o[0] for o in outs]), np.column_stack([o[1] for o in outs])

    def fit(self, X, Y, groups=None) -> PropertyModel:
        """Fit on compositions `X` (rows × components) and properties `Y` (NaN = missing);
        `groups` (e.g. identical compositions) keep the inner calibration split grouped."""
        from threadpoolctl import threadpool_limits

        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or len(X) < 2:
            raise DataError(
                f"X must be a 2-D table with >= 2 rows, got n_samples = {len(X)} (shape {X.shape})"
            )
        Y_arr = np.asarray(Y, dtype=float)
        self._validate_params(X.shape[1], 1 if Y_arr.ndim == 1 else Y_arr.shape[1])
        self.y_1d_ = Y_arr.ndim == 1
        # OpenMP/BLAS oversubscription on small shared machines costs far more than it gains
        with threadpool_limits(self.n_threads), self._progress_bar(len(X), Y_arr):
            return self._fit(X, Y_arr, groups)

    @contextlib.contextmanager
    def _progress_bar(self, n_rows: int, Y: np.ndarray):
        """A bar over the members fitted (inner calibration fits, then the final fit) while
        `progress` is on; members tick it through :meth:`_tick`."""
        from tqdm.auto import tqdm

        n_props = 1 if Y.ndim == 1 else Y.shape[1]
        per_fit = {"nn": 1, "multitask": n_props + 2}.get(self.kind, n_props)
        inner = (
            len(self.search or [None]) if (self.calibrate or self.search) and n_rows >= 10 else 0
        )
        self._bar = tqdm(
            total=(inner + 1) * per_fit,
            desc=f"fitting {self.kind}",
            unit="fit",
            disable=not self.progress,
            leave=False,
        )
        try:
            yield
        finally:
            self._bar.close()
            del self._bar

    def _tick(self, what: str) -> None:
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.set_postfix_str(what, refresh=False)
            bar.update()

    def _fit(self, X, Y, groups=None) -> PropertyModel:
        from matloop.design.splits import inner_split

        X, Y = self._check(X, Y)
        self.n_features_in_ = X.shape[1]
        self.intervals_ = self.intervals or (
            "student-t" if self.kind == "multitask" else "gaussian"
        )
        F = self._features(X)
        self.hgb_params_ = dict(self.hgb_params or {})
        self.nn_params_ = dict(self.nn_params or {})
        self.n_members_ = self.n_members or DEFAULT_MEMBERS.get(self.kind, 5)
        self.n_estimators_ = self.n_estimators
        self.calibration_ = [(1.0, 0.0)] * len(self.properties_)
        self.tail_df_ = [float("inf")] * len(self.properties_)
        self.selected_ = None
        if self.kind == "multitask":
            self.blend_ = self.blend_knn_ = None
        if (self.calibrate or self.search) and len(X) >= 10:
            tr, va = inner_split(len(X), groups, 0.2, self.seed)
            best = None
            for cand in self.search or [None]:
                if cand is not None:
                    self._apply_candidate(cand)
                inner = self._fit_raw(F[tr], Y[tr])
                if self.kind == "multitask":  # blend weights: inner validation part only
                    parts = inner.predict_parts(F[va])
                    inner.choose_weights(parts, Y[va])
                    mean, spread = inner.combine(parts, inner.weights, inner.knn_weights)
                    weights = (inner.weights, inner.knn_weights)
                else:
                    mean, spread = self._predict_raw(inner, F[va])
                    weights = None
                score = 0.0
                for j in range(len(self.properties_)):
                    ok = np.isfinite(Y[va, j])
                    sd = np.nanstd(Y[tr, j]) or 1.0
                    score += np.sqrt(np.mean((Y[va, j][ok] - mean[ok, j]) ** 2)) / sd
                if best is None or score < best[0]:
                    best = (score, cand, mean, spread, weights)
            _, cand, mean, spread, weights = best
            if cand is not None:
                self._apply_candidate(cand)
                self.selected_ = dict(cand)
            if weights is not None:
                self.blend_ = [float(w) for w in weights[0]]
                if weights[1] is not None:
                    self.blend_knn_ = [float(w) for w in weights[1]]
            if self.calibrate:
                fits = [
                    self._calibrate(Y[va, j], mean[:, j], spread[:, j], self.intervals_)
                    for j in range(len(self.properties_))
                ]
                self.calibration_ = [f[:2] for f in fits]
                self.tail_df_ = [f[2] for f in fits]
        self.models_ = self._fit_raw(F, Y)
        self.n_train_ = np.isfinite(Y).sum(axis=0).tolist()
        return self

    @staticmethod
    def _calibrate(y, mean, spread, intervals: str) -> tuple[float, float, float]:
        """(a, b, ν) on the inner validation rows; ν = inf for a Gaussian predictive."""
        ok = np.isfinite(y)
        if ok.sum() < 10:
            return (1.0, 0.0, float("inf"))
        if intervals == "student-t":
            from matloop.design.multitask import fit_student_t_calibration

            return fit_student_t_calibration(y[ok] - mean[ok], spread[ok])
        return (*_fit_sigma_calibration(y[ok] - mean[ok], spread[ok]), float("inf"))

    def _apply_candidate(self, cand: dict) -> None:
        """Apply one hyper-parameter candidate to the fitted copies (constructor untouched)."""
        for k, v in cand.items():
            if k in ("n_estimators", "n_members"):
                setattr(self, f"{k}_", v)
            elif self.kind == "nn":
                self.nn_params_ = {**self.nn_params_, k: v}
            else:
                self.hgb_params_ = {**self.hgb_params_, k: v}

    def predict(self, X, return_std: bool = False):
        """Means (rows × properties; 1-D if fitted on 1-D y) and, with `return_std`, calibrated
        standard deviations of the same shape (for Student-t intervals the Gaussian-equivalent σ
        at 95 %: mean ± 1.96·σ is the exact t interval; see :meth:`predict_interval`)."""
        mean, scale = self._predict_scale(X)
        std = scale * self._tail_factor(0.95)
        if self.y_1d_:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    def _predict_scale(self, X):
        """Means and calibrated predictive scales (σ, or the t scale), rows × properties."""
        from sklearn.utils.validation import check_is_fitted
        from threadpoolctl import threadpool_limits

        check_is_fitted(self, "models_")
        X = self._check(X)
        with threadpool_limits(self.n_threads):
            mean, spread = self._predict_raw(self.models_, self._features(X))
        a = np.array([c[0] for c in self.calibration_])
        b = np.array([c[1] for c in self.calibration_])
        return mean, np.sqrt((a * spread) ** 2 + b**2)

    def _tail_factor(self, level: float) -> np.ndarray:
        from matloop.design.multitask import gaussian_equivalent_factor

        # models saved before tail_df_ existed are Gaussian
        nu = getattr(self, "tail_df_", [float("inf")] * len(self.properties_))
        return gaussian_equivalent_factor(nu, level)

    def predict_distribution(self, X):
        """(mean, scale, ν), rows × properties: the predictive is mean + scale·t_ν (ν = inf:
        Gaussian with σ = scale)."""
        mean, scale = self._predict_scale(X)
        nu = np.broadcast_to(np.asarray(getattr(self, "tail_df_", np.inf), float), mean.shape)
        return mean, scale, nu

    def predict_interval(self, X, level: float = 0.95):
        """(lower, upper) of the central `level` predictive interval (Student-t where fitted),
        rows × properties (1-D if fitted on 1-D y)."""
        from scipy.stats import norm

        if not 0.0 < level < 1.0:
            raise ConfigError(f"level must be in (0, 1), got {level}")
        mean, scale = self._predict_scale(X)
        half = scale * self._tail_factor(level) * norm.ppf(0.5 + level / 2)
        lo, hi = mean - half, mean + half
        if self.y_1d_:
            lo, hi = lo[:, 0], hi[:, 0]
        return lo, hi

    # ----------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        """Write the fitted model as plain data (JSON + arrays in an .npz, no pickle) atomically."""
        import inspect
        import json

        from matloop.utils.safe_io import ESTIMATOR_KEY, estimator_to_array, save_bundle

        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        params = {n: getattr(self, n) for n in names}
        fitted, arrays = {}, {}
        for name, value in vars(self).items():
            if not name.endswith("_") or name.startswith("_") or name == "models_":
                continue
            try:
                fitted[name] = json.loads(json.dumps(value))
            except TypeError:
                arrays[f"fitted.{name}"] = estimator_to_array(value)
        meta = {"params": params, "fitted": fitted}
        if isinstance(self.models_, _NNEnsemble):
            meta["nn"], nn_arrays = self.models_.to_data()
            arrays.update(nn_arrays)
        elif self.kind == "multitask":
            meta["multitask"], mt_arrays = self.models_.net.to_data()
            arrays.update(mt_arrays)
            if self.models_.knn is not None:
                meta["knn"], knn_arrays = self.models_.knn.to_data()
                arrays.update(knn_arrays)
            arrays[ESTIMATOR_KEY] = estimator_to_array(self.models_.trees)
        else:
            arrays[ESTIMATOR_KEY] = estimator_to_array(self.models_)
        save_bundle(path, _FORMAT, _FORMAT_VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> PropertyModel:
        """Load a model written by :meth:`save`; anything else (e.g. a pickle) is refused."""
        from matloop.utils.safe_io import ESTIMATOR_KEY, estimator_from_array, load_bundle

        meta, arrays = load_bundle(path, _FORMAT, _FORMAT_VERSION, "property model")
        try:
            model = cls(**meta["params"])
            for name, value in meta["fitted"].items():
                setattr(model, name, value)
            for key, value in arrays.items():
                if key.startswith("fitted."):
                    setattr(model, key[len("fitted.") :], estimator_from_array(value, str(path)))
            if "nn" in meta:
                model.models_ = _NNEnsemble.from_data(meta["nn"], arrays)
            elif "multitask" in meta:
                from matloop.design.multitask import (
                    MultiTaskBlend,
                    MultiTaskNet,
                    NearestCompositions,
                )

                knn = meta.get("knn")
                model.models_ = MultiTaskBlend(
                    estimator_from_array(arrays[ESTIMATOR_KEY], str(path)),
                    MultiTaskNet.from_data(meta["multitask"], arrays),
                    model.blend_,
                    None if knn is None else NearestCompositions.from_data(knn, arrays),
                    model.blend_knn_,
                )
            else:
                model.models_ = estimator_from_array(arrays[ESTIMATOR_KEY], str(path))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            if isinstance(exc, ModelFileError):
                raise
            raise ModelFileError(f"{path}: incomplete property model file ({exc})") from None
        return model
