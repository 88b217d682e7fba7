"""Generalised Clebsch–Gordan couplings: rotation invariants of products of spherical harmonics.

For orders l_1..l_ν the invariants Σ_m C[m_1..m_ν] Π_t Y_{l_t m_t} are spanned by sequential
couplings l_1 ⊗ l_2 → L_2, L_2 ⊗ l_3 → L_3, …, L_{ν−1} ⊗ l_ν → 0 over all intermediate L. Slots
holding the same one-particle function commute, so each candidate is symmetrised over the
permutations within groups of equal slots, and a linearly independent, orthonormal set is kept
(SVD). Tensors come for the complex harmonics (what ML-PACE needs) and the real ones (what
matloop evaluates), related by :func:`matloop.models.ace.angular.real_to_complex`.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import numpy as np

from matloop.models.ace.angular import real_to_complex

_RANK_TOL = 1e-9


def clebsch_gordan(l1: int, m1: int, l2: int, m2: int, L: int, M: int) -> float:  # noqa: N803
    """⟨l1 m1 l2 m2 | L M⟩ (Condon–Shortley), Racah's formula in float64."""
    if m1 + m2 != M or not abs(l1 - l2) <= L <= l1 + l2:
        return 0.0
    if abs(m1) > l1 or abs(m2) > l2 or abs(M) > L:
        return 0.0
    f = math.factorial
    pre = math.sqrt(
        (2 * L + 1)
        * f(L + l1 - l2)
        * f(L - l1 + l2)
        * f(l1 + l2 - L)
        / f(l1 + l2 + L + 1)
        * f(L + M)
        * f(L - M)
        * f(l1 - m1)
        * f(l1 + m1)
        * f(l2 - m2)
        * f(l2 + m2)
    )
    total = 0.0
    for k in range(0, l1 + l2 - L + 1):
        d = [k, l1 + l2 - L - k, l1 - m1 - k, l2 + m2 - k, L - l2 + m1 + k, L - l1 - m2 + k]
        if min(d) < 0:
            continue
        total += (-1) ** k / math.prod(f(x) for x in d)
    return pre * total


@cache
def cg_block(l1: int, l2: int, L: int) -> np.ndarray:  # noqa: N803
    """Dense ⟨l1 m1 l2 m2 | L M⟩ array (2l1+1, 2l2+1, 2L+1), indices m + l."""
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * L + 1))
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            if abs(m1 + m2) <= L:
                out[m1 + l1, m2 + l2, m1 + m2 + L] = clebsch_gordan(l1, m1, l2, m2, L, m1 + m2)
    return out


def _coupling_paths(ls: tuple[int, ...]) -> list[np.ndarray]:
    """All sequential-coupling invariants (complex basis) for orders `ls`, unsymmetrised."""
    if len(ls) == 1:
        return [np.ones((1,))] if ls[0] == 0 else []
    # states: (tensor over m_1..m_k and M_k, L_k)
    states = [(np.eye(2 * ls[0] + 1), ls[0])]
    for lk in ls[1:-1]:
        new = []
        for tensor, big_l in states:
            for L in range(abs(big_l - lk), big_l + lk + 1):  # noqa: N806
                new.append((np.tensordot(tensor, cg_block(big_l, lk, L), axes=([-1], [0])), L))
        states = new
    last = ls[-1]
    out = []
    for tensor, big_l in states:
        if big_l != last:
            continue
        out.append(np.tensordot(tensor, cg_block(big_l, last, 0)[..., 0], axes=([-1], [0])))
    return out


def _symmetrise(tensor: np.ndarray, groups: tuple[int, ...]) -> np.ndarray:
    """Average over permutations of axes within groups of equal labels."""
    labels = sorted(set(groups))
    slots = [[k for k, g in enumerate(groups) if g == lab] for lab in labels]
    perms = [list(itertools.permutations(s)) for s in slots]
    total = np.zeros_like(tensor)
    count = 0
    for choice in itertools.product(*perms):
        axes = list(range(tensor.ndim))
        for slot, perm in zip(slots, choice, strict=True):
            for a, b in zip(slot, perm, strict=True):
                axes[a] = b
        total = total + np.transpose(tensor, axes)
        count += 1
    return total / count


def _to_real(tensor: np.ndarray, ls: tuple[int, ...]) -> np.ndarray:
    """Coefficients on products of real harmonics of the same invariant (real part)."""
    out = tensor.astype(complex)
    for axis, l in enumerate(ls):  # noqa: E741
        out = np.moveaxis(np.tensordot(out, real_to_complex(l), axes=([axis], [0])), -1, axis)
    return out


@cache
def invariant_couplings(
    ls: tuple[int, ...], groups: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Independent invariants for orders `ls` whose slots with equal `groups` label commute.

    Returns (real, complex), each of shape (k, 2l_1+1, …, 2l_ν+1): row j of `real` is
    orthonormal and gives the same polynomial in real harmonics as row j of `complex` does in
    complex harmonics. k = 0 when no invariant exists (odd Σl, triangle rule).
    """
    shape = tuple(2 * l + 1 for l in ls)  # noqa: E741
    if sum(ls) % 2:
        return np.zeros((0, *shape)), np.zeros((0, *shape))
    paths = [_symmetrise(p, groups) for p in _coupling_paths(ls)]
    if not paths:
        return np.zeros((0, *shape)), np.zeros((0, *shape))
    complex_stack = np.stack(paths).reshape(len(paths), -1)
    real_stack = np.stack([_to_real(p, ls) for p in paths]).reshape(len(paths), -1)
    imag = np.abs(real_stack.imag).max()
    if imag > 1e-10:
        raise AssertionError(f"coupling of ls={ls} is not real in the real basis ({imag:.1e})")
    real_stack = real_stack.real
    u, s, vt = np.linalg.svd(real_stack, full_matrices=False)
    keep = s > _RANK_TOL * max(1.0, s[0])
    weights = u[:, keep].T / s[keep][:, None]
    real = (weights @ real_stack).reshape(-1, *shape)
    cplx = (weights @ complex_stack).reshape(-1, *shape)
    return real, cplx
