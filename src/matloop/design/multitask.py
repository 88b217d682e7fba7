"""Multi-task composition → properties model and Student-t interval calibration.

``PropertyModel(kind="multitask")`` (see :mod:`matloop.design.models`) uses
:class:`MultiTaskBlend`: per property, histogram gradient boosting members beside a deep ensemble
of multi-task MLPs (one trunk shared by every property, one linear head per property; trained on
every composition at once with a masked loss, so a composition measured for nd only still
shapes the trunk that predicts Abbe and Tg). Replicates (identical feature rows) are averaged
into one training row weighted by their count (the same squared-error optimum, fewer rows).

A third member, :class:`NearestCompositions`, predicts from the few nearest distinct training
compositions (near-identical glasses reported in other papers), which trees and MLPs interpolate
poorly. The blend weights of the members are chosen per property on the caller's inner validation
split, by mean absolute error (a few gross outliers do not steer it); the raw spread combines the
members' spreads and their disagreement (mixture variance).
:func:`fit_student_t_calibration` then fits σ = sqrt((a·spread)² + b²) and the
degrees of freedom ν of a Student-t predictive, so a few heavy-tailed records do not widen
every interval.
"""

from __future__ import annotations

import numpy as np

from matloop.utils.threads import with_default_torch_threads

#: defaults of the MLP part (``nn_params=`` of PropertyModel overrides them)
MLP_DEFAULTS = {
    "hidden": 256,
    "depth": 3,
    "epochs": 100,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "batch_size": 256,
    "dropout": 0.0,
    "inputs": "quantile",
}
#: how the MLPs see the features: "quantile" = each feature mapped through its empirical CDF on
#: the training rows to a normal score (scikit-learn's QuantileTransformer, :data:`N_QUANTILES`
#: quantiles), then standardised; "standard" = standardised only (models saved before the option
#: existed). Sparse oxide fractions standardise to a few huge values, normal scores do not: on the
#: glass benchmark's inner split the blend's RMSE fell 1.7 % (Tg), 0.7 % (nd), 1.2 % (Abbe); on its
#: grouped 5-fold test the two were level within what five outlying records swing
MLP_INPUTS = ("quantile", "standard")
N_QUANTILES = 200

#: defaults of the boosting part (``hgb_params=`` overrides them): a fixed budget, no early
#: stopping (scikit-learn's automatic early stopping above 10,000 rows holds out a random,
#: ungrouped 10 % and stopped nd far too early on an inner grouped validation split); 600
#: rounds at 0.03 were chosen on the glass benchmark's inner split (``benchmarks/glass.py``).
#: The members see every row (``bootstrap=False``) and differ through column subsampling
#: (``max_features``): on that split bootstrap rows cost a 2-member ensemble 4 % (Tg) and 11 %
#: (nd) of validation RMSE against one member on all rows
HGB_DEFAULTS = {
    "max_iter": 600,
    "learning_rate": 0.03,
    "max_leaf_nodes": 127,
    "min_samples_leaf": 5,
    "l2_regularization": 1.0,
    "max_features": 0.3,
    "bootstrap": False,
    "early_stopping": False,
}


#: defaults of the nearest-composition member (``knn_params=`` overrides them; ``k=0`` leaves
#: it out): ``k`` neighbours among the distinct training compositions measured for the property,
#: weights 1 / (distance + ``eps``); ``space`` "fractions" = Euclidean distance between component
#: fractions, "scaled" = between standardised features. k = 3 in fraction space was chosen on the
#: glass benchmark's inner split (k 3–40, both spaces; ``benchmarks/glass.py --select knn``)
KNN_DEFAULTS = {"k": 3, "space": "fractions", "eps": 1e-3}
KNN_SPACES = ("fractions", "scaled")


def aggregate_replicates(F: np.ndarray, Y: np.ndarray):
    """Identical rows of `F` merged: (unique F, per-property mean of Y, per-property counts)."""
    uniq, inv = np.unique(np.round(F, 10), axis=0, return_inverse=True)
    inv = inv.ravel()
    ok = np.isfinite(Y)
    counts = np.zeros((len(uniq), Y.shape[1]))
    sums = np.zeros_like(counts)
    for j in range(Y.shape[1]):
        np.add.at(counts[:, j], inv[ok[:, j]], 1.0)
        np.add.at(sums[:, j], inv[ok[:, j]], Y[ok[:, j], j])
    Fu = np.zeros((len(uniq), F.shape[1]))
    Fu[inv] = F  # the unrounded features of (one of) the replicates
    means = np.divide(sums, counts, out=np.full_like(sums, np.nan), where=counts > 0)
    return Fu, means, counts


class MultiTaskNet:
    """Deep ensemble of shared-trunk MLPs; masked, replicate-weighted squared error."""

    _PARAMS = ("n_members", "seed", *MLP_DEFAULTS)

    def __init__(self, n_members: int = 3, seed: int = 0, **params):
        self.n_members = n_members
        self.seed = seed
        unknown = set(params) - set(MLP_DEFAULTS)
        if unknown:
            from matloop.errors import ConfigError

            raise ConfigError(
                f"unknown multitask nn_params {sorted(unknown)}; known: {MLP_DEFAULTS}"
            )
        for k, v in {**MLP_DEFAULTS, **params}.items():
            setattr(self, k, v)
        if self.inputs not in MLP_INPUTS:
            from matloop.errors import ConfigError

            raise ConfigError(f"nn_params inputs must be one of {MLP_INPUTS}, got {self.inputs!r}")

    def _net(self, d: int, p: int):
        import torch

        layers, width = [], d
        for _ in range(self.depth):
            layers += [torch.nn.Linear(width, self.hidden), torch.nn.SiLU()]
            if self.dropout:
                layers.append(torch.nn.Dropout(self.dropout))
            width = self.hidden
        layers.append(torch.nn.Linear(width, p))  # row j = the head of property j
        return torch.nn.Sequential(*layers)

    @with_default_torch_threads
    def fit(self, F: np.ndarray, Y: np.ndarray) -> MultiTaskNet:
        import torch

        self.quantiles_ = None
        if self.inputs == "quantile":
            from sklearn.preprocessing import QuantileTransformer

            qt = QuantileTransformer(n_quantiles=min(N_QUANTILES, len(F)), subsample=None)
            self.quantiles_ = qt.fit(F).quantiles_
        Fu, Ym, counts = self._aggregate(self._scores(F), Y)
        self.x_mu = Fu.mean(axis=0)
        self.x_sd = Fu.std(axis=0)
        self.x_sd[self.x_sd < 1e-12] = 1.0
        self.y_mu = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in Ym.T])
        self.y_sd = np.array([np.nanstd(c) if np.isfinite(c).sum() > 1 else 1.0 for c in Ym.T])
        self.y_sd[~(self.y_sd > 0)] = 1.0
        # per property: weights = replicate counts, mean 1 over the rows that have it
        present = counts > 0
        w = counts / np.maximum(counts.sum(axis=0), 1.0) * present.sum(axis=0)
        Xt = torch.tensor((Fu - self.x_mu) / self.x_sd, dtype=torch.float32)
        Yt = torch.tensor(np.nan_to_num((Ym - self.y_mu) / self.y_sd), dtype=torch.float32)
        Wt = torch.tensor(w, dtype=torch.float32)
        self.nets = [self._train_member(m, Xt, Yt, Wt) for m in range(self.n_members)]
        return self

    def _scores(self, F: np.ndarray) -> np.ndarray:
        """Features as the MLPs see them before standardising: scikit-learn's normal-output
        quantile transform fitted on the training rows ("quantile"), or `F` itself."""
        if self.quantiles_ is None:
            return F
        from sklearn.preprocessing import QuantileTransformer

        qt = QuantileTransformer(n_quantiles=len(self.quantiles_), output_distribution="normal")
        # the fitted state is the quantile table alone: set from arrays, never unpickled
        qt.quantiles_, qt.references_ = self.quantiles_, np.linspace(0, 1, len(self.quantiles_))
        qt.n_features_in_ = self.quantiles_.shape[1]
        return qt.transform(F)

    def _aggregate(self, F: np.ndarray, Y: np.ndarray):
        """Training rows: replicates merged by :func:`aggregate_replicates` (a variants hook)."""
        return aggregate_replicates(F, Y)

    def _loss(self, residual):
        """Per-element loss of standardised residuals: squared error (a hook for variants)."""
        return residual**2

    def _train_member(self, m: int, Xt, Yt, Wt):
        import torch

        torch.manual_seed(self.seed + m)
        net = self._net(Xt.shape[1], Yt.shape[1])
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        n, bs = len(Xt), self.batch_size
        steps = self.epochs * ((n + bs - 1) // bs)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        gen = torch.Generator().manual_seed(self.seed + m)
        net.train()
        for _ in range(self.epochs):
            perm = torch.randperm(n, generator=gen)
            for i in range(0, n, bs):
                b = perm[i : i + bs]
                wb = Wt[b]
                loss = self._loss(net(Xt[b]) - Yt[b]) * wb
                per_task = loss.sum(0) / (wb > 0).sum(0).clamp_min(1)
                opt.zero_grad()
                per_task.sum().backward()
                opt.step()
                sched.step()
        net.eval()
        return net

    @with_default_torch_threads
    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(member mean, member std), rows × properties, in property units."""
        import torch

        Xt = torch.tensor((self._scores(F) - self.x_mu) / self.x_sd, dtype=torch.float32)
        with torch.no_grad():
            outs = np.stack([net(Xt).numpy() for net in self.nets]).astype(float)
        outs = outs * self.y_sd + self.y_mu
        return outs.mean(axis=0), outs.std(axis=0)

    def to_data(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able parameters, arrays): the fitted ensemble as plain data."""
        from matloop.utils.safe_io import nets_to_arrays

        arrays = {"mt.x_mu": self.x_mu, "mt.x_sd": self.x_sd}
        arrays.update({"mt.y_mu": self.y_mu, "mt.y_sd": self.y_sd})
        arrays.update(nets_to_arrays(self.nets, "mt"))
        if self.quantiles_ is not None:
            arrays["mt.quantiles"] = self.quantiles_
        return {k: getattr(self, k) for k in self._PARAMS}, arrays

    @classmethod
    def from_data(cls, params: dict, arrays: dict[str, np.ndarray]) -> MultiTaskNet:
        from matloop.utils.safe_io import nets_from_arrays

        self = cls(**{"inputs": "standard", **params})  # files before the option: standard
        for key in ("x_mu", "x_sd", "y_mu", "y_sd"):
            setattr(self, key, np.asarray(arrays[f"mt.{key}"], float))
        q = arrays.get("mt.quantiles")
        self.quantiles_ = None if q is None else np.asarray(q, float)
        d, p = len(self.x_mu), len(self.y_mu)
        self.nets = nets_from_arrays(arrays, "mt", self.n_members, lambda: self._net(d, p))
        return self


class NearestCompositions:
    """Per property, the distance-weighted mean of the ``k`` nearest training compositions.

    Boosted trees and MLPs interpolate poorly between near-identical compositions reported in
    different papers; this member predicts from them directly. Replicates are averaged first, so
    the neighbours are distinct compositions. Spread = the weighted SD of the neighbours' values
    (property units). The fitted state is plain arrays (the search tree is rebuilt on load).
    """

    _PARAMS = ("n_fractions", *KNN_DEFAULTS)

    def __init__(self, n_fractions: int, **params):
        self.n_fractions = int(n_fractions)
        for key, value in knn_settings(params).items():
            setattr(self, key, value)

    def _space(self, F: np.ndarray) -> np.ndarray:
        if self.space == "fractions":
            return np.asarray(F[:, : self.n_fractions], float)
        return (F - self.z_mu) / self.z_sd

    def fit(self, F: np.ndarray, Y: np.ndarray) -> NearestCompositions:
        Fu, self.Y_, _ = aggregate_replicates(F, Y)
        self.z_mu, self.z_sd = Fu.mean(axis=0), Fu.std(axis=0)
        self.z_sd[self.z_sd < 1e-12] = 1.0
        self.Z_ = self._space(Fu)
        return self._build()

    def _build(self) -> NearestCompositions:
        """One search tree per property over the compositions measured for it."""
        from sklearn.neighbors import NearestNeighbors

        self._nn = []
        for j in range(self.Y_.shape[1]):
            ok = np.flatnonzero(np.isfinite(self.Y_[:, j]))
            nn = NearestNeighbors(n_neighbors=min(self.k, len(ok))).fit(self.Z_[ok])
            self._nn.append((ok, nn))
        return self

    def predict(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weighted mean, weighted SD of the neighbours), rows × properties."""
        Zq = self._space(np.asarray(F, float))
        mean = np.full((len(Zq), self.Y_.shape[1]), np.nan)
        spread = np.full_like(mean, np.nan)
        for j, (ok, nn) in enumerate(self._nn):
            dist, idx = nn.kneighbors(Zq)
            w = 1.0 / (dist + self.eps)
            w /= w.sum(axis=1, keepdims=True)
            y = self.Y_[ok[idx], j]
            mean[:, j] = (w * y).sum(axis=1)
            spread[:, j] = np.sqrt((w * (y - mean[:, [j]]) ** 2).sum(axis=1))
        return mean, spread

    def to_data(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able parameters, arrays)."""
        arrays = {"knn.Z": self.Z_, "knn.Y": self.Y_, "knn.z_mu": self.z_mu, "knn.z_sd": self.z_sd}
        return {k: getattr(self, k) for k in self._PARAMS}, arrays

    @classmethod
    def from_data(cls, params: dict, arrays: dict[str, np.ndarray]) -> NearestCompositions:
        self = cls(**params)
        self.Z_, self.Y_ = np.asarray(arrays["knn.Z"], float), np.asarray(arrays["knn.Y"], float)
        self.z_mu = np.asarray(arrays["knn.z_mu"], float)
        self.z_sd = np.asarray(arrays["knn.z_sd"], float)
        return self._build()


def knn_settings(params: dict | None) -> dict:
    """The nearest-composition member's settings: :data:`KNN_DEFAULTS` updated by `params`,
    validated (one clear line for an unknown key or a bad value)."""
    from matloop.errors import ConfigError

    unknown = sorted(set(params or {}) - set(KNN_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown multitask knn_params {unknown}; known: {KNN_DEFAULTS}")
    settings = {**KNN_DEFAULTS, **(params or {})}
    check_knn_params(**settings)
    return settings


def check_knn_params(k, space, eps) -> None:
    """One clear line for a bad nearest-composition setting."""
    from matloop.errors import ConfigError

    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
        raise ConfigError(f"knn_params k must be an integer >= 0 (0 = no kNN member), got {k!r}")
    if space not in KNN_SPACES:
        raise ConfigError(f"knn_params space must be one of {KNN_SPACES}, got {space!r}")
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ConfigError(f"knn_params eps must be a number > 0, got {eps!r}")


class MultiTaskBlend:
    """Per property: bagged boosting (``trees``), the shared MLP ensemble (``net``) and, if
    given, the nearest-composition member (``knn``), blended.

    ``weights[j]`` is the boosting weight of property j, ``knn_weights[j]`` the kNN weight; the
    rest goes to the MLP ensemble.
    """

    knn = None  # blends saved before the kNN member existed have none
    knn_weights = None

    def __init__(self, trees: list, net: MultiTaskNet, weights=None, knn=None, knn_weights=None):
        self.trees = trees
        self.net = net
        self.knn = knn
        p = len(trees)
        self.weights = np.full(p, 0.5) if weights is None else np.asarray(weights, float)
        if knn is not None:
            self.knn_weights = (
                np.zeros(p) if knn_weights is None else np.asarray(knn_weights, float)
            )

    def predict_parts(self, F):
        """((mean, spread) of boosting, MLPs[, kNN]), each rows × properties."""
        outs = [t.predict(F) for t in self.trees]
        parts = [(np.column_stack([o[0] for o in outs]), np.column_stack([o[1] for o in outs]))]
        parts.append(self.net.predict(F))
        if self.knn is not None:
            parts.append(self.knn.predict(F))
        return parts

    @staticmethod
    def combine(parts, w, wk=None):
        """Blended mean and the mixture spread (the members' spreads plus their disagreement);
        `w` boosting weights, `wk` kNN weights (per property), the rest the MLPs'."""
        w = np.asarray(w, float)
        ws = [w, 1.0 - w]
        if len(parts) == 3:
            wk = np.zeros_like(w) if wk is None else np.asarray(wk, float)
            ws = [w, 1.0 - w - wk, wk]
        mean = sum(wi * m for wi, (m, _) in zip(ws, parts, strict=True))
        var = sum(wi * (s**2 + (m - mean) ** 2) for wi, (m, s) in zip(ws, parts, strict=True))
        return mean, np.sqrt(var)

    def choose_weights(
        self, parts, Y: np.ndarray, step: float = 0.05, criterion: str = "mae"
    ) -> np.ndarray:
        """Per property, the weights on the simplex grid (spacing `step`) with the lowest mean
        absolute (``criterion="mae"``) or squared (``"mse"``) error against `Y`; sets
        ``weights`` (boosting) and ``knn_weights`` and returns ``weights``.

        Absolute error by default: on the glass benchmark's inner split a few heavy-tailed
        records (0.1 % of nd records carry 40 % of the squared error) chose squared-error weights
        that flipped between two halves of the validation rows and generalised worse."""
        if criterion not in ("mae", "mse"):
            from matloop.errors import ConfigError

            raise ConfigError(f"blend criterion must be 'mae' or 'mse', got {criterion!r}")
        power = 1 if criterion == "mae" else 2
        n = int(round(1.0 / step))
        grid = [(i / n, k / n) for i in range(n + 1) for k in range(n + 1 - i)]
        if len(parts) == 2:
            grid = [g for g in grid if g[1] == 0.0]
        means = [m for m, _ in parts]
        best_h, best_k = [], []
        for j in range(Y.shape[1]):
            ok = np.isfinite(Y[:, j])
            if not ok.any():
                best_h.append(0.5)
                best_k.append(0.0)
                continue
            y, mh, mn = Y[ok, j], means[0][ok, j], means[1][ok, j]
            mk = means[2][ok, j] if len(parts) == 3 else 0.0
            err = [
                np.mean(np.abs(y - (h * mh + (1 - h - k) * mn + k * mk)) ** power) for h, k in grid
            ]
            h, k = grid[int(np.argmin(err))]
            best_h.append(h)
            best_k.append(k)
        self.weights = np.array(best_h)
        if len(parts) == 3:
            self.knn_weights = np.array(best_k)
        return self.weights

    def predict(self, F):
        return self.combine(self.predict_parts(F), self.weights, self.knn_weights)


def student_t_nll(resid, spread, a, b, nu) -> float:
    """Mean negative log-likelihood of residuals under t_ν(0, sqrt((a·spread)² + b²))."""
    from scipy.stats import t

    scale = np.sqrt((a * spread) ** 2 + b**2) + 1e-300
    return float(-np.mean(t.logpdf(resid / scale, nu) - np.log(scale)))


def fit_student_t_calibration(
    resid: np.ndarray, spread: np.ndarray, nu_bounds: tuple[float, float] = (2.05, 100.0)
) -> tuple[float, float, float]:
    """(a, b, ν) maximising the Student-t likelihood of `resid` with scale sqrt((a·s)² + b²)."""
    from scipy.optimize import minimize

    resid, spread = np.asarray(resid, float), np.asarray(spread, float)
    unit = float(np.median(np.abs(resid))) + 1e-12
    lo, hi = np.log(nu_bounds[0] - 2.0), np.log(nu_bounds[1] - 2.0)

    def unpack(p):
        nu = 2.0 + np.exp(np.clip(p[2], lo, hi))
        return np.exp(p[0]), np.exp(p[1]) * unit, nu

    def nll(p):
        return student_t_nll(resid, spread, *unpack(p))

    best = None
    for start in ((0.0, -1.0, 1.0), (1.0, -3.0, 0.0), (-2.0, 0.0, 2.5)):
        res = minimize(nll, np.array(start), method="Nelder-Mead", options={"maxiter": 600})
        if best is None or res.fun < best.fun:
            best = res
    a, b, nu = unpack(best.x)
    return float(a), float(b), float(nu)


def gaussian_equivalent_factor(nu, level: float = 0.95) -> np.ndarray:
    """t_ν quantile ÷ normal quantile at `level`: scale × factor = the Gaussian-equivalent σ
    whose central `level` interval (mean ± z·σ) equals the Student-t one."""
    from scipy.stats import norm, t

    q = 0.5 + level / 2
    nu = np.asarray(nu, float)
    return np.where(np.isfinite(nu), t.ppf(q, np.where(np.isfinite(nu), nu, 1.0)), norm.ppf(q)) / (
        norm.ppf(q)
    )
