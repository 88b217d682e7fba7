"""Surrogate models with uncertainty (scikit-learn API) and delta learning.

::

    from matloop.surrogate import GPSurrogate
    gp = GPSurrogate(kernel="rbf").fit(volumes, energies)
    mean, std = gp.predict([[38.5]], return_std=True)   # std: 1σ, units of y
"""

from __future__ import annotations

from matloop.surrogate.base import ExtrapolationWarning, SurrogateBase, dependent_inputs
from matloop.surrogate.io import load_surrogate, read_columns, save_surrogate, write_columns
from matloop.surrogate.metrics import holdout_evaluate, interval_coverage, regression_metrics
from matloop.surrogate.models import (
    KERNELS,
    BootstrapEnsemble,
    DeltaModel,
    GPSurrogate,
    PolynomialSurrogate,
    make_kernel,
    make_surrogate,
)

__all__ = [
    "KERNELS",
    "BootstrapEnsemble",
    "DeltaModel",
    "ExtrapolationWarning",
    "GPSurrogate",
    "PolynomialSurrogate",
    "SurrogateBase",
    "dependent_inputs",
    "holdout_evaluate",
    "interval_coverage",
    "load_surrogate",
    "make_kernel",
    "make_surrogate",
    "plot_band",
    "read_columns",
    "regression_metrics",
    "save_surrogate",
    "write_columns",
]


def plot_band(*args, **kwargs):
    """Plot a 1-D surrogate with its 95 % band (see :func:`matloop.surrogate.plot.plot_band`)."""
    from matloop.surrogate.plot import plot_band as _plot

    return _plot(*args, **kwargs)
