"""matloop: compute → learn → predict → choose what to compute next.

Units everywhere inside matloop: eV, Å, eV/Å, eV/Å³ (ASE stress sign and Voigt order).
"""

from __future__ import annotations

from matloop._version import __version__

__all__ = ["__version__", "load"]


def load(path, **kwargs):
    """Load a saved potential (file or the directory `matloop train` wrote) as an ASE Calculator.

    An active-learning run directory gives its final model: the single model with its own σ,
    or the committee as one calculator (σ calibrated). Extra keyword arguments go to
    :class:`matloop.calculators.MatloopCalculator`.
    """
    from matloop.active.report import load_model_or_run

    return load_model_or_run(path, **kwargs)
