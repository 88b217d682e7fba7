"""The interface every potential family implements, and the shared physics around it.

A :class:`Potential` maps an :class:`~matloop.models.graph.AtomicGraph` to per-structure
*interaction* energies (eV): the total energy minus Σ E0[element]. Forces and stress are never
written by hand: they come from autograd through the edge vectors (:mod:`matloop.models.outputs`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch
from ase import Atoms
from pydantic import BaseModel

from matloop.models.graph import AtomicGraph, build_graph
from matloop.models.outputs import forces_from_edge_gradients, virials_from_edge_gradients


class Potential(torch.nn.Module):
    """Base class of matloop potentials (one subclass per model family)."""

    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]]

    def __init__(self, elements: list[str], params: BaseModel) -> None:
        super().__init__()
        self.elements = list(elements)
        self.params = params
        # E0 per element (eV) stays a float64 Python dict: it is added outside the network
        self.e0: dict[str, float] = {s: 0.0 for s in self.elements}

    # --- geometry -------------------------------------------------------------------------
    @property
    def cutoff(self) -> float:
        """Largest interaction distance (Å)."""
        raise NotImplementedError

    @property
    def angular_cutoff(self) -> float | None:
        """Cutoff (Å) of three-body terms that need triplets, or None."""
        return None

    @property
    def dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.get_default_dtype()

    def graph(self, atoms: Atoms) -> AtomicGraph:
        """The graph of one structure in the model's dtype."""
        return build_graph(atoms, self.elements, self.cutoff, self.angular_cutoff).to(self.dtype)

    # --- energy and its derivatives -------------------------------------------------------
    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        """Interaction energy per structure (eV), shape (S,), differentiable w.r.t. vectors."""
        raise NotImplementedError

    def reference_energy(self, atoms: Atoms) -> float:
        """Σ_i E0[element_i] of one structure (eV, float64)."""
        return float(sum(self.e0[s] for s in atoms.get_chemical_symbols()))

    def predict(
        self,
        graph: AtomicGraph,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Interaction energy (S,), forces (N, 3) and virial ∂E/∂ε (S, 3, 3) by autograd."""
        need_grad = forces or stress
        vectors = graph.vectors.detach().requires_grad_(need_grad)
        graph = replace(graph, vectors=vectors)
        with torch.enable_grad():
            energy = self.energy(graph)
            out = {"energy": energy}
            if need_grad:
                (edge_grad,) = torch.autograd.grad(energy.sum(), vectors, create_graph=create_graph)
                out.update(self._outputs_from_edge_gradients(edge_grad, graph, forces, stress))
        return out

    @staticmethod
    def _outputs_from_edge_gradients(
        edge_grad: torch.Tensor, graph: AtomicGraph, forces: bool, stress: bool
    ) -> dict[str, torch.Tensor]:
        out = {}
        if forces:
            out["forces"] = forces_from_edge_gradients(edge_grad, graph)
        if stress:
            out["virial"] = virials_from_edge_gradients(edge_grad, graph)
        return out

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        """Per-atom representation (N, n_features) used for diversity selection."""
        raise NotImplementedError(f"{self.family} does not expose per-atom features")

    # --- training hooks (families may override for speed) ---------------------------------
    #: True for families fitted outside matloop's gradient loop (closed-form kernel models,
    #: external trainers); :func:`matloop.training.train` then calls :meth:`fit` instead.
    custom_fit: ClassVar[bool] = False

    def fit(
        self,
        train_data: Any,
        valid_data: Any,
        config: Any,
        *,
        out_dir: Any,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Fit in place on `train_data` (a :class:`~matloop.data.Dataset`; E0 already set).

        Only called when :attr:`custom_fit` is true. `config` is the
        :class:`~matloop.training.TrainConfig` (loss weights, ``training.max_time`` in s, seed);
        `valid_data` may be used for model selection. Returns JSON-able facts about the fit that
        go into the model's metadata (e.g. the number of sparse points).
        """
        raise NotImplementedError(f"{self.family} is trained by matloop's optimisation loop")

    def before_training(self, graphs: list[AtomicGraph], energies: list[float]) -> dict[str, Any]:
        """Hook run once before gradient training starts (not when warm-starting).

        `graphs` are the prepared training structures and `energies` their interaction energies
        (eV). Fine-tuning families use it, e.g. to refit per-element reference energies. Returns
        JSON-able facts that go into the model's metadata under ``fit``.
        """
        return {}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimiser updates (default: all); the others stay frozen."""
        return list(self.parameters())

    def prepare(self, atoms: Atoms) -> AtomicGraph:
        """Per-structure data cached for training (default: the graph)."""
        return self.graph(atoms)

    def fit_normalization(self, graphs: list[AtomicGraph], energies_per_atom: torch.Tensor) -> None:
        """Set normalisation statistics from prepared training graphs (default: nothing)."""

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-able hyper-parameters that rebuild this architecture."""
        return self.params.model_dump(mode="json")

    @classmethod
    def from_hyperparameters(
        cls, elements: list[str], hyperparameters: dict[str, Any]
    ) -> Potential:
        return cls(elements, cls.Params.model_validate(hyperparameters))

    # --- capabilities: declared here, so tools ask the model instead of duck typing -------
    #: ships usable weights before any fit (e.g. a fine-tunable foundation model)
    pretrained: ClassVar[bool] = False

    @property
    def has_variance(self) -> bool:
        """Whether the model gives a predictive variance now (families override; e.g. fitted)."""
        return False

    def energy_variance(
        self, graph: AtomicGraph, per_atom: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predictive variance of each structure's energy (eV², (S,)); with `per_atom` also (N,)."""
        raise NotImplementedError(f"{self.family} has no predictive variance")

    def capabilities(self) -> dict[str, bool]:
        """What this model provides: a variance, its own fit hook, pretrained weights."""
        return {
            "variance": bool(self.has_variance),
            "fit_hook": bool(type(self).custom_fit),
            "pretrained": bool(type(self).pretrained),
        }

    def set_reference_energies(self, e0: dict[str, float]) -> None:
        """Set E0 per element (eV); elements not given get 0."""
        self.e0 = {s: float(e0.get(s, 0.0)) for s in self.elements}
