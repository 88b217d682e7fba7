"""Validation splits for composition data.

* ``random``: shuffled K-fold (replicates of one composition may straddle — optimistic);
* ``group``: grouped K-fold by identical composition (rounded key), so replicates never straddle;
* ``family``: leave-families-out by chemical system (the set of non-zero components), K folds
  of whole families (or leave-one-family-out when there are at most K families);
* ``time``: forward chaining on a time/order column (train on the past, test on the next block).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from matloop.compositions.core import chemical_system, composition_key
from matloop.errors import ConfigError

SPLITS = ("random", "group", "family", "time")


def composition_groups(x: np.ndarray, components: Sequence[str], decimals: int = 2) -> np.ndarray:
    """Group labels: identical compositions (rounded to `decimals`) share a label."""
    return np.array([composition_key(r, components, decimals) for r in np.asarray(x)])


def family_groups(x: np.ndarray, components: Sequence[str], threshold: float = 0.0) -> np.ndarray:
    """Chemical-system labels, e.g. 'CaO-Na2O-SiO2'."""
    return np.array([chemical_system(r, components, threshold) for r in np.asarray(x)])


def make_splits(
    kind: str,
    n_samples: int,
    *,
    n_splits: int = 5,
    groups: np.ndarray | None = None,
    families: np.ndarray | None = None,
    times: np.ndarray | None = None,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (train_idx, test_idx) pairs for the split `kind` (see module docstring)."""
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut

    idx = np.arange(n_samples)
    need = {"random": n_splits, "time": n_splits + 1}.get(kind, 0)  # time: a first block too
    if n_samples < need:
        raise ConfigError(
            f"split {kind!r}: only {n_samples} rows for {n_splits} folds; lower --folds"
        )
    if kind == "random":
        yield from KFold(n_splits, shuffle=True, random_state=seed).split(idx)
    elif kind == "group":
        if groups is None:
            raise ConfigError("split 'group' needs composition groups")
        yield from _shuffled_group_kfold(groups, n_splits, seed)
    elif kind == "family":
        if families is None:
            raise ConfigError("split 'family' needs family labels")
        uniq = np.unique(families)
        if len(uniq) < 2:
            raise ConfigError("split 'family' needs at least 2 chemical systems in the data")
        if len(uniq) <= n_splits:
            yield from LeaveOneGroupOut().split(idx, groups=families)
        else:
            yield from GroupKFold(n_splits).split(idx, groups=families)
    elif kind == "time":
        if times is None:
            raise ConfigError("split 'time' needs a time/order column (--time-column)")
        order = np.argsort(np.asarray(times), kind="stable")
        blocks = np.array_split(order, n_splits + 1)
        for k in range(1, n_splits + 1):
            yield np.sort(np.concatenate(blocks[:k])), np.sort(blocks[k])
    else:
        raise ConfigError(f"unknown split {kind!r}; choose from {SPLITS}")


def _shuffled_group_kfold(groups: np.ndarray, n_splits: int, seed: int):
    """Grouped K-fold with a seeded shuffle of the groups (sizes balanced greedily)."""
    uniq, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(uniq) < n_splits:
        raise ConfigError(f"only {len(uniq)} distinct compositions for {n_splits} grouped folds")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(uniq))
    # largest groups first, ties in random order, each to the currently smallest fold
    order = perm[np.argsort(-counts[perm], kind="stable")]
    fold_of = np.empty(len(uniq), dtype=int)
    sizes = np.zeros(n_splits)
    for gi in order:
        f = int(np.argmin(sizes))
        fold_of[gi] = f
        sizes[f] += counts[gi]
    folds = fold_of[inv]
    for f in range(n_splits):
        yield np.flatnonzero(folds != f), np.flatnonzero(folds == f)


def inner_split(n: int, groups: np.ndarray | None, frac: float = 0.2, seed: int = 0):
    """One (train, validation) split for hyper-parameter/calibration fitting (grouped if given)."""
    from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit

    idx = np.arange(n)
    if groups is not None:
        gss = GroupShuffleSplit(1, test_size=frac, random_state=seed)
        return next(gss.split(idx, groups=groups))
    return next(ShuffleSplit(1, test_size=frac, random_state=seed).split(idx))
