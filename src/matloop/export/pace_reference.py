"""An independent evaluator of `.yace` models (float64, analytic radial functions, no splines).

It follows ML-PACE's definitions (see `matloop.export.yace`) without any of matloop's ACE code,
so it can check an export on machines without LAMMPS: energy from the file's numbers, forces
and virial by automatic differentiation. Meant for checks on small cells, not for speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from numpy.polynomial import legendre, polynomial

from matloop.errors import UnknownElementError
from matloop.export.yace import YaceBond, YaceModel


@dataclass(frozen=True)
class PaceResult:
    """Energy (eV), forces (N, 3) (eV/Å) and virial ∂E/∂ε (Voigt xx yy zz yz xz xy, eV)."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray


def _poly_inner(r: torch.Tensor, r_in: float, d_in: float) -> torch.Tensor:
    """ML-PACE's ``cutoff_func_poly``: 1 below r_in − d_in, 0 above r_in, quintic between."""
    if d_in <= 0:
        return (r < r_in).to(r.dtype)
    y = 1.0 - 2.0 * (1.0 + (r - r_in) / d_in)
    mid = 0.5 + 3.75 * (y / 4.0 - y**3 / 6.0 + y**5 / 20.0)
    return torch.where(r <= r_in - d_in, torch.ones_like(r), torch.where(r >= r_in, 0.0 * r, mid))


def _chebyshev(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    t = [torch.ones_like(x), x]
    while len(t) < n:
        t.append(2 * x * t[-1] - t[-2])
    return t[:n]


def _sbessel(r: torch.Tensor, rc: float, k_max: int) -> torch.Tensor:
    """Simplified (orthogonalised) spherical Bessel basis of Kocer et al., ML-PACE's ``SBessel``."""

    def aux(n: int) -> torch.Tensor:
        def sinc(x):
            return torch.where(x == 0, torch.ones_like(x), torch.sin(x) / torch.where(x == 0, 1, x))

        pre = (-1) ** n * math.sqrt(2) * math.pi / rc**1.5 * (n + 1) * (n + 2)
        pre /= math.sqrt((n + 1) ** 2 + (n + 2) ** 2)
        return pre * (sinc(r * (n + 1) * math.pi / rc) + sinc(r * (n + 2) * math.pi / rc))

    out = [aux(0)]
    d_prev = 1.0
    for n in range(1, k_max):
        e_n = n**2 * (n + 2) ** 2 / (4 * (n + 1) ** 4 + 1)
        d_n = 1 - e_n / d_prev
        out.append((aux(n) + math.sqrt(e_n / d_prev) * out[-1]) / math.sqrt(d_n))
        d_prev = d_n
    return torch.stack(out, dim=-1)


def radial_base(r: torch.Tensor, bond: YaceBond) -> torch.Tensor:
    """g_k(r) of one bond, shape (P, K); zero outside (rcut_in − dcut_in, rcut)."""
    rc, k_max, lam = bond.rcut, bond.nradbase, bond.lam
    if bond.radbasename == "ChebExpCos":
        y2 = math.exp(-lam)
        x = 1.0 - 2.0 * (torch.exp(-lam * r / rc) - y2) / (1.0 - y2)
        t = _chebyshev(x, k_max)
        g = torch.stack([t[0]] + [0.5 - 0.5 * tk for tk in t[1:]], dim=-1)
        g = g * (0.5 * (1.0 + torch.cos(math.pi * r / rc)))[:, None]
        if bond.dcut > 0:
            taper = 0.5 * (1.0 + torch.cos(math.pi * (r - rc + bond.dcut) / bond.dcut))
            g = g * torch.where(r > rc - bond.dcut, taper, torch.ones_like(r))[:, None]
    elif bond.radbasename in ("ChebPow", "ChebLinear"):
        y = 1.0 - r / rc
        x = 2.0 * (1.0 - y**lam) - 1.0 if bond.radbasename == "ChebPow" else y
        t = _chebyshev(x, k_max + 1)
        g = torch.stack([0.5 - 0.5 * tk for tk in t[1:]], dim=-1)
    else:
        g = _sbessel(r, rc, k_max)
    g = g * (1.0 - _poly_inner(r, bond.rcut_in, bond.dcut_in))[:, None]
    inside = (r > bond.rcut_in - bond.dcut_in) & (r < rc)
    return torch.where(inside[:, None], g, torch.zeros_like(g))


def core_repulsion(r: torch.Tensor, bond: YaceBond) -> torch.Tensor:
    """ML-PACE's ``radcore`` with distance-type inner cutoff (eV per neighbour)."""
    pre, lam = abs(bond.prehc), abs(bond.lambdahc)
    lr2 = lam * r * r
    cr = pre * torch.exp(-lr2) / r * 0.5 * (1.0 + torch.cos(math.pi * r / bond.rcut))
    cr = torch.where(lr2 < 50.0, cr, torch.zeros_like(cr))
    return cr * _poly_inner(r, bond.rcut_in, bond.dcut_in)


@lru_cache(maxsize=16)
def _legendre_derivatives(lmax: int) -> tuple[tuple[np.ndarray, ...], ...]:
    """Power-series coefficients of dᵐP_l/dzᵐ for 0 ≤ m ≤ l ≤ lmax."""
    out = []
    for l in range(lmax + 1):  # noqa: E741
        p_l = legendre.leg2poly([0] * l + [1])
        out.append(tuple(polynomial.polyder(p_l, m) if m else p_l for m in range(l + 1)))
    return tuple(out)


def spherical_harmonics(u: torch.Tensor, lmax: int) -> torch.Tensor:
    """Complex Y_lm(û) (Condon–Shortley, Y_00 = 1), shape (P, (lmax+1)²), index l² + l + m.

    Uses Y_lm = N_lm (−1)^m (dᵐP_l/dzᵐ)(z) (x + i y)^m for m ≥ 0 and Y_l,−m = (−1)^m conj Y_lm.
    """
    x, y, z = u[:, 0], u[:, 1], u[:, 2]
    xy = torch.complex(x, y)
    cols: dict[int, torch.Tensor] = {}
    derivs = _legendre_derivatives(lmax)
    for l in range(lmax + 1):  # noqa: E741
        for m in range(l + 1):
            norm = math.sqrt((2 * l + 1) * math.factorial(l - m) / math.factorial(l + m))
            poly = sum(float(c) * z**k for k, c in enumerate(derivs[l][m]))
            y_lm = (norm * (-1) ** m) * poly * xy**m
            cols[l * l + l + m] = y_lm
            if m:
                cols[l * l + l - m] = (-1) ** m * torch.conj(y_lm)
    return torch.stack([cols[k] for k in range((lmax + 1) ** 2)], dim=-1)


def _pairs(atoms: Atoms, cutoff: float):
    i, j, shift = neighbor_list("ijS", atoms, cutoff)
    return torch.as_tensor(i), torch.as_tensor(j), torch.as_tensor(shift, dtype=torch.float64)


def evaluate(model: YaceModel, atoms: Atoms) -> PaceResult:
    """Energy, forces and virial of `atoms` under `model` (float64, analytic, autograd)."""
    index = {el: mu for mu, el in enumerate(model.elements)}
    missing = sorted(set(atoms.get_chemical_symbols()) - set(index))
    if missing:
        raise UnknownElementError(f"yace model has no element(s) {', '.join(missing)}")
    species = torch.tensor([index[s] for s in atoms.get_chemical_symbols()])
    rcut = max(b.rcut for b in model.bonds.values())
    ii, jj, shift = _pairs(atoms, rcut)
    pos0 = torch.as_tensor(atoms.positions, dtype=torch.float64).requires_grad_(True)
    cell0 = torch.as_tensor(np.asarray(atoms.cell), dtype=torch.float64)
    strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    deform = torch.eye(3, dtype=torch.float64) + 0.5 * (strain + strain.T)
    pos, cell = pos0 @ deform, cell0 @ deform
    vec = pos[jj] - pos[ii] + shift @ cell
    energy = _energy(model, species, ii, jj, vec, len(atoms))
    grad_pos, grad_strain = torch.autograd.grad(energy, (pos0, strain))
    g = grad_strain.detach().numpy()
    virial = np.array([g[0, 0], g[1, 1], g[2, 2], g[1, 2], g[0, 2], g[0, 1]])
    return PaceResult(float(energy.detach()), -grad_pos.numpy(), virial)


def _energy(model, species, ii, jj, vec, n_atoms) -> torch.Tensor:
    n_el = len(model.elements)
    r = vec.norm(dim=1)
    lmax = max(b.lmax for b in model.bonds.values())
    nrad = max(b.nradmax for b in model.bonds.values())
    nbase = max(b.nradbase for b in model.bonds.values())
    lm = (lmax + 1) ** 2
    a_rad = torch.zeros(n_atoms, n_el, nrad, lm, dtype=torch.complex128)
    a_rank1 = torch.zeros(n_atoms, n_el, nbase, dtype=torch.float64)
    energy = torch.tensor(model.e0, dtype=torch.float64)[species].sum()
    for (mi, mj), bond in model.bonds.items():
        sel = (species[ii] == mi) & (species[jj] == mj) & (r < bond.rcut)
        if not bool(sel.any()):
            continue
        rs, centres = r[sel], ii[sel]
        g = radial_base(rs, bond)
        energy = energy + core_repulsion(rs, bond).sum()
        a_rank1[:, mj, : bond.nradbase] = a_rank1[:, mj, : bond.nradbase].index_add(0, centres, g)
        crad = torch.as_tensor(bond.crad, dtype=torch.float64)
        rnl = torch.einsum("nlk,pk->pnl", crad, g)
        ls = torch.tensor([ell for ell in range(bond.lmax + 1) for _ in range(2 * ell + 1)])
        ylm = spherical_harmonics(vec[sel] / rs[:, None], bond.lmax)
        phi = rnl[:, :, ls].to(torch.complex128) * ylm[:, None, :]
        width = (bond.lmax + 1) ** 2
        block = torch.zeros(n_atoms, bond.nradmax, width, dtype=torch.complex128)
        a_rad[:, mj, : bond.nradmax, :width] = a_rad[
            :, mj, : bond.nradmax, :width
        ] + block.index_add(0, centres, phi)
    for mu0, funcs in model.functions.items():
        centre = species == mu0
        for f in funcs:
            energy = energy + _function_energy(f, a_rank1[centre], a_rad[centre])
    return energy


def _function_energy(f, a_rank1: torch.Tensor, a_rad: torch.Tensor) -> torch.Tensor:
    c = torch.tensor(f.ctildes, dtype=torch.float64)
    if f.rank == 1:
        return c.sum() * a_rank1[:, f.mus[0], f.ns[0] - 1].sum()
    ms = torch.tensor(f.ms_combs)  # (M, rank)
    prod = None
    for t in range(f.rank):
        col = a_rad[:, f.mus[t], f.ns[t] - 1, f.ls[t] * f.ls[t] + f.ls[t] + ms[:, t]]  # (N, M)
        prod = col if prod is None else prod * col
    return (prod.real * c).sum()
