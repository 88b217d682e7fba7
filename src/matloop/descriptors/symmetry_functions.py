"""Atom-centred symmetry functions (Behler–Parrinello) in PyTorch.

Radial G2 and angular G5-type functions with a smooth cosine cutoff, element resolved:

    G2_i[k, s]  = Σ_{j∈s}   exp(−η_k (r_ij − Rs_k)²) · fc(r_ij)
    G5_i[m, p]  = Σ_{j<k, (s_j,s_k)=p} 2^(1−ζ_m) (1 + λ_m cos θ_ijk)^ζ_m
                  · exp(−η_m [(r_ij − Rs_m)² + (r_ik − Rs_m)²]) · fc_a(r_ij) · fc_a(r_ik)

with fc(r) = ½[cos(π r / rc) + 1] for r < rc. Everything is a differentiable function of the
edge vectors r_ij, so forces (F = −∂E/∂R) and stress (strain derivative) follow from autograd;
no derivative is written by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from matloop.descriptors.params import SymmetryFunctionParams


def cosine_cutoff(r: torch.Tensor, rc: float) -> torch.Tensor:
    """½[cos(π r / rc) + 1] inside rc, 0 outside (smooth value and first derivative at rc)."""
    fc = 0.5 * (torch.cos(math.pi * r / rc) + 1.0)
    return torch.where(r < rc, fc, torch.zeros_like(r))


@dataclass
class Triplets:
    """Pairs of edges (a, b) sharing the centre atom, a < b, both within the angular cutoff."""

    first: np.ndarray  # (n_triplets,) edge index
    second: np.ndarray  # (n_triplets,) edge index


def build_triplets(centers: np.ndarray, distances: np.ndarray, rc_angular: float) -> Triplets:
    """All unordered edge pairs around each centre within `rc_angular`.

    `centers` must be sorted (as :func:`matloop.neighbors.neighbor_list` returns them).
    """
    ang = np.flatnonzero(distances < rc_angular)
    if len(ang) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Triplets(empty, empty)
    c = centers[ang]
    # position of each angular edge within its centre's group, and the group size
    starts = np.r_[0, np.flatnonzero(np.diff(c)) + 1]
    sizes = np.diff(np.r_[starts, len(c)])
    group_start = np.repeat(starts, sizes)
    local = np.arange(len(c)) - group_start
    size = np.repeat(sizes, sizes)
    n_partners = size - local - 1
    total = int(n_partners.sum())
    first_local = np.repeat(np.arange(len(c)), n_partners)
    offsets = np.repeat(np.cumsum(n_partners) - n_partners, n_partners)
    second_local = first_local + 1 + (np.arange(total) - offsets)
    return Triplets(ang[first_local], ang[second_local])


class SymmetryFunctions(torch.nn.Module):
    """Element-resolved G2/G5 symmetry functions as a function of edge vectors.

    Feature layout per atom: radial block ``(n_radial, n_elements)`` flattened, then the angular
    block ``(n_angular_radial, n_angles, n_element_pairs)`` flattened. The angular value of a
    triplet factorises into a radial factor per edge and an angle factor, which keeps the cost
    per triplet to a few multiplications.
    """

    def __init__(self, n_elements: int, params: SymmetryFunctionParams) -> None:
        super().__init__()
        self.params = params
        self.n_elements = n_elements
        self.cutoff = float(params.cutoff)
        self.angular_cutoff = float(params.rc_angular)
        radial = torch.tensor(params.radial_grid(), dtype=torch.float64)
        ang_radial = torch.tensor(params.angular_radial_grid(), dtype=torch.float64)
        angles = params.angle_grid()
        self.register_buffer("radial_eta", radial[:, 0].clone())
        self.register_buffer("radial_rs", radial[:, 1].clone())
        self.register_buffer("angular_eta", ang_radial[:, 0].clone())
        self.register_buffer("angular_rs", ang_radial[:, 1].clone())
        zetas = torch.tensor([z for z, _ in angles], dtype=torch.float64)
        self.register_buffer("angle_lambda", torch.tensor([lam for _, lam in angles]))
        self.register_buffer("angle_prefactor", 2.0 ** (1.0 - zetas))
        # integer powers of two are computed by repeated squaring (exact and fast)
        self._zetas = [float(z) for z, _ in angles]
        pair = torch.zeros(n_elements, n_elements, dtype=torch.long)
        k = 0
        for a in range(n_elements):
            for b in range(a, n_elements):
                pair[a, b] = pair[b, a] = k
                k += 1
        self.n_pairs = k
        self.register_buffer("pair_index", pair)

    @property
    def n_radial(self) -> int:
        return int(self.radial_eta.numel())

    @property
    def n_angular(self) -> int:
        """Angular functions per element pair."""
        return int(self.angular_eta.numel()) * len(self._zetas)

    @property
    def n_radial_features(self) -> int:
        return self.n_radial * self.n_elements

    @property
    def n_angular_features(self) -> int:
        return self.n_angular * self.n_pairs

    @property
    def n_features(self) -> int:
        return self.n_radial_features + self.n_angular_features

    def radial_terms(self, vectors: torch.Tensor) -> torch.Tensor:
        """Per-edge radial values exp(−η(r−Rs)²)·fc(r), shape (n_edges, n_radial)."""
        r = torch.linalg.norm(vectors, dim=-1)
        fc = cosine_cutoff(r, self.cutoff)
        return torch.exp(-self.radial_eta * (r[:, None] - self.radial_rs) ** 2) * fc[:, None]

    def angular_radial_factor(self, vectors: torch.Tensor) -> torch.Tensor:
        """Per-edge exp(−η(r−Rs)²)·fc_a(r), shape (n_edges, n_angular_radial)."""
        r = torch.linalg.norm(vectors, dim=-1)
        fc = cosine_cutoff(r, self.angular_cutoff)
        return torch.exp(-self.angular_eta * (r[:, None] - self.angular_rs) ** 2) * fc[:, None]

    def angle_factor(self, cos: torch.Tensor) -> torch.Tensor:
        """2^(1−ζ)(1 + λ cos θ)^ζ for every (ζ, λ), shape (n_triplets, n_angles)."""
        base = torch.clamp(1.0 + self.angle_lambda * cos[:, None], min=0.0)
        powers: dict[float, torch.Tensor] = {1.0: base}
        columns = []
        for k, zeta in enumerate(self._zetas):
            if zeta not in powers:
                half = zeta / 2.0
                if half in powers or (half >= 1 and half.is_integer() and half in powers):
                    powers[zeta] = powers[half] * powers[half]
                else:
                    powers[zeta] = base**zeta
            columns.append(powers[zeta][:, k])
        return torch.stack(columns, dim=1) * self.angle_prefactor

    def _combine(self, rad_a: torch.Tensor, rad_b: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        radial = rad_a * rad_b  # (T, n_angular_radial)
        angle = self.angle_factor(cos)  # (T, n_angles)
        return (radial[:, :, None] * angle[:, None, :]).reshape(len(cos), self.n_angular)

    def angular_terms(self, va: torch.Tensor, vb: torch.Tensor) -> torch.Tensor:
        """Per-triplet angular values from the two edge vectors, shape (n_triplets, n_angular)."""
        cos = (va * vb).sum(-1) / (torch.linalg.norm(va, dim=-1) * torch.linalg.norm(vb, dim=-1))
        return self._combine(self.angular_radial_factor(va), self.angular_radial_factor(vb), cos)

    def forward(
        self,
        vectors: torch.Tensor,
        centers: torch.Tensor,
        neighbor_species: torch.Tensor,
        triplet_first: torch.Tensor,
        triplet_second: torch.Tensor,
        n_atoms: int,
    ) -> torch.Tensor:
        """Descriptors G, shape (n_atoms, n_features), differentiable w.r.t. `vectors`."""
        n_el = self.n_elements
        n_edges = len(vectors)
        rad = self.radial_terms(vectors)
        if n_el == 1:
            rad_full = rad
        else:
            onehot = torch.nn.functional.one_hot(neighbor_species, n_el).to(rad)
            rad_full = (rad[:, :, None] * onehot[:, None]).reshape(n_edges, self.n_radial_features)
        g_rad = vectors.new_zeros(n_atoms, self.n_radial_features).index_add(0, centers, rad_full)
        # angular: per-edge quantities first, then gathered per triplet
        r = torch.linalg.norm(vectors, dim=-1)
        unit = vectors / r[:, None]
        edge_factor = self.angular_radial_factor(vectors)
        cos = (unit[triplet_first] * unit[triplet_second]).sum(-1)
        ang = self._combine(edge_factor[triplet_first], edge_factor[triplet_second], cos)
        if self.n_pairs > 1:
            pair = self.pair_index[
                neighbor_species[triplet_first], neighbor_species[triplet_second]
            ]
            onehot = torch.nn.functional.one_hot(pair, self.n_pairs).to(ang)
            ang = (ang[:, :, None] * onehot[:, None]).reshape(len(ang), self.n_angular_features)
        g_ang = vectors.new_zeros(n_atoms, self.n_angular_features)
        g_ang = g_ang.index_add(0, centers[triplet_first], ang)
        return torch.cat([g_rad, g_ang], dim=1)

    def edge_derivatives(
        self,
        vectors: torch.Tensor,
        neighbor_species: torch.Tensor,
        triplet_first: torch.Tensor,
        triplet_second: torch.Tensor,
        angular_edges: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """∂G_center/∂r_edge by forward-mode autograd (used to train on forces quickly).

        Returns ``d_radial`` (n_edges, n_radial, 3): derivative of the radial block of the
        neighbour's species; and ``d_angular`` (n_angular_edges, n_angular_features, 3) for the
        edges listed in `angular_edges` (sorted edge indices covering every triplet edge).
        """
        from torch.func import jvp, vmap

        eye = torch.eye(3, dtype=vectors.dtype, device=vectors.device)

        def radial_jvp(tangent: torch.Tensor) -> torch.Tensor:
            return jvp(self.radial_terms, (vectors,), (tangent.expand_as(vectors),))[1]

        d_radial = vmap(radial_jvp)(eye).permute(1, 2, 0)  # (E, K, 3)

        n_ang_edges = len(angular_edges)
        d_angular = vectors.new_zeros(n_ang_edges, self.n_angular, self.n_pairs * 3)
        if len(triplet_first):
            va, vb = vectors[triplet_first], vectors[triplet_second]
            zeros = torch.zeros_like(va)

            def ang_jvp_a(t: torch.Tensor) -> torch.Tensor:
                return jvp(self.angular_terms, (va, vb), (t.expand_as(va), zeros))[1]

            def ang_jvp_b(t: torch.Tensor) -> torch.Tensor:
                return jvp(self.angular_terms, (va, vb), (zeros, t.expand_as(vb)))[1]

            pair = self.pair_index[
                neighbor_species[triplet_first], neighbor_species[triplet_second]
            ]
            local = torch.searchsorted(angular_edges, torch.stack([triplet_first, triplet_second]))
            index = (pair[:, None] * 3 + torch.arange(3, device=pair.device)).unsqueeze(1)
            index = index.expand(-1, self.n_angular, -1)  # (T, M, 3) column in (pair, xyz)
            for which, fn in ((0, ang_jvp_a), (1, ang_jvp_b)):
                d = vmap(fn)(eye).permute(1, 2, 0)  # (T, M, 3)
                if self.n_pairs > 1:
                    target = d.new_zeros(len(d), self.n_angular, self.n_pairs * 3)
                    d = target.scatter_(2, index, d)
                d_angular.index_add_(0, local[which], d)
        return d_radial, d_angular.reshape(n_ang_edges, self.n_angular_features, 3)
