"""Radial base g_k(r) (ML-PACE's ``ChebExpCos``, ``distance`` inner cutoff) and core repulsion.

See CONVENTIONS.md for the formulas; lengths in Å, energies in eV. Parameters may differ per
ordered element pair (μ_i, μ_j); an edge carries its pair index μ_i·n_el + μ_j.
"""

from __future__ import annotations

import math

import torch


def inner_switch(r: torch.Tensor, r_in: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """PACE's ``cutoff_func_poly``: 1 for r ≤ r_in − width, 0 for r ≥ r_in, C² in between."""
    return inner_switch_with_derivative(r, r_in, width)[0]


def inner_switch_with_derivative(
    r: torch.Tensor, r_in: torch.Tensor, width: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The inner switch and its derivative d/dr (1/Å)."""
    y = 1 - 2 * (1 + (r - r_in) / width)
    mid = 0.5 + 3.75 * (y / 4 - y**3 / 6 + y**5 / 20)
    dmid = -7.5 / width * (0.25 - y * y / 2 + y**4 / 4)
    inside = (r > r_in - width) & (r < r_in)
    below = r <= r_in - width
    value = torch.where(inside, mid, below.to(r.dtype))
    return value, torch.where(inside, dmid, torch.zeros_like(r))


def _chebyshev(x: torch.Tensor, count: int, p0: float, p1: torch.Tensor) -> torch.Tensor:
    """(count, E): P_0 = `p0`, P_1 = `p1`, P_k = 2x P_{k−1} − P_{k−2} (T_k: 1, x; U_{k−1}: 0, 1).

    Without autograd the rows are written in place: per-k temporaries and a stack cost about
    twice as much on the 10⁴–10⁵ edges of an MD step.
    """
    if torch.is_grad_enabled() and (x.requires_grad or p1.requires_grad):
        rows = [torch.full_like(x, p0), p1][:count]
        for _ in range(2, count):
            rows.append(2 * x * rows[-1] - rows[-2])
        return torch.stack(rows) if rows else x.new_zeros(0, len(x))
    out = x.new_empty(count, len(x))
    if count:
        out[0] = p0
    if count > 1:
        out[1] = p1
    two_x = 2 * x
    for k in range(2, count):
        torch.mul(two_x, out[k - 1], out=out[k])
        out[k].sub_(out[k - 2])
    return out


class RadialBasis(torch.nn.Module):
    """g_k(r), k = 0..K−1, per element pair, with smooth outer and inner cutoffs."""

    def __init__(
        self,
        n_basis: int,
        cutoff: float,
        inner_cutoff: torch.Tensor,
        inner_width: float,
        scale: float = 2.0,
        outer_width: float = 0.0,
        core_strength: float = 0.0,
        core_decay: float = 1.0,
    ) -> None:
        """`inner_cutoff` (n_el, n_el) r_in (Å); `scale` λ; core prehc (eV·Å), λ_hc (Å⁻²)."""
        super().__init__()
        self.n_basis = int(n_basis)
        self.cutoff = float(cutoff)
        self.scale = float(scale)
        self.outer_width = float(outer_width)
        self.inner_width = float(inner_width)
        self.core_strength = float(core_strength)
        self.core_decay = float(core_decay)
        self.register_buffer("inner_cutoff", inner_cutoff.reshape(-1).double().clone())

    def forward(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """g (E, K) for distances r (E,) (Å) and pair indices (E,)."""
        return self.with_derivative(r, pair, derivative=False)[0]

    def with_derivative(
        self, r: torch.Tensor, pair: torch.Tensor, derivative: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """g (E, K) and dg/dr (E, K) (1/Å) when `derivative`."""
        rc, lam, k_max = self.cutoff, self.scale, self.n_basis
        y2 = math.exp(-lam)
        ex = torch.exp(-lam * r / rc)
        x = 1 - 2 * (ex - y2) / (1 - y2)
        t = _chebyshev(x, k_max, 1.0, x)  # T_k(x), (K, E)
        k = torch.arange(k_max, dtype=x.dtype)[:, None]
        first = (k == 0).to(x.dtype)
        h = torch.addcmul(0.5 - 0.5 * first, 1.5 * first - 0.5, t)  # h_0 = 1, h_k = (1 − T_k)/2
        env, denv = self.envelope(r, pair, derivative)
        g = (h * env).T.contiguous()
        if not derivative:
            return g, None
        # dT_k/dx = k U_{k−1}(x); V_k = U_{k−1} follows the same recursion from V_0 = 0, V_1 = 1
        v = _chebyshev(x, k_max, 0.0, torch.ones_like(x))
        dx = 2 * (lam / rc) * ex / (1 - y2)
        dh = (-0.5 * k) * v * dx
        return g, (dh * env + h * denv).T.contiguous()

    def envelope(
        self, r: torch.Tensor, pair: torch.Tensor, derivative: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cutoff factor common to all g_k (E,): outer cosine(s) × (1 − inner switch), and d/dr."""
        rc = self.cutoff
        arg = math.pi * r / rc
        env = 0.5 * (1 + torch.cos(arg))
        denv = -0.5 * math.pi / rc * torch.sin(arg)
        if self.outer_width > 0:
            start = rc - self.outer_width
            targ = math.pi * (r - start) / self.outer_width
            taper = torch.where(r > start, 0.5 * (1 + torch.cos(targ)), torch.ones_like(r))
            dtaper = torch.where(
                r > start, -0.5 * math.pi / self.outer_width * torch.sin(targ), torch.zeros_like(r)
            )
            env, denv = env * taper, denv * taper + env * dtaper
        r_in = self.inner_cutoff.to(r.dtype)[pair]
        sw, dsw = inner_switch_with_derivative(r, r_in, torch.full_like(r, self.inner_width))
        env, denv = env * (1 - sw), denv * (1 - sw) - env * dsw
        inside = r < rc
        env = torch.where(inside, env, torch.zeros_like(env))
        return env, (torch.where(inside, denv, torch.zeros_like(env)) if derivative else None)

    def core_repulsion(self, r: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """cr(r) per edge (eV): prehc·exp(−λ_hc r²)/r·½(1+cos(πr/rc))·f_in(r) (PACE ``radcore``)."""
        return self.core_repulsion_with_derivative(r, pair)[0]

    def core_repulsion_with_derivative(
        self, r: torch.Tensor, pair: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cr(r) (eV) and dcr/dr (eV/Å) per edge."""
        if self.core_strength == 0:
            return torch.zeros_like(r), torch.zeros_like(r)
        rc, lam = self.cutoff, abs(self.core_decay)
        arg = math.pi * r / rc
        env = 0.5 * (1 + torch.cos(arg))
        denv = -0.5 * math.pi / rc * torch.sin(arg)
        r_in = self.inner_cutoff.to(r.dtype)[pair]
        sw, dsw = inner_switch_with_derivative(r, r_in, torch.full_like(r, self.inner_width))
        value = abs(self.core_strength) * torch.exp(-lam * r * r) / r
        dvalue = value * (-2 * lam * r - 1 / r)
        cr = value * env * sw
        dcr = dvalue * env * sw + value * (denv * sw + env * dsw)
        inside = r < rc
        zero = torch.zeros_like(r)
        return torch.where(inside, cr, zero), torch.where(inside, dcr, zero)
