"""Structures as graphs of edge vectors, and batching of many structures into one graph.

Every matloop model computes the energy from edge vectors r_ij = R_j − R_i + S·cell, so forces
and stress follow from ∂E/∂r_ij alone (see :mod:`matloop.models.outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from ase import Atoms

from matloop.errors import UnknownElementError
from matloop.neighbors import neighbor_list

# keys whose values are atom indices (offset by the atom count when batching)
ATOM_INDEX_KEYS = ("centers", "neighbors")
# keys whose values are edge indices (offset by the edge count when batching)
EDGE_INDEX_KEYS = ("triplet_first", "triplet_second", "angular_edges")


@dataclass
class AtomicGraph:
    """A batch of one or more structures. Lengths: N atoms, E edges, T triplets, S structures."""

    species: torch.Tensor  # (N,) index into the model's element list
    structure: torch.Tensor  # (N,) structure index of each atom
    centers: torch.Tensor  # (E,)
    neighbors: torch.Tensor  # (E,)
    vectors: torch.Tensor  # (E, 3) Å
    volumes: torch.Tensor  # (S,) Å³ (0 for non-periodic structures)
    n_atoms: torch.Tensor  # (S,) atoms per structure
    triplet_first: torch.Tensor | None = None  # (T,) edge index
    triplet_second: torch.Tensor | None = None
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.numel())

    @property
    def n_total_atoms(self) -> int:
        return int(self.species.numel())

    @property
    def neighbor_species(self) -> torch.Tensor:
        return self.species[self.neighbors]

    def to(self, dtype: torch.dtype) -> AtomicGraph:
        """Cast floating tensors (vectors, volumes, float extras) to `dtype`."""
        extra = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in self.extra.items()}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(vectors=self.vectors.to(dtype), volumes=self.volumes.to(dtype), extra=extra)
        return AtomicGraph(**values)


def species_indices(atoms: Atoms, elements: Sequence[str]) -> np.ndarray:
    """Map chemical symbols to indices into `elements`; unknown elements raise clearly."""
    index = {s: k for k, s in enumerate(elements)}
    symbols = atoms.get_chemical_symbols()
    unknown = sorted(set(symbols) - set(index))
    if unknown:
        raise UnknownElementError(
            f"structure {atoms.get_chemical_formula()} contains {', '.join(unknown)}, which the "
            f"model was never trained on (model elements: {', '.join(elements)})"
        )
    return np.array([index[s] for s in symbols], dtype=np.int64)


def build_graph(
    atoms: Atoms,
    elements: Sequence[str],
    cutoff: float,
    angular_cutoff: float | None = None,
    dtype: torch.dtype = torch.float64,
) -> AtomicGraph:
    """Graph of one structure; with `angular_cutoff`, also the triplets for angular terms."""
    species = species_indices(atoms, elements)
    nl = neighbor_list(atoms, cutoff)
    volume = float(abs(atoms.cell.volume)) if atoms.pbc.all() else 0.0
    graph = AtomicGraph(
        species=torch.from_numpy(species),
        structure=torch.zeros(len(atoms), dtype=torch.long),
        centers=torch.from_numpy(nl.centers),
        neighbors=torch.from_numpy(nl.neighbors),
        vectors=torch.from_numpy(nl.vectors).to(dtype),
        volumes=torch.tensor([volume], dtype=dtype),
        n_atoms=torch.tensor([len(atoms)], dtype=torch.long),
    )
    if angular_cutoff is not None:
        from matloop.descriptors.symmetry_functions import build_triplets

        trip = build_triplets(nl.centers, nl.distances, angular_cutoff)
        graph.triplet_first = torch.from_numpy(trip.first)
        graph.triplet_second = torch.from_numpy(trip.second)
    return graph


def collate(graphs: Sequence[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batch, offsetting atom and edge indices."""
    if len(graphs) == 1:
        return graphs[0]
    atom_counts = torch.tensor([g.n_total_atoms for g in graphs])
    edge_counts = torch.tensor([len(g.centers) for g in graphs])
    atom_offsets = torch.cumsum(atom_counts, 0) - atom_counts
    edge_offsets = torch.cumsum(edge_counts, 0) - edge_counts
    structure_offsets = torch.cumsum(torch.tensor([g.n_structures for g in graphs]), 0)
    structure_offsets = structure_offsets - torch.tensor([g.n_structures for g in graphs])

    def cat(name: str, offsets: torch.Tensor | None = None, source: str = "field"):
        parts = []
        for k, g in enumerate(graphs):
            value = getattr(g, name) if source == "field" else g.extra[name]
            if value is None:
                return None
            parts.append(value + offsets[k] if offsets is not None else value)
        return torch.cat(parts)

    extra = {}
    for key in graphs[0].extra:
        offsets = (
            edge_offsets
            if key in EDGE_INDEX_KEYS
            else (atom_offsets if key in ATOM_INDEX_KEYS else None)
        )
        extra[key] = cat(key, offsets, source="extra")
    return AtomicGraph(
        species=cat("species"),
        structure=cat("structure", structure_offsets),
        centers=cat("centers", atom_offsets),
        neighbors=cat("neighbors", atom_offsets),
        vectors=cat("vectors"),
        volumes=cat("volumes"),
        n_atoms=cat("n_atoms"),
        triplet_first=cat("triplet_first", edge_offsets),
        triplet_second=cat("triplet_second", edge_offsets),
        extra=extra,
    )


def atom_blocks(graph: AtomicGraph, size: int):
    """Yield (atom slice, edge slice, block-local centre indices) for blocks of `size` atoms.

    Edges are sorted by centre (:mod:`matloop.neighbors`), so the edges whose centres lie in a
    block of atoms are one contiguous slice; families whose atomic energy depends only on the
    atom's own edges (BPNN, kernel) evaluate large cells block by block with bounded memory.
    """
    centers = graph.centers.numpy()
    n_atoms = graph.n_total_atoms
    for a0 in range(0, n_atoms, size):
        a1 = min(n_atoms, a0 + size)
        e0, e1 = (int(x) for x in np.searchsorted(centers, [a0, a1]))
        yield slice(a0, a1), slice(e0, e1), graph.centers[e0:e1] - a0
