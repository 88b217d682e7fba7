"""Choose which explored snapshots to label: informative and diverse batches.

Methods (``method``):

- ``fps``: snapshots above an uncertainty threshold, then farthest-point sampling (FPS) in a
  per-structure descriptor space: the model's per-atom descriptors (``calc.get_descriptors``)
  averaged over atoms of each element, or a smeared radial distribution when the calculator has
  none. Already labelled structures count as chosen points.
- ``sigma_fps``: greedy, each pick maximising σ × (distance to the nearest chosen or labelled
  structure) in the same space: uncertain and diverse at once.
- ``dopt``: greedy D-optimal design in the model's per-atom feature space (for linear models the
  energy is features · coefficients): each pick maximises the information gain
  log det(I + Φ_c A⁻¹ Φ_cᵀ) of its atoms' features Φ_c given A = λI + Σ ΦᵀΦ over the labelled
  structures' atoms and the picks so far — new local environments, not repeats of one.
- ``vopt``: greedy V-optimal (I-optimal) design in the same space: each pick maximises the
  expected reduction of the posterior variance summed over every atom of the explored pool,
  tr(M (A⁻¹ − (A + Φ_cᵀΦ_c)⁻¹)) with M = Σ_pool ΦᵀΦ — information on the distribution the
  walkers sample (the conditions of use), not on its rare extremes.
- ``auto``: ``dopt`` for a model whose energy is linear in its per-atom features (one ``ace``
  model), else ``sigma_fps`` (:func:`resolve_selection`).

Whatever the method, a snapshot that repeats a more uncertain one or a labelled structure
(identical or symmetry-equivalent, :func:`distinct`) is not a candidate.

``diversity="none"`` (the most uncertain first) is a variant of ``fps`` only, and
``descriptor`` is the space of the ``fps`` and ``sigma_fps`` distances; a configuration in which
either would have no effect is refused (:func:`selection_conflict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from ase import Atoms


def simple_descriptor(
    atoms: Atoms,
    cutoff: float = 6.0,
    n_bins: int = 30,
    width: float = 0.15,
    elements: Sequence[str] | None = None,
) -> np.ndarray:
    """Gaussian-smeared radial distribution per atom, averaged (one vector per element pair).

    `elements` (default: those of `atoms`) fixes the pairs, so that structures of different
    compositions give vectors of one length (zeros for an absent element)."""
    from ase.neighborlist import neighbor_list

    symbols = sorted(elements) if elements else sorted(set(atoms.get_chemical_symbols()))
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


def structure_descriptor(
    atoms: Atoms, calc=None, kind: str = "auto", elements: Sequence[str] | None = None
) -> np.ndarray:
    """One vector per structure: the model descriptor averaged per element, or the fallback.

    `elements`: the elements of every structure compared (one vector length for all)."""
    if kind in ("auto", "model") and calc is not None and hasattr(calc, "get_descriptors"):
        try:
            per_atom = np.asarray(calc.get_descriptors(atoms), dtype=float)
            symbols = np.asarray(atoms.get_chemical_symbols())
            elements = getattr(calc, "elements", None) or elements or sorted(set(symbols))
            parts = []
            for el in elements:
                mask = symbols == el
                parts.append(per_atom[mask].mean(0) if mask.any() else np.zeros(per_atom.shape[1]))
            return np.concatenate(parts)
        except Exception:  # noqa: BLE001 - fall back rather than stop the loop
            if kind == "model":
                raise
    return simple_descriptor(atoms, elements=elements)


_FINGERPRINTS: dict[bytes, np.ndarray] = {}


def _fingerprint(atoms: Atoms) -> np.ndarray:
    """:func:`simple_descriptor` of `atoms`, remembered by content (the labelled structures
    are compared again every iteration)."""
    import hashlib

    h = hashlib.sha1(np.ascontiguousarray(atoms.positions, dtype=float).tobytes())
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.asarray(atoms.cell, dtype=float).tobytes() + bytes(atoms.pbc.tolist()))
    key = h.digest()
    if key not in _FINGERPRINTS:
        if len(_FINGERPRINTS) > 20_000:
            _FINGERPRINTS.clear()
        _FINGERPRINTS[key] = simple_descriptor(atoms)
    return _FINGERPRINTS[key]


def _same(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    return bool(np.linalg.norm(a - b) <= rtol * max(np.linalg.norm(a), np.linalg.norm(b), 1e-12))


def distinct(
    structures: Sequence[Atoms], known: Sequence[Atoms] = (), rtol: float = 1e-6
) -> list[int]:
    """Indices of `structures` that repeat neither an earlier one nor one of `known`.

    Repeats are the same structure or a symmetry-equivalent copy (translated, rotated, atoms
    permuted): same composition, periodicity and smeared radial distribution
    (:func:`simple_descriptor`, equal within `rtol`). Distinct MD snapshots differ far more.
    """

    def key(a: Atoms) -> tuple:
        return a.get_chemical_formula(), tuple(bool(p) for p in a.pbc)

    keys = [key(a) for a in structures]
    seen: dict[tuple, list[np.ndarray]] = {}
    wanted = set(keys)
    for a in known:
        if key(a) in wanted:
            seen.setdefault(key(a), []).append(_fingerprint(a))
    keep = []
    for i, (a, k) in enumerate(zip(structures, keys, strict=True)):
        d = _fingerprint(a)
        if any(_same(d, e, rtol) for e in seen.get(k, ())):
            continue
        keep.append(i)
        seen.setdefault(k, []).append(d)
    return keep


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
    allx = (
        candidates if existing is None or len(existing) == 0 else np.vstack([candidates, existing])
    )
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


def _subsample(labelled: Sequence[Atoms], n: int = 200) -> list[Atoms]:
    pool = list(labelled)
    if len(pool) > n:
        pool = [pool[i] for i in np.linspace(0, len(pool) - 1, n).astype(int)]
    return pool


def resolve_selection(
    method: str, *, calc=None, family: str | None = None, members: int = 1
) -> str:
    """The method ``auto`` stands for (other methods unchanged): ``dopt`` for a model linear in
    its per-atom features, else ``sigma_fps``. Linear: ``has_linear_features(calc)`` when `calc`
    is given (the loop), else one member (`members` == 1) of a family registered as ``linear``
    (a configuration, before any model exists; a committee's mean is not linear)."""
    if method != "auto":
        return method
    if calc is not None:
        from matloop.calculators.uncertainty import has_linear_features

        linear = has_linear_features(calc)
    else:
        from matloop.models import FAMILIES

        spec = FAMILIES.get(family) if family is not None else None
        linear = spec is not None and spec.linear and members == 1
    return "dopt" if linear else "sigma_fps"


def selection_conflict(
    method: str,
    diversity: str = "fps",
    descriptor: str = "auto",
    *,
    family: str | None = None,
    members: int = 1,
) -> str | None:
    """Why `diversity` or `descriptor` would have no effect with `method` (one line), or None.

    ``sigma_fps``, ``dopt``, ``vopt`` and ``auto`` (one of those) make their own diverse choice,
    so ``diversity="none"`` belongs to ``fps``; ``dopt`` and ``vopt`` work in the model's per-atom
    feature space and ``diversity="none"`` uses no distances, so neither has a descriptor.
    ``auto`` is resolved with the model `family` and its number of `members`
    (:func:`resolve_selection`); without a family it may be ``sigma_fps``, which has one."""
    if diversity == "none" and method != "fps":
        return (
            f"select.diversity: none (most uncertain first) applies to strategy.selection: fps "
            f"only; strategy.selection: {method} makes its own diverse choice: set "
            "select.diversity: fps, or strategy.selection: fps"
        )
    if descriptor == "auto":
        return None
    used = method if family is None else resolve_selection(method, family=family, members=members)
    fix = "set select.descriptor: auto"
    if used in ("dopt", "vopt") and method == "auto":
        why = (
            f"strategy.selection: auto ({used} for one model of the linear family {family}: it "
            "uses the model's per-atom features)"
        )
        fix += ", or strategy.selection: sigma_fps to use it"
    elif used in ("dopt", "vopt"):
        why = f"strategy.selection: {method} (it uses the model's per-atom features)"
    elif diversity == "none":
        why = "select.diversity: none (no distances)"
    else:
        return None
    return f"select.descriptor: {descriptor} has no effect with {why}; {fix}"


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
    method: str = "fps",
) -> list[int]:
    """Indices of the snapshots to label (most uncertain first when diversity is 'none').

    ``diversity="none"`` with another `method` than ``fps`` is a ConfigError
    (:func:`selection_conflict`; the configuration also refuses an unused ``descriptor``)."""
    conflict = selection_conflict(method, diversity)
    if conflict:
        from matloop.errors import ConfigError

        raise ConfigError(conflict)
    unc = np.asarray(uncertainties, dtype=float)
    above = [int(i) for i in np.argsort(-unc) if unc[i] > threshold]
    if not above or max_n <= 0:
        return []
    # a repeat of a more uncertain candidate or of a labelled structure adds nothing
    above = [above[k] for k in distinct([snapshots[i] for i in above], labelled)]
    if not above:
        return []
    method = resolve_selection(method, calc=calc)
    if method == "dopt":
        return dopt_select([snapshots[i] for i in above], calc, max_n, labelled, above)
    if method == "vopt":
        cands = [snapshots[i] for i in above]
        return dopt_select(cands, calc, max_n, labelled, above, pool=list(snapshots))
    if diversity == "none" or len(above) <= 1:
        return above[:max_n]
    pool = _subsample(labelled) if labelled else []
    elements = sorted({s for a in [*(snapshots[i] for i in above), *pool] for s in a.symbols})
    desc = np.array([structure_descriptor(snapshots[i], calc, descriptor, elements) for i in above])
    existing = None
    if pool:
        existing = np.array([structure_descriptor(a, calc, descriptor, elements) for a in pool])
        if existing.shape[1] != desc.shape[1]:
            existing = None
    if method == "sigma_fps":
        picks = sigma_fps(desc, unc[above], max_n, existing)
    else:
        picks = farthest_point_sampling(desc, max_n, existing, first=0)
    return [above[p] for p in picks]


def sigma_fps(
    candidates: np.ndarray, sigma: np.ndarray, n: int, existing: np.ndarray | None = None
) -> list[int]:
    """Greedy picks maximising σ × distance to the nearest chosen/existing point (standardised
    descriptor space); the first pick without `existing` is the most uncertain."""
    allx = (
        candidates if existing is None or len(existing) == 0 else np.vstack([candidates, existing])
    )
    mu, sd = allx.mean(0), allx.std(0)
    sd[sd < 1e-12] = 1.0
    x = (candidates - mu) / sd
    dmin = np.full(len(x), np.inf)
    if existing is not None and len(existing):
        e = (existing - mu) / sd
        for chunk in np.array_split(e, max(1, len(e) // 256)):
            dmin = np.minimum(dmin, np.linalg.norm(x[:, None] - chunk[None], axis=-1).min(1))
    sigma = np.maximum(np.asarray(sigma, dtype=float), 1e-300)
    chosen: list[int] = []
    while len(chosen) < min(n, len(x)):
        score = sigma * np.where(np.isfinite(dmin), dmin, 1.0)
        score[chosen] = -np.inf
        k = int(np.argmax(score))
        if not np.isfinite(score[k]) or (chosen and dmin[k] <= 1e-12):
            break
        chosen.append(k)
        dmin = np.minimum(dmin, np.linalg.norm(x - x[k], axis=1))
    return chosen


def information_gains(features: Sequence[np.ndarray], info: np.ndarray) -> np.ndarray:
    """log det(I + Φ A⁻¹ Φᵀ) of each per-atom feature block Φ (n_atoms, P) given A (P, P)."""
    from scipy.linalg import cho_factor, cho_solve

    factor = cho_factor(info, lower=True)
    gains = np.empty(len(features))
    for k, phi in enumerate(features):
        m = np.eye(len(phi)) + phi @ cho_solve(factor, phi.T)
        gains[k] = np.linalg.slogdet(m)[1]
    return gains


def dopt_select(
    candidates: Sequence[Atoms],
    calc,
    n: int,
    labelled: Sequence[Atoms] = (),
    index: Sequence[int] | None = None,
    ridge: float = 1e-3,
    pool: Sequence[Atoms] | None = None,
) -> list[int]:
    """Greedy D-optimal batch: indices (into `index`, default 0..) of `n` candidate structures.
    With `pool` (the explored snapshots), V-optimal instead (:func:`vopt_greedy`).

    Features are the calculator's per-atom features (:func:`~matloop.calculators.uncertainty.
    atom_features`), standardised by the labelled atoms' spread for models whose features are
    not linear coefficients; A starts at ridge·trace-scaled identity plus the labelled atoms'
    ΦᵀΦ and grows with every pick.
    """
    from matloop.calculators.uncertainty import atom_features, has_linear_features

    index = list(range(len(candidates))) if index is None else list(index)
    feats = [atom_features(calc, a) for a in candidates]
    pool_feats = None if pool is None else [atom_features(calc, a) for a in pool]
    if any(f is None for f in feats + (pool_feats or [])):
        from matloop.errors import ConfigError

        method = "dopt" if pool is None else "vopt"
        raise ConfigError(f"selection '{method}' needs a model with per-atom features")
    train = [atom_features(calc, a) for a in _subsample(labelled, 400)]
    ref = np.vstack(train) if train else np.vstack(feats)
    if not has_linear_features(calc):
        mu, sd = ref.mean(0), ref.std(0)
        sd[sd < 1e-12] = 1.0
        feats = [(f - mu) / sd for f in feats]
        train = [(f - mu) / sd for f in train]
        pool_feats = None if pool_feats is None else [(f - mu) / sd for f in pool_feats]
    if pool_feats is not None:
        return [index[k] for k in vopt_greedy(feats, train, np.vstack(pool_feats), n, ridge)]
    return [index[k] for k in dopt_greedy(feats, train, n, ridge)]


def _information(known: Sequence[np.ndarray], p: int, ridge: float) -> np.ndarray:
    """A = ridge·(trace/P)·I + Σ_known ΦᵀΦ (P, P)."""
    info = np.zeros((p, p))
    for f in known:
        info += f.T @ f
    scale = np.trace(info) / p if np.trace(info) > 0 else 1.0
    return info + ridge * scale * np.eye(p)


def dopt_greedy(
    features: Sequence[np.ndarray], known: Sequence[np.ndarray], n: int, ridge: float = 1e-3
) -> list[int]:
    """Greedy D-optimal choice of `n` feature blocks (n_atoms, P) given the `known` blocks.

    A = ridge·(trace/P)·I + Σ_known ΦᵀΦ; each pick maximises log det(I + Φ A⁻¹ Φᵀ), then joins A.
    """
    return _greedy(features, known, n, ridge, information_gains)


def variance_reductions(
    features: Sequence[np.ndarray], info: np.ndarray, pool: np.ndarray
) -> np.ndarray:
    """Drop of Σ_pool φ A⁻¹ φᵀ (summed posterior variance over the pool's atoms) if each block
    Φ joined A: tr(S⁻¹ Φ A⁻¹ M A⁻¹ Φᵀ), S = I + Φ A⁻¹ Φᵀ, M = poolᵀ pool (Woodbury)."""
    from scipy.linalg import cho_factor, cho_solve

    factor = cho_factor(info, lower=True)
    b = cho_solve(factor, cho_solve(factor, pool.T @ pool).T)  # A⁻¹ M A⁻¹ (symmetric)
    out = np.empty(len(features))
    for k, phi in enumerate(features):
        g = phi @ cho_solve(factor, phi.T)
        h = phi @ b @ phi.T
        out[k] = np.trace(np.linalg.solve(np.eye(len(phi)) + g, h))
    return out


def vopt_greedy(
    features: Sequence[np.ndarray],
    known: Sequence[np.ndarray],
    pool: np.ndarray,
    n: int,
    ridge: float = 1e-3,
) -> list[int]:
    """Greedy V-optimal choice of `n` feature blocks (n_atoms, P): each pick most reduces the
    posterior variance summed over the `pool` rows (n_pool_atoms, P), then joins A."""
    return _greedy(features, known, n, ridge, lambda f, info: variance_reductions(f, info, pool))


def _greedy(
    features: Sequence[np.ndarray],
    known: Sequence[np.ndarray],
    n: int,
    ridge: float,
    gain: Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray],
) -> list[int]:
    """Pick up to `n` blocks one at a time by the largest `gain(features, A)`, each joining A."""
    info = _information(known, features[0].shape[1], ridge)
    chosen: list[int] = []
    while len(chosen) < min(n, len(features)):
        gains = gain(features, info)
        gains[chosen] = -np.inf
        k = int(np.argmax(gains))
        if not np.isfinite(gains[k]):
            break
        chosen.append(k)
        info += features[k].T @ features[k]
    return chosen
