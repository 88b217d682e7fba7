"""Per-element properties and fixed-length composition + structure descriptors of a crystal.

Element data come from pymatgen (Pauling electronegativity, Mendeleev number, row, group,
mass) and ASE (covalent radii, Å). The descriptors feed the gradient-boosting baseline; the
element table also gives the graph network physical atom features, so an element unseen in
training still gets a sensible representation.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, covalent_radii

from matloop.neighbors import neighbor_list

MAX_Z = 100
ELEMENT_FEATURES = (
    "Z",
    "row",
    "group",
    "electronegativity",
    "covalent_radius",
    "mass",
    "mendeleev",
)
_SCALE = np.array([100.0, 7.0, 18.0, 4.0, 2.5, 250.0, 100.0])


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """(MAX_Z + 1, n_features) raw element properties; row 0 is unused, NaN-free."""
    from pymatgen.core import Element

    table = np.zeros((MAX_Z + 1, len(ELEMENT_FEATURES)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            x = el.X
            table[z] = [
                z,
                el.row,
                el.group,
                x if np.isfinite(x) else np.nan,
                covalent_radii[z],
                atomic_masses[z],
                el.mendeleev_no if el.mendeleev_no is not None else np.nan,
            ]
    col_mean = np.nanmean(table[1:], axis=0)
    table = np.where(np.isnan(table), col_mean[None, :], table)
    table[0] = 0.0
    return table


def atom_features(numbers: np.ndarray) -> np.ndarray:
    """(n_atoms, 7) scaled element properties of atomic numbers `numbers` (≈ 0–1 each)."""
    z = np.asarray(numbers, dtype=int)
    if z.min(initial=1) < 1 or z.max(initial=1) > MAX_Z:
        from matloop.errors import DataError

        raise DataError(f"atomic numbers must be in 1..{MAX_Z}")
    return element_table()[z] / _SCALE


STRUCTURE_FEATURES = (
    "volume_per_atom",  # Å³/atom
    "density",  # g/cm³
    "packing_fraction",  # covalent spheres / cell volume
    "log_n_atoms",
    "n_elements",
    "nn_distance_min",  # Å
    "nn_distance_mean",  # Å
    "coordination_mean",
    "coordination_std",
    "bond_ratio_mean",  # nearest distance / (r_cov,i + r_cov,j)
    "lattice_b_over_a",
    "lattice_c_over_a",
)


def structure_descriptors(atoms: Atoms, cutoff: float = 6.0) -> np.ndarray:
    """Element-fraction vector (MAX_Z), element-property statistics and structure descriptors."""
    z = atoms.numbers
    n = len(atoms)
    frac = np.bincount(z, minlength=MAX_Z + 1)[1:].astype(float) / n
    props = element_table()[z]
    mean = props.mean(0)
    stats = np.concatenate([mean, props.std(0), props.min(0), props.max(0)])
    volume = abs(atoms.cell.volume) if atoms.pbc.all() else np.nan
    nl = neighbor_list(atoms, cutoff)
    d_min = np.full(n, cutoff)
    np.minimum.at(d_min, nl.centers, nl.distances)
    r_sum = covalent_radii[z[nl.centers]] + covalent_radii[z[nl.neighbors]]
    bonded = nl.distances < 1.25 * r_sum
    coord = np.bincount(nl.centers[bonded], minlength=n).astype(float)
    ratio = np.full(n, np.nan)
    if len(nl.centers):
        r = nl.distances / r_sum
        best = np.full(n, np.inf)
        np.minimum.at(best, nl.centers, r)
        ratio = np.where(np.isfinite(best), best, np.nan)
    lengths = np.sort(atoms.cell.lengths()) if atoms.pbc.all() else np.ones(3)
    struct = [
        volume / n,
        atomic_masses[z].sum() / volume * 1.66054 if volume > 0 else np.nan,
        (4 / 3 * np.pi * covalent_radii[z] ** 3).sum() / volume if volume > 0 else np.nan,
        np.log(n),
        float(np.count_nonzero(frac)),
        d_min.min(),
        d_min.mean(),
        coord.mean(),
        coord.std(),
        np.nanmean(ratio) if np.isfinite(ratio).any() else np.nan,
        lengths[1] / lengths[0],
        lengths[2] / lengths[0],
    ]
    return np.concatenate([frac, stats, np.array(struct, dtype=float)])


def descriptor_names() -> list[str]:
    from ase.data import chemical_symbols

    names = [f"x_{chemical_symbols[z]}" for z in range(1, MAX_Z + 1)]
    for stat in ("mean", "std", "min", "max"):
        names += [f"{p}_{stat}" for p in ELEMENT_FEATURES]
    return names + list(STRUCTURE_FEATURES)


def descriptor_matrix(structures, cutoff: float = 6.0, progress: bool = False) -> np.ndarray:
    """(n_structures, n_descriptors) matrix; NaN where a descriptor is undefined (no PBC)."""
    from tqdm.auto import tqdm

    rows = [
        structure_descriptors(a, cutoff)
        for a in tqdm(structures, desc="descriptors", disable=not progress, leave=False)
    ]
    return np.vstack(rows)
