"""Small labelled datasets made with real calculators (ASE EMT, matscipy Stillinger–Weber)."""

from __future__ import annotations

import numpy as np
from ase.build import bulk

from matloop.calculators import resolve_calculator
from matloop.data import Dataset, label_with


def emt_cu_structures(
    n: int = 24, seed: int = 0, repeat=(2, 2, 2), rattle: float = 0.08, strain: float = 0.03
) -> Dataset:
    """Rattled and strained fcc Cu cells (32 atoms by default) labelled with EMT."""
    rng = np.random.default_rng(seed)
    calc = resolve_calculator("emt")
    structures = []
    for k in range(n):
        a = bulk("Cu", "fcc", 3.61 * (1 + rng.uniform(-strain, strain)), cubic=True) * repeat
        a.rattle(rattle, seed=int(rng.integers(1 << 30)))
        kind = "rattled" if k % 2 == 0 else "strained"
        if kind == "strained":
            cell = a.cell.array @ (np.eye(3) + rng.uniform(-strain, strain, (3, 3)))
            a.set_cell(cell, scale_atoms=True)
        structures.append(label_with(a, calc, config_type=kind))
    return Dataset(structures, source="emt-cu")


def rattled_fcc_cu(n: int, seed: int) -> list:
    """Rattled (0.03-0.15 Å), ±2 % strained 32-atom fcc Cu cells labelled with EMT."""
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk("Cu", "fcc", 3.6 * (1 + rng.uniform(-0.02, 0.02)), cubic=True) * (2, 2, 2)
        a.rattle(0.1 * rng.uniform(0.3, 1.5), seed=int(rng.integers(1 << 30)))
        out.append(label_with(a, EMT()))
    return out


def write_rattled_cu(path, n: int) -> None:
    """`n` single fcc Cu cells, each rattled by 0.05 Å, with EMT labels, to an extxyz `path`."""
    from ase.io import write

    calc = resolve_calculator("emt")
    frames = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=i)
        frames.append(label_with(atoms, calc))
    write(path, frames)


def write_emt_eos_csv(path, atoms, strains=np.linspace(0.97, 1.03, 7)) -> None:
    """Volume,Energy rows (Å³, eV) of `atoms` scaled by each linear factor, labelled by EMT."""
    calc = resolve_calculator("emt")
    rows = ["Volume,Energy"]
    for s in strains:
        a = atoms.copy()
        a.set_cell(atoms.cell * s, scale_atoms=True)
        a.calc = calc
        rows.append(f"{a.get_volume()},{a.get_potential_energy()}")
    path.write_text("\n".join(rows) + "\n")


def sw_si_structures(n: int = 12, seed: int = 0) -> Dataset:
    """Rattled diamond Si cells (8 atoms × 2×2×1) labelled with matscipy Stillinger–Weber."""
    rng = np.random.default_rng(seed)
    calc = resolve_calculator("sw")
    structures = []
    for _ in range(n):
        a = bulk("Si", "diamond", 5.43 * (1 + rng.uniform(-0.02, 0.02)), cubic=True) * (2, 1, 1)
        a.rattle(0.1, seed=int(rng.integers(1 << 30)))
        structures.append(label_with(a, calc, config_type="rattled"))
    return Dataset(structures, source="sw-si")
