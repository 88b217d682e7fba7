"""Plot a 1-D surrogate with its central 95 % band."""

from __future__ import annotations

import os

import numpy as np
from scipy.stats import norm


def plot_band(
    model,
    X_train,
    y_train,
    x_range: tuple[float, float] | None = None,
    n: int = 300,
    level: float = 0.95,
    X_test=None,
    y_test=None,
    path: str | os.PathLike | None = None,
    ax=None,
    xlabel: str = "x",
    ylabel: str = "y",
    label: str | None = None,
):
    """Mean and ±z·std band of a fitted 1-D surrogate over `x_range`; saved to `path` if given."""
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from matloop.utils.files import atomic_path

    xt = np.asarray(X_train, dtype=float).reshape(len(y_train), -1)
    if xt.shape[1] != 1:
        raise ValueError("plot_band draws 1-D surrogates only")
    if x_range is None:
        pad = 0.1 * np.ptp(xt)
        x_range = (xt.min() - pad, xt.max() + pad)
    grid = np.linspace(*x_range, n)
    mean, std, _ = model.predict_with_flags(grid[:, None])
    z = norm.ppf(0.5 + level / 2)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
    name = label or type(model).__name__
    ax.plot(grid, mean, "-", color="C0", label=f"{name} mean")
    ax.fill_between(
        grid,
        mean - z * std,
        mean + z * std,
        color="C0",
        alpha=0.2,
        label=f"{round(level * 100)} % band",
    )
    ax.axvspan(xt.min(), xt.max(), color="0.9", zorder=0, label="training range")
    ax.plot(xt[:, 0], y_train, "o", color="C3", label="training data", zorder=3)
    if X_test is not None:
        ax.plot(np.ravel(X_test), y_test, "^", color="C2", label="held-out data", zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if path is not None and fig is not None:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
    return ax
