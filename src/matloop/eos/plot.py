"""Plot an E(V) fit with its data and residuals."""

from __future__ import annotations

import os

import numpy as np


def plot_eos(result, path: str | os.PathLike | None = None, ax=None):
    """Data points, fitted curve and V0 marker; saved to `path` (atomically) when given."""
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from matloop.utils.files import atomic_path

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4.2))
    v = result.volumes
    pad = 0.05 * np.ptp(v)
    grid = np.linspace(min(v.min(), result.v0) - pad, max(v.max(), result.v0) + pad, 200)
    ax.plot(v, result.energies, "o", color="C3", label="data", zorder=3)
    ax.plot(grid, result.energy(grid), "-", color="C0", label=f"{result.eos} fit")
    ax.axvline(result.v0, color="0.6", ls=":", lw=1)
    ax.set_xlabel("Volume (Å$^3$)")
    ax.set_ylabel("Energy (eV)")
    ax.set_title(
        f"V0 = {result.v0:.3f} Å$^3$, B0 = {result.b0_gpa:.1f} GPa, B0' = {result.b0_prime:.2f}"
    )
    ax.legend()
    ax.grid(alpha=0.3)
    if path is not None and fig is not None:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
    return ax
