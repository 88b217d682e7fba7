"""The ``ace`` family: a linear atomic cluster expansion fitted in closed form.

E = Σ_i [φ(i)·c + Σ_j cr(r_ij)] + Σ_i E0 with the basis of :mod:`matloop.models.ace.basis`.
The coefficients c are stored in float64 (casts of the model change only the dtype it computes
in); the Bayesian posterior lives in the ``posterior`` submodule (filled by the fit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from matloop.models.ace.basis import AceBasis
from matloop.models.ace.uncertainty import AcePosterior
from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph, atom_blocks, species_indices
from matloop.models.params import AceParams
from matloop.neighbors import check_structure

# centre atoms per block at inference (bounds memory for large cells)
CHUNK_ATOMS = 1024
#: bytes of a block's largest temporary (∇Y, 3·(l_max + 1)² values per neighbour slot): below
#: glibc's 32 MB heap limit (:mod:`matloop.utils.allocator`), so blocks reuse freed memory
BLOCK_BYTES = 16 * 1024 * 1024


def inner_cutoffs(elements: list[str], params: AceParams) -> torch.Tensor:
    """r_in per ordered element pair (n_el, n_el), Å."""
    radii = torch.tensor([covalent_radii[atomic_numbers[s]] for s in elements], dtype=torch.float64)
    if params.inner_cutoff is not None:
        return torch.full((len(elements), len(elements)), params.inner_cutoff, dtype=torch.float64)
    return params.inner_cutoff_fraction * (radii[:, None] + radii[None, :])


def build_basis(elements: list[str], params: AceParams) -> AceBasis:
    """The ACE basis of `params` for `elements` (element-count defaults resolved)."""
    n_el = len(elements)
    return AceBasis(
        list(elements),
        cutoff=params.cutoff,
        n_radial=params.radial_count(n_el),
        max_l=params.max_l,
        max_degree=params.degrees(n_el),
        l_weight=params.l_weight,
        radial_scale=params.radial_scale,
        inner_cutoff=inner_cutoffs(list(elements), params),
        inner_width=params.inner_width,
        core_strength=params.core_strength,
        core_decay=params.core_decay,
    )


class AcePotential(Potential):
    """Linear atomic cluster expansion (PACE-compatible), fitted by Bayesian linear regression."""

    family = "ace"
    description = "Linear atomic cluster expansion (closed-form Bayesian fit, posterior σ)"
    Params = AceParams
    custom_fit = True

    def __init__(self, elements: list[str], params: AceParams | None = None) -> None:
        super().__init__(elements, self._pinned(params or AceParams(), len(elements)))
        self._compute_dtype = torch.float64
        self.set_basis(self.params)

    @staticmethod
    def _pinned(params: AceParams, n_el: int) -> AceParams:
        """`params` with the element-count defaults pinned, so a saved model rebuilds the same
        basis even if a later matloop changes its defaults."""
        return params.model_copy(
            update={
                "max_degree_per_order": params.degrees(n_el),
                "n_radial": params.radial_count(n_el),
            }
        )

    def basis_for(self, params: AceParams) -> AceBasis:
        """The basis `params` gives this model's elements (the model itself is unchanged)."""
        return build_basis(self.elements, params)

    def set_basis(self, params: AceParams) -> None:
        """(Re)build the basis from `params`; coefficients and posterior start empty."""
        params = self._pinned(params, len(self.elements))
        self.params = params
        self.basis = build_basis(self.elements, params)
        self.register_buffer(
            "coefficients", torch.zeros(self.basis.n_coefficients, dtype=torch.float64)
        )
        self.posterior = AcePosterior()

    # --- dtype: coefficients stay float64, casts choose the compute dtype -------------------
    @property
    def dtype(self) -> torch.dtype:
        return self._compute_dtype

    def _apply(self, fn, recurse=True):
        saved = {
            (id(m), name): buf
            for m in self.modules()
            for name, buf in m._buffers.items()
            if buf is not None and buf.is_floating_point()
        }
        probe = fn(torch.zeros((), dtype=self._compute_dtype))
        super()._apply(fn, recurse)
        for m in self.modules():
            for name, new in list(m._buffers.items()):
                old = saved.get((id(m), name))
                if old is not None and new is not None and new.dtype != old.dtype:
                    m._buffers[name] = old.to(new.device)
        if probe.is_floating_point():
            self._compute_dtype = probe.dtype
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "coefficients"
        if key in state_dict and state_dict[key].shape != self.coefficients.shape:
            shape = tuple(state_dict[key].shape)
            raise ValueError(
                f"coefficients have shape {shape}, the basis has {self.n_coefficients}"
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def has_variance(self) -> bool:
        """True once the fit has filled the posterior (σ from :mod:`.uncertainty`)."""
        return self.posterior.has_variance

    @property
    def n_coefficients(self) -> int:
        return self.basis.n_coefficients

    def set_coefficients(self, coefficients: torch.Tensor) -> None:
        """Set c (P,) (stored float64)."""
        c = torch.as_tensor(coefficients, dtype=torch.float64).reshape(-1)
        if c.numel() != self.n_coefficients:
            raise ValueError(f"expected {self.n_coefficients} coefficients, got {c.numel()}")
        self.coefficients = c.clone()

    # --- physics --------------------------------------------------------------------------
    @property
    def cutoff(self) -> float:
        return self.basis.cutoff

    def graph(self, atoms: Atoms) -> AtomicGraph:
        """The structure's graph; vesin's vectors directly and a table lookup of the species
        (per-step Python overhead matters for MD on small cells)."""
        from vesin import NeighborList

        check_structure(atoms)
        lookup = np.full(max(119, int(atoms.numbers.max(initial=0)) + 1), -1, dtype=np.int64)
        lookup[[atomic_numbers[s] for s in self.elements]] = np.arange(len(self.elements))
        species = lookup[atoms.numbers]
        if (species < 0).any():
            species = species_indices(atoms, self.elements)  # raises the clear error
        positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        cell = np.ascontiguousarray(atoms.cell.array, dtype=np.float64) if pbc.any() else None
        i, j, vectors = NeighborList(cutoff=self.cutoff, full_list=True).compute(
            points=positions,
            box=cell if cell is not None else np.zeros((3, 3)),
            periodic=pbc.tolist(),
            quantities="ijD",
        )
        order = np.argsort(i, kind="stable")
        volume = float(abs(atoms.cell.volume)) if pbc.all() else 0.0
        return AtomicGraph(
            species=torch.from_numpy(species),
            structure=torch.zeros(len(atoms), dtype=torch.long),
            centers=torch.from_numpy(i[order].astype(np.int64)),
            neighbors=torch.from_numpy(j[order].astype(np.int64)),
            vectors=torch.from_numpy(np.ascontiguousarray(vectors[order])).to(self.dtype),
            volumes=torch.tensor([volume], dtype=self.dtype),
            n_atoms=torch.tensor([len(atoms)], dtype=torch.long),
        )

    def _coefficients(self, dtype: torch.dtype) -> torch.Tensor:
        return self.coefficients.to(dtype)

    def _weights_key(self, dtype: torch.dtype) -> tuple:
        """Changes whenever the float64 coefficients do (new tensor or in-place update)."""
        c = self.coefficients
        return (c.data_ptr(), c._version, dtype)

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        """Interaction energy per structure (eV), differentiable w.r.t. graph.vectors."""
        vectors = graph.vectors
        b = self.basis
        pair = b.pair_index(graph.species, graph.centers, graph.neighbors)
        values = b.edge_basis(vectors, pair)
        a = b.atomic_base(values, graph.centers, graph.neighbor_species, graph.n_total_atoms)
        dtype = vectors.dtype
        atomic = b.atomic_energies(
            a, graph.species, self._coefficients(dtype), self._weights_key(dtype)
        )
        core = b.core_energy(vectors, pair)
        energy = atomic.new_zeros(graph.n_structures).index_add(0, graph.structure, atomic)
        return energy.index_add(0, graph.structure[graph.centers], core)

    def predict(
        self,
        graph: AtomicGraph,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        if create_graph or not (forces or stress):
            return super().predict(graph, forces=forces, stress=stress, create_graph=create_graph)
        dtype = self.dtype
        graph = graph.to(dtype)
        edge_grad = torch.zeros_like(graph.vectors)
        energy = graph.vectors.new_zeros(graph.n_structures)
        coef = self._coefficients(dtype)
        for atoms, edges, centers in atom_blocks(graph, self._block_atoms(graph)):
            e_block, g_block = self._block_energy_and_gradient(graph, atoms, edges, centers, coef)
            edge_grad[edges] = g_block
            energy = energy.index_add(0, graph.structure[atoms], e_block)
        out = {"energy": energy}
        out.update(self._outputs_from_edge_gradients(edge_grad, graph, forces, stress))
        return out

    def _block_atoms(self, graph: AtomicGraph) -> int:
        """Centre atoms per block: CHUNK_ATOMS, fewer where a block's ∇Y would pass BLOCK_BYTES."""
        slots = 1.25 * len(graph.centers) / max(1, graph.n_total_atoms) + 1  # padded width
        per_atom = 3 * (self.basis.max_l + 1) ** 2 * slots * graph.vectors.element_size()
        return int(min(CHUNK_ATOMS, max(16, BLOCK_BYTES // per_atom)))

    def _block_energy_and_gradient(
        self, graph: AtomicGraph, atoms: slice, edges: slice, centers: torch.Tensor, coef
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Atomic energies of a block (eV) and ∂E/∂r_e of its edges (analytic edge Jacobian)."""
        b = self.basis
        vectors = graph.vectors[edges]
        species = graph.species[atoms]
        nbr_species = graph.species[graph.neighbors[edges]]
        pair = species[centers] * len(self.elements) + nbr_species
        atomic, edge_grad = b.energy_and_edge_gradient(
            vectors, centers, species, nbr_species, coef, self._weights_key(coef.dtype)
        )
        r = torch.linalg.vector_norm(vectors, dim=1)
        core, dcore = b.radial.core_repulsion_with_derivative(r, pair)
        if b.radial.core_strength > 0:
            edge_grad = edge_grad + (dcore / r)[:, None] * vectors
        atom_energy = atomic.index_add(0, centers, core)
        return atom_energy, edge_grad

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        return self.basis.atom_features(graph.to(torch.float64))

    def design_rows(self, graph: AtomicGraph, *, forces: bool = True, stress: bool = True):
        return self.basis.design_rows(graph.to(torch.float64), forces=forces, stress=stress)

    # --- closed-form fit ------------------------------------------------------------------
    def fit(
        self,
        train_data: Any,
        valid_data: Any,
        config: Any,
        *,
        out_dir: Any = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Bayesian linear fit (:func:`matloop.models.ace.fitting.fit_ace`)."""
        from matloop.models.ace.fitting import fit_ace

        facts = fit_ace(self, train_data, valid_data, config, out_dir=out_dir, progress=progress)
        facts.setdefault("n_coefficients", self.n_coefficients)
        return facts


__all__ = ["AceParams", "AcePotential", "build_basis", "inner_cutoffs"]
