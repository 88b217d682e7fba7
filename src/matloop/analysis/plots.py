"""Matplotlib (Agg) figures for RDFs, MSDs, EOS curves and MD logs; PNG files or base64."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from matloop.utils.files import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(width: float = 5.0, height: float = 3.6):
    """A new (figure, axes) pair on the Agg backend."""
    plt = _plt()
    return plt.subplots(figsize=(width, height), dpi=100)


def save_figure(fig, path: str | Path) -> Path:
    """Save `fig` atomically (format from the suffix) and close it."""
    plt = _plt()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def figure_to_base64(fig) -> str:
    """PNG of `fig` as a base64 string (for self-contained HTML), closing the figure."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_rdfs(rdfs: Mapping[str, object], title: str = "Radial distribution function"):
    """g(r) of each labelled :class:`~matloop.analysis.structure.RDF` on one axes."""
    fig, ax = figure()
    for label, rdf in rdfs.items():
        ax.plot(rdf.r, rdf.g, label=f"{label} (peak {rdf.first_peak:.2f} Å)")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_msd(diffusion, title: str = "Mean-squared displacement"):
    """MSD(t) with the Einstein-relation fit over its window."""
    fig, ax = figure()
    ax.plot(diffusion.time_ps, diffusion.msd_a2, label="MSD")
    t = np.linspace(diffusion.fit_start_ps, diffusion.fit_end_ps, 50)
    slope = 2 * diffusion.dim * diffusion.d_a2_per_ps
    ax.plot(
        t,
        slope * t + diffusion.intercept_a2,
        "--",
        label=f"fit {diffusion.fit_start_ps:.3g}–{diffusion.fit_end_ps:.3g} ps: "
        f"D = {diffusion.d_cm2_per_s:.3g} cm²/s",
    )
    ax.set_xlabel("lag time (ps)")
    ax.set_ylabel("MSD (Å²)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_eos(curves: Mapping[str, object], title: str = "Equation of state"):
    """E − E0 per atom against volume per atom for each labelled EOS curve."""
    fig, ax = figure()
    for label, c in curves.items():
        ax.plot(
            c.volumes_a3_per_atom,
            (c.energies_ev_per_atom - c.e0_ev_per_atom) * 1000,
            "o-",
            ms=3,
            label=f"{label}: V0 {c.v0_a3_per_atom:.2f} Å³, B0 {c.b0_gpa:.0f} GPa",
        )
    ax.set_xlabel("volume (Å³/atom)")
    ax.set_ylabel("E − E0 (meV/atom)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_md(result, title: str | None = None):
    """Temperature, total-energy deviation (with its linear fit) and potential energy vs time."""
    plt = _plt()
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(5.5, 6.5), dpi=100, sharex=True)
    t = result.time_ps
    n = result.n_atoms
    ax1.plot(t, result.temperature_k)
    ax1.set_ylabel("T (K)")
    de = (result.etot_ev - result.etot_ev[0]) / n * 1000
    ax2.plot(t, de, label="total energy")
    if len(t) > 1:
        slope, icpt = np.polyfit(t, de, 1)
        ax2.plot(t, slope * t + icpt, "--", label=f"fit: {slope:.3g} meV/atom/ps")
    ax2.set_ylabel("ΔE_tot (meV/atom)")
    ax2.legend(fontsize=8)
    ax3.plot(t, result.epot_ev / n, color="tab:orange")
    ax3.set_ylabel("E_pot (eV/atom)")
    ax3.set_xlabel("time (ps)")
    ax1.set_title(title or f"{result.ensemble.upper()} MD, {n} atoms")
    fig.tight_layout()
    return fig
