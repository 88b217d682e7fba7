"""E(V) data: read/write the ``Volume,Energy`` CSV format and compute it with any calculator."""

from __future__ import annotations

import os

import numpy as np

from matloop.errors import ConfigError, DataError
from matloop.surrogate.io import read_columns, write_columns


def read_eos_csv(
    path: str | os.PathLike, x: str = "Volume", y: str = "Energy"
) -> tuple[np.ndarray, np.ndarray]:
    """Volumes (Å³) and energies (eV) from columns `x` and `y` of a CSV file."""
    if x == y:
        raise ConfigError(f"the volume and energy columns must differ (both are {x!r})")
    cols = read_columns(path, [x, y])
    return cols[x], cols[y]


def write_eos_csv(path: str | os.PathLike, volumes, energies) -> None:
    """Write ``Volume,Energy`` (Å³, eV) atomically — the format of ``si_eos_result.csv``."""
    write_columns(path, {"Volume": np.asarray(volumes), "Energy": np.asarray(energies)})


def compute_eos_data(
    atoms,
    calculator,
    strain: float = 0.05,
    points: int = 11,
    *,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Energies of `atoms` scaled isotropically to volumes V_ref·(1 + s), s ∈ [−strain, +strain].

    `strain` is the maximum *volumetric* strain (0.05 → ±5 % in volume, ≈ ±1.7 % in lattice
    constant). `calculator` is an ASE calculator or any spec accepted by
    :func:`matloop.calculators.resolve_calculator` (``emt``, ``sw``, ``module:function``, a model
    file). Atomic positions are scaled with the cell and not relaxed. Returns (volumes Å³,
    energies eV) of the whole cell.
    """
    from matloop.calculators import resolve_calculator
    from matloop.calculators.elements import check_elements
    from matloop.utils.progress import delayed_bar

    if not 0 < strain < 0.5:
        raise ConfigError(f"strain must be in (0, 0.5) (a volume fraction), got {strain}")
    if int(points) < 2:
        raise ConfigError(f"points must be at least 2, got {points}")
    if not np.all(atoms.pbc) or atoms.cell.rank != 3:
        raise DataError(
            f"structure {atoms.get_chemical_formula()}: an E(V) scan needs a periodic 3-D cell"
        )
    calc = resolve_calculator(calculator)
    name = calculator if isinstance(calculator, str) else None
    check_elements(atoms, calc, name, where="the E(V) structure")  # sw would take Ni for Si
    v_ref = atoms.get_volume()
    scales = 1.0 + np.linspace(-strain, strain, int(points))
    volumes, energies = [], []
    for s in delayed_bar(scales, "E(V)", "volume", enabled=progress):
        a = atoms.copy()
        a.set_cell(atoms.cell * s ** (1.0 / 3.0), scale_atoms=True)
        a.calc = calc
        energies.append(_energy(a, calculator))
        volumes.append(float(a.get_volume()))
        a.calc = None
    assert np.allclose(volumes, v_ref * scales)
    return np.array(volumes), np.array(energies)


def _energy(atoms, spec) -> float:
    """Potential energy (eV); a calculator that refuses the structure is one DataError line."""
    from ase.calculators.calculator import CalculatorError

    try:
        return float(atoms.get_potential_energy())
    except (NotImplementedError, CalculatorError, ValueError) as exc:
        name = spec if isinstance(spec, str) else type(atoms.calc).__name__
        raise DataError(
            f"calculator {name} cannot compute {atoms.get_chemical_formula()}: {exc}"
        ) from None
