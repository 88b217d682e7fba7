"""Train/validation/test splits: random (seeded) or grouped (whole groups stay together)."""

from __future__ import annotations

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
    """Split off a random `fraction` of structures. Returns ``(rest, split)``."""
    n_split = _check_fraction(fraction, len(dataset))
    order = np.random.default_rng(seed).permutation(len(dataset))
    return dataset.subset(sorted(order[n_split:])), dataset.subset(sorted(order[:n_split]))


def group_split(
    dataset: Dataset, fraction: float = 0.1, key: str = "config_type", seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split so that all structures sharing ``atoms.info[key]`` land on the same side.

    Whole groups are drawn at random until about `fraction` of the structures are in the split.
    Returns ``(rest, split)``.
    """
    _check_fraction(fraction, len(dataset))
    groups = np.array([str(a.info.get(key, "<none>")) for a in dataset])
    unique = np.unique(groups)
    if len(unique) < 2:
        raise DataError(f"cannot group-split on {key!r}: only one group ({unique[0]!r})")
    rng = np.random.default_rng(seed)
    target = fraction * len(dataset)
    chosen: list[str] = []
    count = 0
    for g in rng.permutation(unique):
        if count >= target or len(chosen) == len(unique) - 1:
            break
        chosen.append(g)
        count += int((groups == g).sum())
    mask = np.isin(groups, chosen)
    return dataset.subset(np.flatnonzero(~mask)), dataset.subset(np.flatnonzero(mask))
