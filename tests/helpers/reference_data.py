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
