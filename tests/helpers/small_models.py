"""Small untrained matloop models and finite-difference references shared by several tests."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.fd import calculate_numerical_stress

from matloop.calculators.potential import MatloopCalculator
from matloop.models import get_family


def untrained_bpnn() -> MatloopCalculator:
    """A small random-weight BPNN for Cu (float64): enough to test geometry handling."""
    torch.manual_seed(0)
    cls = get_family("bpnn")
    params = cls.Params.model_validate(
        {"descriptor": {"cutoff": 4.0, "n_radial": 6}, "hidden": [8]}
    )
    return MatloopCalculator(cls(["Cu"], params).double())


def numerical_stress(atoms: Atoms, calc, h: float = 1e-5) -> np.ndarray:
    """(1/V) ∂E/∂ε (Voigt, eV/Å³; V the whole cell) by ASE's central differences, positions
    strained with the cell: what a stress must equal for slabs and wires too."""
    work = atoms.copy()
    work.calc = calc
    return np.asarray(calculate_numerical_stress(work, eps=h, voigt=True))


def stress_of(atoms: Atoms, calc) -> np.ndarray:
    """`calc`'s stress (Voigt, eV/Å³) of a copy of `atoms`."""
    work = atoms.copy()
    work.calc = calc
    return work.get_stress()
