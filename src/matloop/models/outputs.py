"""Forces and stress from the energy's gradient with respect to edge vectors.

With r_e = R_j − R_i + S·cell for edge e = (i → j) and g_e = ∂E/∂r_e:
    F_k = −∂E/∂R_k = Σ_{e: i(e)=k} g_e − Σ_{e: j(e)=k} g_e
    σ_ab = (1/V) ∂E/∂ε_ab = (1/V) Σ_e g_e,a r_e,b        (ASE sign: positive = tensile)
"""

from __future__ import annotations

import torch

from matloop.models.graph import AtomicGraph


def forces_from_edge_gradients(edge_grad: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
    """Forces (eV/Å), shape (N, 3), from g_e = ∂E/∂r_e."""
    forces = edge_grad.new_zeros(graph.n_total_atoms, 3)
    forces.index_add_(0, graph.centers, edge_grad)
    forces.index_add_(0, graph.neighbors, -edge_grad)
    return forces


def virials_from_edge_gradients(edge_grad: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
    """Per-structure ∂E/∂ε (eV), shape (S, 3, 3), symmetrised."""
    per_edge = edge_grad[:, :, None] * graph.vectors[:, None, :]
    edge_structure = graph.structure[graph.centers]
    virial = edge_grad.new_zeros(graph.n_structures, 3, 3)
    virial.index_add_(0, edge_structure, per_edge)
    return 0.5 * (virial + virial.transpose(1, 2))


VOIGT_INDEX = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])


def stress_from_virial(virial: torch.Tensor, volumes: torch.Tensor) -> torch.Tensor:
    """Voigt stress (eV/Å³, ASE order xx yy zz yz xz xy), shape (S, 6); NaN for V = 0."""
    voigt = virial[:, VOIGT_INDEX[0], VOIGT_INDEX[1]]
    safe = torch.where(volumes > 0, volumes, torch.ones_like(volumes))
    stress = voigt / safe[:, None]
    return torch.where(volumes[:, None] > 0, stress, torch.full_like(stress, float("nan")))
