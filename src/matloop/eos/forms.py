"""Energy–volume equations of state E(V) (eV, Å³; B0 in eV/Å³).

The 3-parameter-plus-V0 forms use ASE's parameter order ``(E0, B0, B0', V0)`` and the same
expressions as :mod:`ase.eos`, so fits on the same data agree.
"""

from __future__ import annotations

import numpy as np


def birch_murnaghan3(v, e0, b0, bp, v0):
    """Third-order Birch–Murnaghan (PRB 70, 224107, eq. 3; same as ASE 'birchmurnaghan')."""
    eta2 = (v0 / v) ** (2.0 / 3.0)
    return e0 + 9.0 * b0 * v0 / 16.0 * (eta2 - 1.0) ** 2 * (6.0 + bp * (eta2 - 1.0) - 4.0 * eta2)


def birch_murnaghan4(v, e0, b0, bp, bpp, v0):
    """Fourth-order Birch–Murnaghan in Eulerian strain f = ((V0/V)^(2/3) − 1)/2.

    E = E0 + a2 f² [1 + (B0' − 4) f + (3/4)(B0 B0'' + B0'² − 7 B0' + 143/9) f²], a2 = 9 B0 V0 / 2,
    so that B(V0) = B0, dB/dP = B0' and d²B/dP² = B0'' (B0'' in Å³/eV).
    """
    f = 0.5 * ((v0 / v) ** (2.0 / 3.0) - 1.0)
    a2 = 4.5 * b0 * v0
    c4 = 0.75 * (b0 * bpp + bp * bp - 7.0 * bp + 143.0 / 9.0)
    return e0 + a2 * f * f * (1.0 + (bp - 4.0) * f + c4 * f * f)


def vinet(v, e0, b0, bp, v0):
    """Vinet (PRB 70, 224107; same as ASE 'vinet')."""
    eta = (v / v0) ** (1.0 / 3.0)
    return e0 + 2.0 * b0 * v0 / (bp - 1.0) ** 2 * (
        2.0 - (5.0 + 3.0 * bp * (eta - 1.0) - 3.0 * eta) * np.exp(-1.5 * (bp - 1.0) * (eta - 1.0))
    )


def murnaghan(v, e0, b0, bp, v0):
    """Murnaghan (PRB 28, 5480; same as ASE 'murnaghan')."""
    return e0 + b0 * v / bp * ((v0 / v) ** bp / (bp - 1.0) + 1.0) - v0 * b0 / (bp - 1.0)


#: name → (function, parameter names, ASE's name for the same form or None)
FORMS = {
    "bm3": (birch_murnaghan3, ("e0", "b0", "b0_prime", "v0"), "birchmurnaghan"),
    "bm4": (birch_murnaghan4, ("e0", "b0", "b0_prime", "b0_second", "v0"), None),
    "vinet": (vinet, ("e0", "b0", "b0_prime", "v0"), "vinet"),
    "murnaghan": (murnaghan, ("e0", "b0", "b0_prime", "v0"), "murnaghan"),
}

ALIASES = {
    "birchmurnaghan": "bm3",
    "birch-murnaghan": "bm3",
    "bm": "bm3",
    "polynomial": "poly",
    "p3": "poly",
}

EOS_NAMES = ("bm3", "bm4", "vinet", "murnaghan", "poly")
