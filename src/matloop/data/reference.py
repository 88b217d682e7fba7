"""Per-element reference energies E0 (eV/atom), fitted by least squares on total energies."""

from __future__ import annotations

import numpy as np

from matloop.data.dataset import Dataset
from matloop.errors import DataError


def composition_matrix(dataset: Dataset, elements: list[str]) -> np.ndarray:
    """Counts of each element in each structure, shape (n_structures, n_elements)."""
    index = {s: k for k, s in enumerate(elements)}
    missing = sorted(set(dataset.elements) - set(index))
    if missing:
        raise DataError(f"the data hold {', '.join(missing)}, which `elements` lacks")
    counts = np.zeros((len(dataset), len(elements)))
    for row, atoms in enumerate(dataset):
        for symbol in atoms.get_chemical_symbols():
            counts[row, index[symbol]] += 1
    return counts


def fit_reference_energies(dataset: Dataset, elements: list[str] | None = None) -> dict[str, float]:
    """Least-squares E0 per element so that E_total ≈ Σ_el n_el·E0_el (eV).

    The model then learns the remaining interaction energy. With collinear compositions the
    minimum-norm solution is used.
    """
    elements = elements or dataset.elements
    counts = composition_matrix(dataset, elements)
    e0, *_ = np.linalg.lstsq(counts, dataset.energies(), rcond=None)
    return {s: float(v) for s, v in zip(elements, e0, strict=True)}


def reference_energy(atoms, e0: dict[str, float]) -> float:
    """Σ_i E0[element_i] for one structure (eV)."""
    return float(sum(e0[s] for s in atoms.get_chemical_symbols()))


def undetermined_reference_warning(dataset: Dataset) -> str | None:
    """A sentence when the element-count matrix (structures × elements) has rank below the
    number of elements, e.g. every structure Cu21Au11: the per-element reference energies
    fitted on it are then not determined, so energies of other compositions (other ratios,
    pure elements) come out wrong by tens of meV/atom or more. None otherwise."""
    elements = dataset.elements
    if len(elements) < 2:
        return None
    rank = int(np.linalg.matrix_rank(composition_matrix(dataset, elements)))
    if rank >= len(elements):
        return None
    ratios = sorted({a.get_chemical_formula(mode="hill", empirical=True) for a in dataset})
    shown = ", ".join(ratios[:3]) + (", ..." if len(ratios) > 3 else "")
    return (
        f"the training compositions ({shown}) determine only {rank} of the {len(elements)} "
        f"per-element reference energies ({', '.join(elements)}): energies of other "
        "compositions are not predicted (errors of tens of meV/atom); add structures of other "
        "compositions or of the pure elements"
    )
