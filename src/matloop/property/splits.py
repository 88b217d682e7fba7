"""Train/held-out splits: random, by composition, by prototype, by an id/time column.

Grouped splits put every member of a group (same reduced formula, or same prototype =
spacegroup number + sorted Wyckoff letters) on one side, so the held-out part measures
generalisation to unseen compositions or structure types.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matloop.errors import ConfigError, DataError
from matloop.property.data import PropertyDataset

SPLITS = ("random", "composition", "prototype", "column")


def prototype_key(atoms, symprec: float = 0.1) -> str:
    """``"<spacegroup number>:<sorted Wyckoff letters>"`` of `atoms` (spglib via pymatgen)."""
    from pymatgen.io.ase import AseAtomsAdaptor
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    structure = AseAtomsAdaptor.get_structure(atoms)
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        data = sga.get_symmetry_dataset()
        letters = "".join(sorted(set(data.wyckoffs)))
        return f"{data.number}:{letters}"
    except Exception:  # noqa: BLE001 - spglib fails on a few odd cells; they form their own group
        return f"1:{'a' * len(atoms)}"


def group_labels(dataset: PropertyDataset, kind: str, column: str | None = None) -> list[str]:
    """The group of each structure for split `kind` (``composition``/``prototype``/``column``)."""
    if kind == "composition":
        return dataset.formulas()
    if kind == "prototype":
        return [prototype_key(a) for a in dataset.structures]
    if kind == "column":
        if not column:
            raise ConfigError("split 'column' needs a column name (split_column)")
        return list(dataset.ids) if column == "id" else [str(v) for v in dataset._column(column)]
    raise ConfigError(f"unknown split {kind!r} (choose from {', '.join(SPLITS)})")


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be in (0, 1), got {fraction}")


def random_split(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) with round(`fraction`·n) held out at random."""
    _check_fraction(fraction)
    perm = np.random.default_rng(seed).permutation(n)
    n_out = min(max(1, int(round(fraction * n))), n - 1)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def grouped_split(
    groups: Sequence[str], fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out): whole groups in random order until `fraction` is reached.

    A group that would take the held-out count further past the target than it now falls
    short is passed over (one large prototype group made a 0.2 split hold out 0.34).
    """
    _check_fraction(fraction)
    labels = np.asarray(groups, dtype=object)
    uniq = np.unique(labels)
    if len(uniq) < 2:
        raise ConfigError("a grouped split needs at least two groups")
    order = np.random.default_rng(seed).permutation(len(uniq))
    target = fraction * len(labels)
    held: list[str] = []
    count = 0
    sizes = {g: int(n) for g, n in zip(*np.unique(labels, return_counts=True), strict=True)}
    for k in order[:-1]:  # keep at least one group for training
        if count >= target:
            break
        if held and count + sizes[uniq[k]] - target > target - count:
            continue
        held.append(uniq[k])
        count += sizes[uniq[k]]
    mask = np.isin(labels, np.array(held, dtype=object))
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def column_split(values: Sequence, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out): the last `fraction` in the order of `values` (time or id).

    Values are compared as numbers when they all parse as numbers, else as strings.
    """
    _check_fraction(fraction)
    try:
        keys = np.array([float(v) for v in values])
    except (TypeError, ValueError):
        keys = np.array([str(v) for v in values], dtype=object)
    order = np.argsort(keys, kind="stable")
    n_out = min(max(1, int(round(fraction * len(order)))), len(order) - 1)
    return np.sort(order[:-n_out]), np.sort(order[-n_out:])


def _check_complete(dataset: PropertyDataset, column: str | None) -> None:
    """Refuse a split column with missing values: read as text, "None"/"nan" sorted after
    every year, so the structures without a date were held out as the latest ones."""
    if column == "id":
        return
    missing = np.flatnonzero(~dataset.has_value(column))
    if len(missing):
        raise DataError(
            f"split column {column!r} has no value for {len(missing)} structures, e.g. "
            f"{dataset.ids[missing[0]]}; fill or drop them, or choose another split"
        )


def split(
    dataset: PropertyDataset,
    kind: str = "random",
    fraction: float = 0.2,
    seed: int = 0,
    column: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held-out) of `dataset` for split `kind` (see :data:`SPLITS`)."""
    if kind not in SPLITS:
        raise ConfigError(f"unknown split {kind!r} (choose from {', '.join(SPLITS)})")
    if len(dataset) < 2:
        raise ConfigError("a split needs at least two structures")
    if kind == "random":
        return random_split(len(dataset), fraction, seed)
    if kind == "column":
        values = group_labels(dataset, "column", column)
        _check_complete(dataset, column)
        return column_split(values, fraction)
    return grouped_split(group_labels(dataset, kind), fraction, seed)
