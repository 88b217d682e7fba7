"""Choose which explored snapshots to label: above an uncertainty threshold, then diverse.

Diversity is farthest-point sampling (FPS) in a per-structure descriptor space: the model's
per-atom descriptors (``calc.get_descriptors``) averaged over atoms of each element, or a simple
smeared radial distribution when the calculator has none. Already labelled structures count as
chosen points, so new picks are far from the training set as well as from each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms


def simple_descriptor(atoms: Atoms, cutoff: float = 6.0, n_bins: int = 30,
                      width: float = 0.15) -> np.ndarray:
    """Gaussian-smeared radial distribution per atom, averaged (one vector per element pair)."""
    from ase.neighborlist import neighbor_list

    symbols = sorted(set(atoms.get_chemical_symbols()))
    centers = np.linspace(0.5, cutoff, n_bins)
    if len(atoms) == 0:
        return np.zeros(n_bins)
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    numbers = np.asarray(atoms.get_chemical_symbols())
    blocks = []
    for a in symbols:
        for b in symbols:
            mask = (numbers[i] == a) & (numbers[j] == b)
            n_a = max(int(np.sum(numbers == a)), 1)
            hist = np.exp(-((d[mask, None] - centers[None, :]) ** 2) / (2 * width**2)).sum(0)
            blocks.append(hist / n_a)
    return np.concatenate(blocks)


def structure_descriptor(atoms: Atoms, calc=None, kind: str = "auto") -> np.ndarray:
    """One vector per structure: the model descriptor averaged per element, or the fallback."""
    if kind in ("auto", "model") and calc is not None and hasattr(calc, "get_descriptors"):
        try:
            per_atom = np.asarray(calc.get_descriptors(atoms), dtype=float)
            symbols = np.asarray(atoms.get_chemical_symbols())
            elements = getattr(calc, "elements", None) or sorted(set(symbols))
            parts = []
            for el in elements:
                mask = symbols == el
                parts.append(per_atom[mask].mean(0) if mask.any() else np.zeros(per_atom.shape[1]))
            return np.concatenate(parts)
        except Exception:  # noqa: BLE001 - fall back rather than stop the loop
            if kind == "model":
                raise
    return simple_descriptor(atoms)


def farthest_point_sampling(
    candidates: np.ndarray, n: int, existing: np.ndarray | None = None, first: int = 0
) -> list[int]:
    """Greedy FPS: indices of `n` rows of `candidates`, each farthest from those chosen so far.

    `existing` (already chosen points, e.g. the training set) seeds the distances; without it
    the first pick is `first`.
    """
    m = len(candidates)
    n = min(n, m)
    if n <= 0:
        return []
    allx = candidates if existing is None or len(existing) == 0 else np.vstack([candidates,
                                                                               existing])
    mu = allx.mean(0)
    sd = allx.std(0)
    sd[sd < 1e-12] = 1.0
    x = (candidates - mu) / sd
    dmin = np.full(m, np.inf)
    chosen: list[int] = []
    if existing is not None and len(existing):
        e = (existing - mu) / sd
        for chunk in np.array_split(e, max(1, len(e) // 256)):
            d = np.linalg.norm(x[:, None, :] - chunk[None, :, :], axis=-1).min(1)
            dmin = np.minimum(dmin, d)
    else:
        chosen.append(int(first))
        dmin = np.minimum(dmin, np.linalg.norm(x - x[first], axis=1))
        dmin[first] = -np.inf
    while len(chosen) < n:
        k = int(np.argmax(dmin))
        if not np.isfinite(dmin[k]) or dmin[k] < 0:
            break
        chosen.append(k)
        dmin = np.minimum(dmin, np.linalg.norm(x - x[k], axis=1))
        dmin[k] = -np.inf
    return chosen


def select_candidates(
    snapshots: Sequence[Atoms],
    uncertainties: Sequence[float],
    *,
    threshold: float,
    max_n: int,
    diversity: str = "fps",
    descriptor: str = "auto",
    calc=None,
    labelled: Sequence[Atoms] = (),
) -> list[int]:
    """Indices of the snapshots to label (most uncertain first when diversity is 'none')."""
    unc = np.asarray(uncertainties, dtype=float)
    above = [i for i in np.argsort(-unc) if unc[i] > threshold]
    if not above or max_n <= 0:
        return []
    if diversity == "none" or len(above) <= 1:
        return [int(i) for i in above[:max_n]]
    desc = np.array([structure_descriptor(snapshots[i], calc, descriptor) for i in above])
    existing = None
    if labelled:
        pool = list(labelled)
        if len(pool) > 200:
            pool = [pool[i] for i in np.linspace(0, len(pool) - 1, 200).astype(int)]
        existing = np.array([structure_descriptor(a, calc, descriptor) for a in pool])
        if existing.shape[1] != desc.shape[1]:
            existing = None
    picks = farthest_point_sampling(desc, max_n, existing, first=0)
    return [int(above[p]) for p in picks]
