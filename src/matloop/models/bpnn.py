"""Behler–Parrinello neural-network potential: symmetry functions + one MLP per element."""

from __future__ import annotations

import torch
from ase import Atoms

from matloop.descriptors.symmetry_functions import SymmetryFunctions
from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph, atom_blocks, build_graph
from matloop.models.params import BPNNParams

# atoms per block at inference: bounds memory for large cells (≈ 0.2 GB per block)
CHUNK_ATOMS = 2048

_ACTIVATIONS = {"tanh": torch.nn.Tanh, "silu": torch.nn.SiLU, "softplus": torch.nn.Softplus}


def _mlp(n_in: int, hidden: list[int], activation: str) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h), _ACTIVATIONS[activation]()]
        width = h
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


class BPNN(Potential):
    """Atomic energies E_i = NN_{element(i)}(standardised G_i); E = Σ_i E_i + Σ_i E0."""

    family = "bpnn"
    description = "Behler–Parrinello symmetry functions + per-element neural networks"
    Params = BPNNParams

    def __init__(self, elements: list[str], params: BPNNParams | None = None) -> None:
        params = params or BPNNParams()
        super().__init__(elements, params)
        n_el = len(self.elements)
        self.descriptor = SymmetryFunctions(n_el, params.descriptor)
        n_features = self.descriptor.n_features
        self.networks = torch.nn.ModuleList(
            _mlp(n_features, list(params.hidden), params.activation) for _ in range(n_el)
        )
        self.register_buffer("feature_mean", torch.zeros(n_el, n_features))
        self.register_buffer("feature_std", torch.ones(n_el, n_features))
        self.register_buffer("energy_scale", torch.ones(()))
        self.register_buffer("energy_shift", torch.zeros(n_el))
        self.to(torch.get_default_dtype())

    @property
    def cutoff(self) -> float:
        return self.descriptor.cutoff

    @property
    def angular_cutoff(self) -> float | None:
        return self.descriptor.angular_cutoff

    # --- physics ---------------------------------------------------------------------------
    def graph(self, atoms: Atoms) -> AtomicGraph:
        """Edges only: triplets are built per chunk of atoms when needed (bounded memory)."""
        return build_graph(atoms, self.elements, self.cutoff, None).to(self.dtype)

    def _chunks(self, graph: AtomicGraph):
        """Yield (atom slice, edge slice, descriptor inputs) for blocks of centre atoms.

        An atom's descriptor depends only on the edges it is the centre of, so blocks of
        ``CHUNK_ATOMS`` atoms can be processed one after another with bounded memory.
        """
        from matloop.descriptors.symmetry_functions import build_triplets

        n_atoms = graph.n_total_atoms
        neighbor_species = graph.neighbor_species
        for atoms, edges, local_centers in atom_blocks(graph, CHUNK_ATOMS):
            if graph.triplet_first is not None and atoms.start == 0 and atoms.stop == n_atoms:
                first, second = graph.triplet_first, graph.triplet_second
            else:
                distances = torch.linalg.norm(graph.vectors[edges].detach(), dim=1)
                trip = build_triplets(
                    local_centers.numpy(), distances.double().numpy(), self.angular_cutoff
                )
                first, second = torch.from_numpy(trip.first), torch.from_numpy(trip.second)
            n_block = atoms.stop - atoms.start
            yield atoms, edges, (local_centers, neighbor_species[edges], first, second, n_block)

    def descriptors(self, graph: AtomicGraph) -> torch.Tensor:
        """Symmetry functions G, shape (N, n_features), differentiable w.r.t. the vectors."""
        if graph.triplet_first is not None:
            return self.descriptor(
                graph.vectors,
                graph.centers,
                graph.neighbor_species,
                graph.triplet_first,
                graph.triplet_second,
                graph.n_total_atoms,
            )
        blocks = [
            self.descriptor(graph.vectors[edges], *inputs)
            for _, edges, inputs in self._chunks(graph)
        ]
        return (
            torch.cat(blocks) if blocks else graph.vectors.new_zeros(0, self.descriptor.n_features)
        )

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        return self.descriptors(graph)

    def atomic_energies(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Atomic interaction energies (eV), shape (N,)."""
        out = features.new_zeros(features.shape[0])
        for k, net in enumerate(self.networks):
            idx = torch.nonzero(species == k, as_tuple=True)[0]
            if idx.numel() == 0:
                continue
            x = (features[idx] - self.feature_mean[k]) / self.feature_std[k]
            e = net(x).squeeze(-1) * self.energy_scale + self.energy_shift[k]
            out = out.index_put((idx,), e)
        return out

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        atomic = self.atomic_energies(self.descriptors(graph), graph.species)
        return atomic.new_zeros(graph.n_structures).index_add(0, graph.structure, atomic)

    # --- fast training path: descriptors and their edge derivatives computed once -----------
    def prepare(self, atoms: Atoms) -> AtomicGraph:
        """Graph plus G and ∂G/∂r_e (forward-mode autograd, float64, then cast)."""
        dtype = self.dtype
        graph = build_graph(atoms, self.elements, self.cutoff, self.angular_cutoff)
        angular_edges = torch.unique(torch.cat([graph.triplet_first, graph.triplet_second]))
        # the descriptor's constant buffers go to float64 for this computation only; restore the
        # model's dtype even if featurisation fails, so a bad structure cannot leave it changed
        self.descriptor.to(torch.float64)
        try:
            with torch.no_grad():
                features = self.descriptors(graph)
            d_radial, d_angular = self.descriptor.edge_derivatives(
                graph.vectors,
                graph.neighbor_species,
                graph.triplet_first,
                graph.triplet_second,
                angular_edges,
            )
        finally:
            self.descriptor.to(dtype)
        graph.extra = {
            "descriptors": features,
            "d_radial": d_radial,
            "d_angular": d_angular,
            "angular_edges": angular_edges,
        }
        # triplets are no longer needed once the derivatives exist
        graph.triplet_first = graph.triplet_second = None
        return graph.to(dtype)

    def predict(
        self,
        graph: AtomicGraph,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        if "descriptors" in graph.extra:
            return self._predict_cached(graph, forces, stress, create_graph)
        if create_graph or graph.n_structures != 1 or not (forces or stress):
            return super().predict(graph, forces=forces, stress=stress, create_graph=create_graph)
        return self._predict_chunked(graph, forces, stress)

    def _predict_chunked(
        self, graph: AtomicGraph, forces: bool, stress: bool
    ) -> dict[str, torch.Tensor]:
        """Inference on one structure, block by block of centre atoms (memory stays bounded)."""
        edge_grad = torch.zeros_like(graph.vectors)
        energy = graph.vectors.new_zeros(())
        with torch.enable_grad():
            for atoms, edges, (centers, nbr_species, first, second, n) in self._chunks(graph):
                vectors = graph.vectors[edges].detach().requires_grad_(True)
                features = self.descriptor(vectors, centers, nbr_species, first, second, n)
                block_energy = self.atomic_energies(features, graph.species[atoms]).sum()
                (edge_grad[edges],) = torch.autograd.grad(block_energy, vectors)
                energy = energy + block_energy.detach()
        out = {"energy": energy.reshape(1)}
        out.update(self._outputs_from_edge_gradients(edge_grad, graph, forces, stress))
        return out

    def _predict_cached(
        self, graph: AtomicGraph, forces: bool, stress: bool, create_graph: bool
    ) -> dict[str, torch.Tensor]:
        """Training path: G and ∂G/∂r_e were computed once by :meth:`prepare`."""
        features = graph.extra["descriptors"].detach().requires_grad_(True)
        with torch.enable_grad():
            atomic = self.atomic_energies(features, graph.species)
            energy = atomic.new_zeros(graph.n_structures).index_add(0, graph.structure, atomic)
            out = {"energy": energy}
            if not (forces or stress):
                return out
            (grad_g,) = torch.autograd.grad(atomic.sum(), features, create_graph=create_graph)
            edge_grad = self._edge_gradients(grad_g, graph)
        out.update(self._outputs_from_edge_gradients(edge_grad, graph, forces, stress))
        return out

    def _edge_gradients(self, grad_g: torch.Tensor, graph: AtomicGraph) -> torch.Tensor:
        """∂E/∂r_e from ∂E/∂G and the cached ∂G/∂r_e (chain rule as tensor contractions)."""
        d = self.descriptor
        n_rad = d.n_radial_features
        grad_rad = grad_g[:, :n_rad].reshape(-1, d.n_radial, d.n_elements)
        coef = grad_rad[graph.centers, :, graph.neighbor_species]  # (E, K)
        edge_grad = (coef[:, :, None] * graph.extra["d_radial"]).sum(1)
        ang_edges = graph.extra["angular_edges"]
        if ang_edges.numel():
            coef_a = grad_g[graph.centers[ang_edges], n_rad:]
            contrib = (coef_a[:, :, None] * graph.extra["d_angular"]).sum(1)
            edge_grad = edge_grad.index_add(0, ang_edges, contrib)
        return edge_grad

    def fit_normalization(self, graphs: list[AtomicGraph], energies_per_atom: torch.Tensor) -> None:
        """Per-element feature mean/std and the atomic-energy scale from training data."""
        features = torch.cat([g.extra["descriptors"] for g in graphs]).to(torch.float64)
        species = torch.cat([g.species for g in graphs])
        for k in range(len(self.elements)):
            sel = features[species == k]
            if len(sel) == 0:
                continue
            mean = sel.mean(0)
            std = sel.std(0, unbiased=False) if len(sel) > 1 else torch.ones_like(mean)
            std = torch.where(std > 1e-6 * (mean.abs() + 1e-3), std, torch.ones_like(std))
            self.feature_mean[k] = mean.to(self.feature_mean)
            self.feature_std[k] = std.to(self.feature_std)
        spread = float(energies_per_atom.double().std()) if len(energies_per_atom) > 1 else 0.0
        self.energy_scale.fill_(max(spread, 0.01))
