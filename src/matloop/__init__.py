"""matloop: compute → learn → predict → choose what to compute next.

Units everywhere inside matloop: eV, Å, eV/Å, eV/Å³ (ASE stress sign and Voigt order).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load"]


def load(path, **kwargs):
    """Load a saved potential (file or the directory `matloop train` wrote) as an ASE Calculator.

    Extra keyword arguments go to :class:`matloop.calculators.MatloopCalculator`.
    """
    from matloop.calculators import load_calculator

    return load_calculator(path, **kwargs)
