"""Equations of state E(V): Birch–Murnaghan (3rd/4th order), Vinet, Murnaghan, polynomial.

Volumes in Å³, energies in eV, B0 in eV/Å³ inside (``EOSResult.b0_gpa`` at the edges)::

    from matloop.eos import fit_eos
    res = fit_eos(volumes, energies, eos="bm3", bootstrap=200)
    print(res.v0, res.b0_gpa, res.b0_prime, res.stderr)
"""

from __future__ import annotations

from matloop.eos.data import compute_eos_data, read_eos_csv, write_eos_csv
from matloop.eos.fit import EOSResult, EOSWarning, fit_eos, normalise_eos_name, validate_ev_data
from matloop.eos.forms import EOS_NAMES, FORMS

__all__ = [
    "EOS_NAMES",
    "FORMS",
    "EOSResult",
    "EOSWarning",
    "compute_eos_data",
    "fit_eos",
    "normalise_eos_name",
    "plot_eos",
    "read_eos_csv",
    "validate_ev_data",
    "write_eos_csv",
]


def plot_eos(result, path=None, ax=None):
    """Plot an :class:`EOSResult` (imports matplotlib only when called)."""
    from matloop.eos.plot import plot_eos as _plot

    return _plot(result, path=path, ax=ax)
