"""Train/validation/test splits: random (seeded) or grouped (whole groups stay together)."""

from __future__ import annotations

import hashlib

import numpy as np

from matloop.data.dataset import Dataset
from matloop.errors import DataError


def _check_fraction(fraction: float, n: int) -> int:
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be between 0 and 1, got {fraction}")
    if n < 2:
        raise DataError(f"cannot split a dataset of {n} structure(s)")
    return min(n - 1, max(1, int(round(fraction * n))))


def random_split(dataset: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Split off a random `fraction` of structures. Returns ``(rest, split)``.

    Copies of one structure (same atoms, positions and cell, e.g. a file read twice) stay on
    one side, so the split never scores the model on structures it was trained on.
    """
    n_split = _check_fraction(fraction, len(dataset))
    order = np.random.default_rng(seed).permutation(len(dataset))
    copies = _copies(dataset)
    members: dict[bytes, list[int]] = {}
    for i, key in enumerate(copies):
        members.setdefault(key, []).append(i)
    chosen: list[int] = []
    for i in order:  # whole sets of copies, in the order their first member is drawn
        if len(chosen) >= n_split:
            break
        if copies[i] in members:
            chosen.extend(members.pop(copies[i]))
    if len(chosen) == len(dataset):  # nothing but copies: keep the plain split
        chosen = list(order[:n_split])
    in_split = np.zeros(len(dataset), dtype=bool)
    in_split[chosen] = True
    return dataset.subset(np.flatnonzero(~in_split)), dataset.subset(np.flatnonzero(in_split))


def _copies(dataset: Dataset) -> list[bytes]:
    """A key per structure that copies share: species, positions and cell to 1e-6 Å, pbc."""
    keys = []
    for atoms in dataset:
        h = hashlib.sha256(atoms.numbers.tobytes())
        h.update(np.round(atoms.get_positions(), 6).tobytes())
        h.update(np.round(atoms.cell.array, 6).tobytes())
        h.update(np.asarray(atoms.pbc).tobytes())
        keys.append(h.digest())
    return keys


def group_split(
    dataset: Dataset, fraction: float = 0.1, key: str = "config_type", seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split so that all structures sharing ``atoms.info[key]`` land on the same side.

    Whole groups are visited in a seeded random order; a group joins the split when that brings
    its size closer to `fraction` of the structures (the first one always joins unless a
    smaller group is closer), so one large group never swamps a small target. Returns
    ``(rest, split)``; both are non-empty.
    """
    _check_fraction(fraction, len(dataset))
    groups = np.array([str(a.info.get(key, "<none>")) for a in dataset])
    unique, sizes = np.unique(groups, return_counts=True)
    if len(unique) < 2:
        raise DataError(f"cannot group-split on {key!r}: only one group ({unique[0]!r})")
    chosen = _choose_groups(dict(zip(unique, sizes, strict=True)), fraction * len(dataset), seed)
    mask = np.isin(groups, chosen)
    return dataset.subset(np.flatnonzero(~mask)), dataset.subset(np.flatnonzero(mask))


def _choose_groups(sizes: dict[str, int], target: float, seed: int) -> list[str]:
    """Groups (in seeded random order) whose total size is close to `target` structures; at
    least one group, never all of them."""
    order = list(np.random.default_rng(seed).permutation(sorted(sizes)))
    closest = min(order, key=lambda g: abs(sizes[g] - target))
    chosen: list[str] = []
    count = 0
    for g in order:
        if len(chosen) == len(sizes) - 1 or count >= target:
            break
        if abs(count + sizes[g] - target) < abs(count - target):
            chosen.append(g)
            count += sizes[g]
    return chosen or [closest]
