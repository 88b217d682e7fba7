"""Neighbour lists (vesin) in the form every matloop model uses: centre i, neighbour j, vector.

The edge vector is ``r_ij = R_j − R_i + S·cell`` (Å); lists are *full* (both i→j and j→i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from matloop.errors import DataError

_AXES = "xyz"
_last_good_cell: list[bytes | None] = [None]  # cell + pbc of the last structure that passed


@dataclass
class NeighborList:
    centers: np.ndarray  # (n_edges,) int64
    neighbors: np.ndarray  # (n_edges,) int64
    shifts: np.ndarray  # (n_edges, 3) int64, cell shift of the neighbour
    vectors: np.ndarray | None  # (n_edges, 3) float64, Å
    distances: np.ndarray | None  # (n_edges,) float64, Å


def check_structure(atoms: Atoms) -> None:
    """Raise :class:`DataError` for a structure no neighbour list can be built for.

    Refused: NaN/inf positions or cell, and periodic axes whose cell vectors (Å) are zero or
    linearly dependent (e.g. ``pbc=True`` with no cell): vesin answers the first with "the box
    matrix is not invertible" and linearly dependent vectors with a floating point exception
    that kills the Python process.
    """
    positions, cell = atoms.positions, atoms.cell.array
    if not np.isfinite(positions).all():
        bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise DataError(
            f"structure {atoms.get_chemical_formula()}: atom {bad} has a NaN or inf position"
        )
    pbc = np.asarray(atoms.pbc, dtype=bool)
    key = cell.tobytes() + pbc.tobytes()
    if key == _last_good_cell[0]:  # MD asks every step; the SVD was most of this check's time
        return
    if not np.isfinite(cell).all():
        raise DataError(f"structure {atoms.get_chemical_formula()}: the cell contains NaN or inf")
    if pbc.any() and np.linalg.svd(cell[pbc], compute_uv=False).min() < 1e-6:
        axes = "".join(a for a, p in zip(_AXES, pbc, strict=True) if p)
        raise DataError(
            f"structure {atoms.get_chemical_formula()} is periodic along {axes} but its cell "
            f"vectors there are zero or linearly dependent (cell {np.round(cell, 4).tolist()} Å): "
            "set the cell, or pbc=False along the axes without one"
        )
    _last_good_cell[0] = key


def neighbor_list(atoms: Atoms, cutoff: float, *, with_vectors: bool = True) -> NeighborList:
    """Full neighbour list of `atoms` within `cutoff` (Å), sorted by centre atom."""
    from vesin import NeighborList as _VesinNL

    check_structure(atoms)
    positions = np.ascontiguousarray(atoms.get_positions(), dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.ascontiguousarray(atoms.cell.array, dtype=np.float64)
    if not pbc.any():
        cell = np.zeros((3, 3))
    calculator = _VesinNL(cutoff=float(cutoff), full_list=True)
    i, j, shifts = calculator.compute(
        points=positions, box=cell, periodic=pbc.tolist(), quantities="ijS"
    )
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    shifts = shifts.astype(np.int64)
    order = np.lexsort((j, i))
    i, j, shifts = i[order], j[order], shifts[order]
    vectors = distances = None
    if with_vectors:
        vectors = positions[j] - positions[i] + shifts @ cell
        distances = np.linalg.norm(vectors, axis=1)
    return NeighborList(i, j, shifts, vectors, distances)
