"""Energy–volume curves of a structure under a calculator, fitted with :mod:`ase.eos`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError, DataError, MatloopError
from matloop.units import EV_PER_A3_TO_GPA


@dataclass
class EOSCurve:
    """E(V) points (per atom) and the fitted minimum; B0 in GPa."""

    volumes_a3_per_atom: np.ndarray
    energies_ev_per_atom: np.ndarray
    v0_a3_per_atom: float
    e0_ev_per_atom: float
    b0_gpa: float
    form: str

    def to_dict(self) -> dict:
        return {
            "volumes_a3_per_atom": self.volumes_a3_per_atom.tolist(),
            "energies_ev_per_atom": self.energies_ev_per_atom.tolist(),
            "v0_a3_per_atom": self.v0_a3_per_atom,
            "e0_ev_per_atom": self.e0_ev_per_atom,
            "b0_gpa": self.b0_gpa,
            "form": self.form,
        }


def equation_of_state(
    atoms: Atoms,
    calc,
    volume_range: float = 0.08,
    n_points: int = 11,
    form: str = "birchmurnaghan",
) -> EOSCurve:
    """Scale the cell isotropically over V·(1 ± `volume_range`) and fit `form` (ase.eos names).

    Atoms keep their fractional positions (no relaxation), so the curve is that of the
    structure as given; start from an equilibrium crystal for a meaningful B0.
    """
    from ase.eos import EquationOfState, eos_names

    if form not in eos_names:
        raise ConfigError(f"unknown EOS form {form!r}; choose one of {', '.join(eos_names)}")
    if not all(atoms.pbc) or atoms.cell.rank != 3:
        raise DataError("an equation of state needs a periodic 3-D cell")
    if not 0 < volume_range < 0.5 or n_points < 5:
        raise ConfigError("volume_range must be in (0, 0.5) and n_points ≥ 5")
    n = len(atoms)
    v_ref = atoms.get_volume()

    def scan(center: float) -> tuple[np.ndarray, np.ndarray]:
        volumes, energies = [], []
        for f in np.linspace(center - volume_range, center + volume_range, n_points):
            a = atoms.copy()
            a.set_cell(atoms.cell * f ** (1.0 / 3.0), scale_atoms=True)
            a.calc = calc
            energies.append(a.get_potential_energy() / n)
            volumes.append(a.get_volume() / n)
        return np.array(volumes), np.array(energies)

    # re-centre the scan (at most twice) while the lowest energy sits on its edge
    center = 1.0
    v, e = scan(center)
    for _ in range(2):
        k = int(np.argmin(e))
        if 0 < k < len(e) - 1:
            break
        center = float(v[k] / (v_ref / n))
        if center - volume_range <= 0.3:
            break
        v, e = scan(center)
    try:
        eos = EquationOfState(v, e, eos=form)
        v0, e0, b = eos.fit()
    except Exception as exc:  # ASE raises ValueError/RuntimeError when no minimum is bracketed
        raise MatloopError(
            f"EOS fit failed ({form}) over V/V_ref = {center - volume_range:.2f}–"
            f"{center + volume_range:.2f}"
            f" around {v_ref / n:.2f} Å³/atom: {exc}"
        ) from exc
    return EOSCurve(v, e, float(v0), float(e0), float(b * EV_PER_A3_TO_GPA), form)
