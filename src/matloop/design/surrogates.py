"""Surrogate models for Bayesian optimisation (the *model* part of BoTorch's model / acquisition /
optimiser split), shared by pool-based and continuous design.

* :func:`fit_gp` — BoTorch ``SingleTaskGP``: Matérn-5/2 (or RBF) kernel, isotropic or ARD, with
  priors so that two to twenty points do not over-fit (log-normal length-scale prior scaled with
  the dimension, as in BoTorch's defaults, a Gamma prior on the output scale and a log-normal prior
  on the noise), or a known noise variance held fixed; inputs normalised to the unit cube
  (``Normalize``), outputs standardised (``Standardize``). Works from two observations on.
* :class:`ForestSurrogate` — random forest whose trees form an ensemble posterior
  (BoTorch ``EnsembleModel``), so the same acquisition functions and optimisers apply.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from matloop.errors import DataError, FitError

KERNELS = ("matern52", "rbf")
#: the length-scale floor (unit-cube units; BoTorch's own default kernel has it) of the one retry
#: after a failed fit: an unbounded length scale can shrink until the kernel matrix is numerically
#: not positive definite (seen on 199 La-borate glasses, the glass tutorial's BO step, with one
#: torch thread); fits that succeed without it are unchanged
FALLBACK_MIN_LENGTHSCALE = 0.025


def make_covar_module(
    dim: int,
    *,
    ard: bool = True,
    kernel: str = "matern52",
    priors: bool = True,
    bias: bool = False,
    input_warp: bool = False,
    batch_shape=None,
    min_lengthscale: float | None = None,
):
    """GPyTorch covariance module on unit-cube inputs: scale × base kernel (+ constant).

    `input_warp`: each input first goes through a learned Kumaraswamy CDF (as BoTorch's
    ``Warp``, log-normal priors on both concentrations centred on the identity), fitted with
    the kernel. `min_lengthscale`: a lower bound on the length scales (unit-cube units).
    """
    import torch
    from gpytorch.kernels import ConstantKernel, MaternKernel, RBFKernel, ScaleKernel
    from gpytorch.priors import GammaPrior, LogNormalPrior

    if kernel not in KERNELS:
        raise DataError(f"unknown kernel {kernel!r}; choose from {KERNELS}")
    batch_shape = torch.Size(batch_shape or [])
    ls_prior = None
    if priors:  # dimension-scaled log-normal (Hvarfner et al. 2024; BoTorch's default)
        ls_prior = LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(dim), scale=math.sqrt(3))
    kw = dict(
        ard_num_dims=dim if ard else None, batch_shape=batch_shape, lengthscale_prior=ls_prior
    )
    if min_lengthscale is not None:
        from gpytorch.constraints import GreaterThan

        kw["lengthscale_constraint"] = GreaterThan(min_lengthscale)
    base = MaternKernel(nu=2.5, **kw) if kernel == "matern52" else RBFKernel(**kw)
    covar = ScaleKernel(
        base, batch_shape=batch_shape, outputscale_prior=GammaPrior(2.0, 0.15) if priors else None
    )
    if bias:
        covar = covar + ConstantKernel(batch_shape=batch_shape)
    if input_warp:
        covar = _warped_kernel_class()(covar, dim, batch_shape)
    return covar


@functools.cache
def _warped_kernel_class():
    import torch
    from gpytorch.constraints import GreaterThan
    from gpytorch.kernels import Kernel
    from gpytorch.priors import LogNormalPrior

    class WarpedKernel(Kernel):
        """k(w(x), w(x')) with w(x) = 1 − (1 − x^a)^b per dimension (Kumaraswamy CDF, as
        BoTorch's ``Warp``) on unit-cube inputs; a, b > 0 with log-normal priors at 1 (identity).
        Written out here because ``Warp`` leaves a, b unconstrained for a bounded optimiser."""

        def __init__(self, base, dim: int, batch_shape):
            super().__init__(batch_shape=batch_shape)
            self.base = base
            for name in ("a", "b"):
                self.register_parameter(
                    f"raw_{name}", torch.nn.Parameter(torch.zeros(*batch_shape, 1, dim))
                )
                self.register_constraint(f"raw_{name}", GreaterThan(1e-4))
                self.register_prior(
                    f"{name}_prior",
                    LogNormalPrior(0.0, 0.75**0.5),
                    lambda m, n=name: getattr(m, f"raw_{n}_constraint").transform(
                        getattr(m, f"raw_{n}")
                    ),
                    # BoTorch's fit retries from prior samples, which need a way back to raw
                    lambda m, v, n=name: m._set_positive(n, v),
                )
            for name in ("a", "b"):  # a = b = 1: no warping to start with
                self._set_positive(name, 1.0)

        def _set_positive(self, name: str, value) -> None:
            raw = getattr(self, f"raw_{name}")
            value = torch.as_tensor(value, dtype=raw.dtype).expand_as(raw)
            c = getattr(self, f"raw_{name}_constraint")
            self.initialize(**{f"raw_{name}": c.inverse_transform(value)})

        def _w(self, x):
            a = self.raw_a_constraint.transform(self.raw_a)
            b = self.raw_b_constraint.transform(self.raw_b)
            x = x.clamp(0.0, 1.0) * (1 - 2e-7) + 1e-7
            return 1 - (1 - x.pow(a)).pow(b)

        def forward(self, x1, x2, diag=False, **params):
            w1 = self._w(x1)
            w2 = w1 if x2 is x1 else self._w(x2)
            return self.base.forward(w1, w2, diag=diag, **params)

    return WarpedKernel


def fit_gp(
    X,
    y,
    *,
    bounds=None,
    ard: bool = True,
    kernel: str = "matern52",
    priors: bool = True,
    bias: bool = False,
    fixed_noise: float | None = None,
    input_warp: bool = False,
    max_fit_rows: int = 1000,
    seed: int = 0,
):
    """Fit a ``SingleTaskGP`` to `X` (n × d) and `y` (n,), n ≥ 2.

    `bounds` (2 × d) are the input ranges mapped to the unit cube (default: the data's range).
    `input_warp`: a learned Kumaraswamy CDF per input (:func:`make_covar_module`).
    `fixed_noise`: noise variance in units of var(y) held fixed (e.g. 0.01), else fitted.
    Above `max_fit_rows` rows the hyper-parameters are fitted on a random subset of that size
    and the returned GP conditions on all rows with them (one O(n³) solve instead of one per
    optimiser step: thousands of rows in seconds).
    """
    from botorch.exceptions.errors import ModelFittingError
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float).reshape(-1)
    if len(y) < 2 or not np.all(np.isfinite(y)):
        raise DataError(f"a GP needs >= 2 finite observations, got {int(np.isfinite(y).sum())}")
    if bounds is None:
        lo, hi = X.min(axis=0), X.max(axis=0)
        bounds = np.stack([lo, np.where(hi > lo, hi, lo + 1.0)])
    kw = dict(
        bounds=bounds,
        ard=ard,
        kernel=kernel,
        priors=priors,
        bias=bias,
        fixed_noise=fixed_noise,
        input_warp=input_warp,
    )
    if len(y) > max_fit_rows:
        return _fit_gp_subset(X, y, max_fit_rows=max_fit_rows, seed=seed, **kw)
    for floor in (None, FALLBACK_MIN_LENGTHSCALE):
        model = _build_gp(X, y, **kw, min_lengthscale=floor)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fit_gpytorch_mll(mll)
                break
            except (ModelFittingError, RuntimeError, ValueError) as exc:
                if floor is not None:
                    msg = f"Gaussian process fit failed ({type(exc).__name__}: {exc})"
                    raise FitError(msg) from exc
    model.min_lengthscale = floor  # a model conditioned on more rows takes the same kernel
    model.eval()
    return model


def _build_gp(
    X, y, *, bounds, ard, kernel, priors, bias, fixed_noise, input_warp=False, min_lengthscale=None
):
    """An unfitted ``SingleTaskGP`` with our kernel, priors and transforms."""
    import torch
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Normalize, Standardize

    Xt = torch.tensor(X, dtype=torch.double)
    yt = torch.tensor(y[:, None], dtype=torch.double)
    bt = torch.tensor(np.asarray(bounds, dtype=float), dtype=torch.double)
    yvar = None
    if fixed_noise is not None:
        yvar = torch.full_like(yt, fixed_noise * max(float(np.var(y)), 1e-12))
    covar = make_covar_module(
        X.shape[1],
        ard=ard,
        kernel=kernel,
        priors=priors,
        bias=bias,
        input_warp=input_warp,
        min_lengthscale=min_lengthscale,
    )
    return SingleTaskGP(
        Xt,
        yt,
        train_Yvar=yvar,
        covar_module=covar,
        input_transform=Normalize(X.shape[1], bounds=bt),
        outcome_transform=Standardize(1),
    )


def _fit_gp_subset(X, y, *, max_fit_rows, seed, **kw):
    """Hyper-parameters from a random subset, posterior conditioned on every row."""
    sel = np.random.default_rng(seed).choice(len(y), max_fit_rows, replace=False)
    sub = fit_gp(X[sel], y[sel], max_fit_rows=max_fit_rows, **kw)
    full = _build_gp(X, y, **kw, min_lengthscale=sub.min_lengthscale)
    full.min_lengthscale = sub.min_lengthscale
    hyper = {k: v for k, v in sub.state_dict().items() if not k.startswith("outcome_transform")}
    full.load_state_dict(hyper, strict=False)
    full.eval()
    return full


def fit_gp_list(X, Y, **kw):
    """One :func:`fit_gp` per column of `Y` (rows with NaN dropped per column) → ModelListGP."""
    from botorch.models import ModelListGP

    models = []
    for j in range(Y.shape[1]):
        ok = np.isfinite(Y[:, j])
        try:
            models.append(fit_gp(X[ok], Y[ok, j], **kw))
        except FitError as exc:
            raise FitError(
                f"objective column {j}: {exc}; check it for constant or non-finite values"
            ) from exc
    return ModelListGP(*models)


def _forest_model_class():
    import torch
    from botorch.models.ensemble import EnsembleModel

    class ForestModel(EnsembleModel):
        """Random forests (one per output) as a BoTorch ensemble: tree s = ensemble member s."""

        def __init__(self, forests, n_train: int):
            super().__init__()
            self.forests = forests
            self._num_outputs = len(forests)
            self.n_train = n_train

        def forward(self, X):
            shape = X.shape[:-1]
            flat = X.detach().reshape(-1, X.shape[-1]).cpu().numpy()
            outs = []
            for f in self.forests:
                per_tree = np.stack([t.predict(flat) for t in f.estimators_])  # s × N
                outs.append(per_tree)
            arr = torch.tensor(np.stack(outs, axis=-1), dtype=X.dtype)  # s × N × m
            arr = arr.reshape(arr.shape[0], *shape, self._num_outputs)
            return arr.movedim(0, -3) if len(shape) > 1 else arr

    return ForestModel


class ForestSurrogate:
    """Random-forest surrogate with uncertainty from the spread over trees (sklearn).

    ``fit(X, Y)`` (Y rows × outputs, NaN where missing), ``predict(X)`` → (mean, std) and
    ``botorch_model()`` → a BoTorch ``EnsembleModel`` for the acquisition functions.
    """

    def __init__(self, n_estimators: int = 200, min_samples_leaf: int = 1, seed: int = 0):
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed

    def fit(self, X, Y) -> ForestSurrogate:
        from sklearn.ensemble import RandomForestRegressor

        X = np.asarray(X, dtype=float)
        Y = np.asarray(Y, dtype=float)
        Y = Y[:, None] if Y.ndim == 1 else Y
        self.forests_ = []
        for j in range(Y.shape[1]):
            ok = np.isfinite(Y[:, j])
            if ok.sum() < 2:
                raise DataError(f"output {j}: a forest needs >= 2 observations, got {ok.sum()}")
            self.forests_.append(
                RandomForestRegressor(
                    n_estimators=self.n_estimators,
                    min_samples_leaf=self.min_samples_leaf,
                    bootstrap=True,
                    n_jobs=1,
                    random_state=self.seed + j,
                ).fit(X[ok], Y[ok, j])
            )
        self.n_train_ = len(X)
        return self

    def predict(self, X):
        """(mean, std), each rows × outputs; std = spread of the tree predictions."""
        X = np.asarray(X, dtype=float)
        per = np.stack(
            [np.stack([t.predict(X) for t in f.estimators_], axis=0) for f in self.forests_],
            axis=-1,
        )
        return per.mean(axis=0), per.std(axis=0)

    def botorch_model(self, outputs: list[int] | None = None):
        """The fitted forests (all, or those of `outputs`) as a BoTorch ensemble model."""
        forests = self.forests_ if outputs is None else [self.forests_[j] for j in outputs]
        return _forest_model_class()(forests, self.n_train_)
