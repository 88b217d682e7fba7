"""Unit conversions used only at the edges (reports, CLI tables). Internals are eV, Å, eV/Å³."""

from __future__ import annotations

from ase import units as _ase_units

EV_PER_A3_TO_GPA: float = 1.0 / _ase_units.GPa  # 1 eV/Å³ = 160.2177 GPa
GPA_TO_EV_PER_A3: float = _ase_units.GPa
EV_TO_MEV: float = 1000.0
FS: float = _ase_units.fs
