"""A tiny linear pair potential with the design-row interface of the ``ace`` basis.

E = Σ_i Σ_j Σ_k c[μ_i, μ_j, k] g_k(r_ij): Gaussian radial functions times a cosine cutoff, one
block per element pair. It lets the linear fit and its uncertainty be tested on a basis whose
exact form is known (a target made of these functions must be recovered exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from matloop.models.ace.fitting import AceFitParams
from matloop.models.ace.uncertainty import AcePosterior
from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph
from matloop.models.outputs import forces_from_edge_gradients, virials_from_edge_gradients

VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


@dataclass
class Rows:
    energy: torch.Tensor
    forces: torch.Tensor | None
    virial: torch.Tensor | None
    offset_energy: torch.Tensor
    offset_forces: torch.Tensor | None
    offset_virial: torch.Tensor | None
    n_atoms: torch.Tensor


class PairBasis(torch.nn.Module):
    def __init__(self, n_elements: int, n_radial: int, cutoff: float) -> None:
        super().__init__()
        self.n_elements, self.n_radial, self.cutoff = n_elements, n_radial, cutoff
        self.n_coefficients = n_elements * n_elements * n_radial
        centres = torch.linspace(1.8, cutoff - 0.5, n_radial, dtype=torch.float64)
        self.register_buffer("centres", centres)

    def _edge_features(self, graph: AtomicGraph, vectors: torch.Tensor) -> torch.Tensor:
        r = vectors.norm(dim=1)
        fc = 0.5 * (1 + torch.cos(torch.pi * r / self.cutoff)) * (r < self.cutoff)
        g = torch.exp(-2.0 * (r[:, None] - self.centres) ** 2) * fc[:, None]  # (E, K)
        pair = graph.species[graph.centers] * self.n_elements + graph.neighbor_species
        out = g.new_zeros(len(r), self.n_coefficients)
        cols = pair[:, None] * self.n_radial + torch.arange(self.n_radial)
        return out.scatter(1, cols, g)

    def atom_features(self, graph: AtomicGraph, vectors=None) -> torch.Tensor:
        vectors = graph.vectors if vectors is None else vectors
        edge = self._edge_features(graph, vectors)
        out = edge.new_zeros(graph.n_total_atoms, self.n_coefficients)
        return out.index_add(0, graph.centers, edge)

    def design_rows(self, graph: AtomicGraph, *, forces=True, stress=True) -> Rows:
        vectors = graph.vectors.detach().double().requires_grad_(True)
        with torch.enable_grad():
            atoms = self.atom_features(graph, vectors)
            energy = atoms.new_zeros(graph.n_structures, self.n_coefficients)
            energy = energy.index_add(0, graph.structure, atoms)
            f_rows, v_rows = [], []
            if forces or stress:
                for p in range(self.n_coefficients):
                    (grad,) = torch.autograd.grad(energy[:, p].sum(), vectors, retain_graph=True)
                    if forces:
                        f_rows.append(forces_from_edge_gradients(grad, graph).reshape(-1))
                    if stress:
                        vir = virials_from_edge_gradients(grad, graph)
                        v_rows.append(vir[:, VOIGT[0], VOIGT[1]])
        s, n3 = graph.n_structures, 3 * graph.n_total_atoms
        zeros = torch.zeros
        return Rows(
            energy=energy.detach(),
            forces=torch.stack(f_rows, 1) if forces else None,
            virial=torch.stack(v_rows, 2) if stress else None,
            offset_energy=zeros(s, dtype=torch.float64),
            offset_forces=zeros(n3, dtype=torch.float64) if forces else None,
            offset_virial=zeros(s, 6, dtype=torch.float64) if stress else None,
            n_atoms=graph.n_atoms,
        )

    def describe(self) -> list[dict]:
        return [{"rank": 1} for _ in range(self.n_coefficients)]


class PairParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_radial: int = 6
    cutoff: float = 4.5
    fit: AceFitParams = AceFitParams()


class PairLinear(Potential):
    """E = Σ_ij c·g(r_ij) + Σ E0, fitted by :func:`matloop.models.ace.fitting.fit_ace`."""

    family = "pair_linear_test"
    Params = PairParams
    custom_fit = True

    def __init__(self, elements: list[str], params: PairParams | None = None) -> None:
        params = params or PairParams()
        super().__init__(elements, params)
        self.basis = PairBasis(len(elements), params.n_radial, params.cutoff)
        self.register_buffer(
            "coefficients", torch.zeros(self.basis.n_coefficients, dtype=torch.float64)
        )
        self.posterior = AcePosterior()

    @property
    def cutoff(self) -> float:
        return self.params.cutoff

    @property
    def dtype(self) -> torch.dtype:
        return self.coefficients.dtype

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        atoms = self.basis.atom_features(graph) @ self.coefficients.to(graph.vectors.dtype)
        return atoms.new_zeros(graph.n_structures).index_add(0, graph.structure, atoms)

    def fit(self, train_data, valid_data, config, *, out_dir=None, progress=True):
        from matloop.models.ace.fitting import fit_ace

        return fit_ace(self, train_data, valid_data, config, out_dir=out_dir, progress=progress)


def random_pair_model(elements: list[str], seed: int = 0, **params) -> PairLinear:
    """A PairLinear with smooth random coefficients (a repulsive-ish, well-behaved target)."""
    model = PairLinear(elements, PairParams(**params)).double()
    rng = np.random.default_rng(seed)
    c = rng.normal(0.0, 0.05, model.basis.n_coefficients)
    model.coefficients = torch.tensor(c, dtype=torch.float64)
    return model
