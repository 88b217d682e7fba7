"""PaiNN-like equivariant message passing (Schütt, Unke & Gastegger, ICML 2021).

Every atom carries scalar features s_i (F) and vector features v_i (3 × F). Each layer does

* a message step: filters W(r_ij) = Linear(radial basis) · f_cut(r_ij) gate the neighbour's
  scalars φ(s_j) into Δs_i = Σ_j φ_s ∘ W_s, Δv_i = Σ_j v_j ∘ φ_vv ∘ W_vv + (φ_vs ∘ W_vs) r̂_ij;
* an update step mixing s and v through the rotation-invariant ‖V v‖ and ⟨U v, V v⟩.

The atomic energy is an MLP of the final scalars. Everything is computed from the edge vectors,
so forces and stress come from the shared autograd path of :class:`Potential`. Unlike BPNN, an
atom's energy depends on edges beyond its own (2–3 hops), so there is no block-wise inference.
"""

from __future__ import annotations

import math

import torch

from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph
from matloop.models.params import PaiNNParams

_ACTIVATIONS = {"silu": torch.nn.SiLU, "tanh": torch.nn.Tanh, "softplus": torch.nn.Softplus}
# keeps the gradient of ‖V v‖ finite where v = 0 (all vectors are 0 before the first layer)
_NORM_EPS = 1e-8


class _Message(torch.nn.Module):
    def __init__(self, features: int, n_radial: int, activation: str) -> None:
        super().__init__()
        self.features = features
        self.phi = torch.nn.Sequential(
            torch.nn.Linear(features, features),
            _ACTIVATIONS[activation](),
            torch.nn.Linear(features, 3 * features),
        )
        self.filter = torch.nn.Linear(n_radial, 3 * features)

    def forward(self, s, v, radial, fcut, unit, centers, neighbors):
        x = self.phi(s)[neighbors] * (self.filter(radial) * fcut[:, None])  # (E, 3F)
        x_s, x_vv, x_vs = torch.split(x, self.features, dim=-1)
        ds = torch.zeros_like(s).index_add(0, centers, x_s)
        dv_edge = x_vs[:, None, :] * unit[:, :, None]
        if v is None:  # first layer: all vectors are 0, so the v_j term vanishes
            v = s.new_zeros(s.shape[0], 3, s.shape[1])
        else:
            dv_edge = dv_edge + v[neighbors] * x_vv[:, None, :]
        dv = torch.zeros_like(v).index_add(0, centers, dv_edge)
        return s + ds, v + dv


class _Update(torch.nn.Module):
    def __init__(self, features: int, activation: str) -> None:
        super().__init__()
        self.features = features
        self.U = torch.nn.Linear(features, features, bias=False)
        self.V = torch.nn.Linear(features, features, bias=False)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(2 * features, features),
            _ACTIVATIONS[activation](),
            torch.nn.Linear(features, 3 * features),
        )

    def forward(self, s, v):
        uv, vv = self.U(v), self.V(v)  # (N, 3, F)
        norm = torch.sqrt((vv * vv).sum(1) + _NORM_EPS)
        a = self.mlp(torch.cat([s, norm], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, self.features, dim=-1)
        dv = a_vv[:, None, :] * uv
        ds = a_sv * (uv * vv).sum(1) + a_ss
        return s + ds, v + dv


class PaiNN(Potential):
    """Equivariant message passing: E = Σ_i MLP(s_i) · scale + Σ_i E0."""

    family = "painn"
    description = "PaiNN-like equivariant message passing (scalar + vector features)"
    Params = PaiNNParams

    def __init__(self, elements: list[str], params: PaiNNParams | None = None) -> None:
        params = params or PaiNNParams()
        super().__init__(elements, params)
        f = params.features
        self.embedding = torch.nn.Embedding(len(self.elements), f)
        self.messages = torch.nn.ModuleList(
            _Message(f, params.n_radial, params.activation) for _ in range(params.layers)
        )
        self.updates = torch.nn.ModuleList(
            _Update(f, params.activation) for _ in range(params.layers)
        )
        self.readout = torch.nn.Sequential(
            torch.nn.Linear(f, f), _ACTIVATIONS[params.activation](), torch.nn.Linear(f, 1)
        )
        self.register_buffer("frequencies", torch.arange(1, params.n_radial + 1) * math.pi)
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("energy_shift", torch.zeros(len(self.elements)))
        self.to(torch.get_default_dtype())

    @property
    def cutoff(self) -> float:
        return float(self.params.cutoff)

    def _edge_terms(self, vectors: torch.Tensor):
        """Radial basis (E, K), cosine cutoff (E,) and unit vectors (E, 3) of the edges."""
        rc = self.params.cutoff
        r = torch.linalg.norm(vectors, dim=1)
        unit = vectors / r[:, None]
        radial = torch.sin(self.frequencies * (r[:, None] / rc)) / r[:, None]
        fcut = torch.where(r < rc, 0.5 * (torch.cos(math.pi * r / rc) + 1.0), torch.zeros_like(r))
        return radial, fcut, unit

    def scalar_features(self, graph: AtomicGraph) -> torch.Tensor:
        """Final scalar features s_i, shape (N, F)."""
        radial, fcut, unit = self._edge_terms(graph.vectors)
        s = self.embedding(graph.species)
        v = None
        for message, update in zip(self.messages, self.updates, strict=True):
            s, v = message(s, v, radial, fcut, unit, graph.centers, graph.neighbors)
            s, v = update(s, v)
        return s

    def atomic_energies(self, graph: AtomicGraph) -> torch.Tensor:
        """Atomic interaction energies (eV), shape (N,)."""
        s = self.scalar_features(graph)
        return self.readout(s).squeeze(-1) * self.energy_scale + self.energy_shift[graph.species]

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        atomic = self.atomic_energies(graph)
        return atomic.new_zeros(graph.n_structures).index_add(0, graph.structure, atomic)

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        return self.scalar_features(graph)

    def fit_normalization(self, graphs: list[AtomicGraph], energies_per_atom: torch.Tensor) -> None:
        """Scale atomic energies by the spread of per-atom residual energies (eV/atom)."""
        spread = float(energies_per_atom.double().std()) if len(energies_per_atom) > 1 else 0.0
        self.energy_scale.fill_(max(spread, 0.01))
