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
