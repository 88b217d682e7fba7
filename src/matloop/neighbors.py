"""Neighbour lists (vesin) in the form every matloop model uses: centre i, neighbour j, vector.

The edge vector is ``r_ij = R_j − R_i + S·cell`` (Å); lists are *full* (both i→j and j→i).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from matloop.errors import DataError

_AXES = "abc"
#: cell vectors (and singular values of periodic ones) below this are zero (Å)
ZERO_LENGTH_A = 1e-6
_last_good_cell: list[bytes | None] = [None]  # cell + pbc of the last structure that passed


@dataclass
class NeighborList:
    centers: np.ndarray  # (n_edges,) int64
    neighbors: np.ndarray  # (n_edges,) int64
    shifts: np.ndarray  # (n_edges, 3) int64, cell shift of the neighbour
    vectors: np.ndarray | None  # (n_edges, 3) float64, Å
    distances: np.ndarray | None  # (n_edges,) float64, Å


def geometry_problem(atoms: Atoms) -> str | None:
    """One line naming why `atoms` has no usable geometry, or None.

    Checked in this order: no atoms, a NaN/inf position, a NaN/inf cell vector, and periodic
    axes whose cell vectors are zero or linearly dependent (below 1e-6 Å).
    A non-periodic axis may have a zero vector (a 2-D slab, a molecule without a box).
    """
    return _atoms_problem(atoms, allow_empty=False) or _cell_problem(
        atoms.cell.array, np.asarray(atoms.pbc, dtype=bool)
    )


def _atoms_problem(atoms: Atoms, allow_empty: bool) -> str | None:
    if len(atoms) == 0 and not allow_empty:
        return "the structure has no atoms"
    finite = np.isfinite(atoms.positions).all(axis=1)
    if not finite.all():
        return f"atom {int(np.flatnonzero(~finite)[0])} has a NaN or inf position"
    return None


def _names(axes: list[int]) -> str:
    return ", ".join(_AXES[i] for i in axes)


def _vectors(axes: list[int], singular: str, plural: str) -> str:
    """``cell vector b is`` / ``cell vectors a, b are`` (the verb forms given)."""
    if len(axes) == 1:
        return f"cell vector {_names(axes)} {singular}"
    return f"cell vectors {_names(axes)} {plural}"


def _cell_problem(cell: np.ndarray, pbc: np.ndarray) -> str | None:
    bad = [i for i in range(3) if not np.isfinite(cell[i]).all()]
    if bad:
        return f"{_vectors(bad, 'contains', 'contain')} NaN or inf"
    periodic = [i for i in range(3) if pbc[i]]
    if not periodic:
        return None
    zero = [i for i in periodic if np.linalg.norm(cell[i]) < ZERO_LENGTH_A]
    if zero:
        return (
            f"periodic along {_names(periodic)} but {_vectors(zero, 'is', 'are')} zero: set the "
            f"cell, or pbc=False along {_names(zero)}"
        )
    if np.linalg.svd(cell[periodic], compute_uv=False).min() >= ZERO_LENGTH_A:
        return None
    pairs = [[i, j] for i in periodic for j in periodic if i < j]
    dependent = next(
        (p for p in pairs if np.linalg.svd(cell[p], compute_uv=False).min() < ZERO_LENGTH_A),
        periodic,
    )
    return (
        f"periodic along {_names(periodic)} but cell vectors {_names(dependent)} are linearly "
        f"dependent (cell {np.round(cell, 4).tolist()} Å): set vectors that span the periodic "
        "axes, or pbc=False along the axes without one"
    )


def stress_volume(atoms: Atoms) -> float | None:
    """The volume (Å³) a stress divides ∂E/∂ε by: the whole cell, vacuum included.

    None (no stress) for a structure periodic along no axis (a molecule, boxed or not) or whose
    cell has no volume (e.g. a slab with a zero c vector): ∂E/∂ε exists, but no stress.
    """
    if atoms.pbc.all():  # check_structure has refused a degenerate periodic cell
        return float(abs(atoms.cell.volume))
    if not atoms.pbc.any():
        return None
    # the tolerance of geometry_problem for a zero or dependent cell vector (Å)
    if np.linalg.svd(atoms.cell.array, compute_uv=False).min() < ZERO_LENGTH_A:
        return None
    return float(abs(atoms.cell.volume))


def no_stress_message(atoms: Atoms) -> str:
    """One line: why `atoms` has no stress (see :func:`stress_volume`)."""
    text = (
        f"stress needs a cell periodic along at least one axis with a non-zero volume "
        f"({atoms.get_chemical_formula()}: pbc={atoms.pbc.tolist()}, "
        f"volume {abs(atoms.cell.volume):.3g} Å³)"
    )
    return text + (
        "; give a slab's open axis a cell vector (its vacuum)" if atoms.pbc.any() else ""
    )


def check_structure(atoms: Atoms) -> None:
    """Raise :class:`DataError` for a structure no neighbour list can be built for.

    The checks of :func:`geometry_problem`, except that an empty structure is allowed (its
    energy is 0). vesin answers a zero periodic vector with "the box matrix is not invertible"
    and linearly dependent ones with a floating point exception that kills the Python process.
    """
    problem = _atoms_problem(atoms, allow_empty=True)
    key = None
    if problem is None:
        pbc = np.asarray(atoms.pbc, dtype=bool)
        key = atoms.cell.array.tobytes() + pbc.tobytes()
        if key == _last_good_cell[0]:  # MD asks every step; the SVD was most of this check's time
            return
        problem = _cell_problem(atoms.cell.array, pbc)
    if problem is not None:
        raise DataError(f"structure {atoms.get_chemical_formula()}: {problem}")
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
