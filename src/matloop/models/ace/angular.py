"""Real spherical harmonics in ML-PACE's normalisation (Y_00 = 1) and their complex partners.

Complex harmonics (Condon–Shortley phase, Y_lm = √(4π) × orthonormal Y_lm) are what ML-PACE
uses; matloop evaluates the real ones, Y^r_lm = √2 Re Y_lm (m > 0), √2 Im Y_l|m| (m < 0),
Y_l0 (m = 0), indexed l² + l + m on one axis of length (l_max+1)².
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch


def lm_index(l: int, m: int) -> int:  # noqa: E741 - l is the standard name
    """Position of (l, m) on a (l_max+1)² axis."""
    return l * l + l + m


@cache
def _legendre_constants(lmax: int) -> tuple[list[float], list[float]]:
    """Normalisations N_lm = √((2l+1)(l−m)!/(l+m)!) (m ≥ 0), flat in (l, m) order, and √2."""
    norms = [
        math.sqrt((2 * l + 1) * math.factorial(l - m) / math.factorial(l + m))
        for l in range(lmax + 1)  # noqa: E741
        for m in range(l + 1)
    ]
    return norms, [math.sqrt(2.0)]


def real_spherical_harmonics(unit: torch.Tensor, lmax: int) -> torch.Tensor:
    """Y^r_lm(r̂) for unit vectors (E, 3), shape (E, (lmax+1)²); Y_00 = 1."""
    return _harmonics(unit, lmax, False)[0].T


def real_spherical_harmonics_with_gradient(
    unit: torch.Tensor, lmax: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Y (E, LM) and the tangential gradient ∇_S Y (E, 3, LM) at unit vectors.

    ∂Y(r/|r|)/∂r = ∇_S Y / |r|.
    """
    y, grad = harmonics_transposed(unit, lmax)
    return y.T, grad.permute(2, 0, 1)


def polynomial_harmonics(unit: torch.Tensor, lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Y (LM, E) and ∇ of its polynomial extension (3, LM, E), radial part not removed."""
    return _harmonics(unit, lmax, True)


def harmonics_transposed(unit: torch.Tensor, lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Y (LM, E) and ∇_S Y (3, LM, E): the layout in which they are built (rows contiguous)."""
    y, grad = _harmonics(unit, lmax, True)
    u = unit.T.contiguous()[:, None, :]  # strided operands make the broadcasts slow
    return y, grad - (grad * u).sum(0, keepdim=True) * u


def _harmonics(unit: torch.Tensor, lmax: int, gradient: bool):
    """Y (LM, E) and, with `gradient`, ∇ of the polynomial extension (3, LM, E)."""
    x, y, z = unit.T.contiguous().unbind(0)  # contiguous rows: strided operands are slow
    norms, _ = _legendre_constants(lmax)
    # Re/Im of (x + iy)^m
    cos_m, sin_m = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(lmax):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * x - s * y)
        sin_m.append(c * y + s * x)
    # Q_l^m(z) = P_l^m(z) / sin^m θ (Condon–Shortley phase) and dQ/dz, by the usual recursions
    q: dict[tuple[int, int], torch.Tensor] = {}
    dq: dict[tuple[int, int], torch.Tensor] = {}
    zero = torch.zeros_like(z)
    for m in range(lmax + 1):
        q[m, m] = torch.full_like(z, (-1.0) ** m * _double_factorial(2 * m - 1))
        dq[m, m] = zero
        if m + 1 <= lmax:
            q[m + 1, m] = (2 * m + 1) * z * q[m, m]
            dq[m + 1, m] = (2 * m + 1) * q[m, m]
        for l in range(m + 2, lmax + 1):  # noqa: E741
            a, b = (2 * l - 1) / (l - m), (l + m - 1) / (l - m)
            q[l, m] = a * z * q[l - 1, m] - b * q[l - 2, m]
            if gradient:
                dq[l, m] = a * (q[l - 1, m] + z * dq[l - 1, m]) - b * dq[l - 2, m]
    n_lm = (lmax + 1) ** 2
    # rows written into one block: stacking ~4·LM rows of E values cost a third of the time
    out = unit.new_empty(n_lm, unit.shape[0])
    grad = unit.new_zeros(3, n_lm, unit.shape[0]) if gradient else None
    put = _copy_product if torch.is_grad_enabled() and unit.requires_grad else _mul_into
    k = 0
    sqrt2 = math.sqrt(2.0)
    for l in range(lmax + 1):  # noqa: E741
        centre = l * l + l  # row of (l, m = 0)
        for m in range(l + 1):
            norm = norms[k + m] * (1.0 if m == 0 else sqrt2)
            if m == 0:
                put(out[centre], q[l, 0], norm)
                if gradient:
                    put(grad[2, centre], dq[l, 0], norm)
                continue
            base = norm * q[l, m]
            put(out[centre + m], base, cos_m[m])
            put(out[centre - m], base, sin_m[m])
            if gradient:
                _fill_gradient(put, grad, centre, m, base, norm * dq[l, m], cos_m, sin_m)
        k += l + 1
    return out, grad


def _mul_into(dst: torch.Tensor, a, b) -> None:
    torch.mul(a, b, out=dst)


def _copy_product(dst: torch.Tensor, a, b) -> None:
    """The same as :func:`_mul_into` where autograd must see it (out= is not differentiable)."""
    dst.copy_(a * b)


def _fill_gradient(put, grad, centre: int, m: int, base, dbase, cos_m: list, sin_m: list) -> None:
    """∇ of the polynomial extension of the (l, ±m) rows at `centre` ± m, written by `put`."""
    base_m = base * m
    put(grad[0, centre + m], base_m, cos_m[m - 1])  # ∂x of base·Re(x + iy)^m
    put(grad[0, centre - m], base_m, sin_m[m - 1])  # ∂x of base·Im(x + iy)^m
    put(grad[1, centre + m], grad[0, centre - m], -1.0)
    put(grad[1, centre - m], grad[0, centre + m], 1.0)
    put(grad[2, centre + m], dbase, cos_m[m])
    put(grad[2, centre - m], dbase, sin_m[m])


def _double_factorial(n: int) -> float:
    return float(math.prod(range(n, 0, -2))) if n > 0 else 1.0


@cache
def real_to_complex(l: int) -> np.ndarray:  # noqa: E741
    """V (2l+1, 2l+1) with Y_lm = Σ_m' V[m, m'] Y^r_lm' (rows/cols ordered m = −l..l)."""
    v = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    v[l, l] = 1.0
    s = 1 / math.sqrt(2.0)
    for m in range(1, l + 1):
        # Y_lm = (Y^r_lm + i Y^r_l,−m)/√2 and Y_l,−m = (−1)^m conj(Y_lm)
        v[l + m, l + m] = s
        v[l + m, l - m] = 1j * s
        v[l - m, l + m] = (-1) ** m * s
        v[l - m, l - m] = -1j * (-1) ** m * s
    return v
