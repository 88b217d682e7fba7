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
from pydantic import BaseModel, ConfigDict, Field, model_validator

from matloop.models.ace.basis import AceBasis
from matloop.models.ace.fitting import AceFitParams
from matloop.models.ace.uncertainty import AcePosterior
from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph, atom_blocks, species_indices

# centre atoms per block at inference (bounds memory for large cells)
CHUNK_ATOMS = 1024
# default max total degree by number of elements (0: any larger count); single element:
# 808 coefficients; two elements: 3,006; three: 5,238
DEFAULT_MAX_DEGREE = {1: 16.0, 2: 13.0, 3: 11.0, 0: 9.0}


class AceParams(BaseModel):
    """Basis of the linear ACE (lengths in Å, energies in eV).

    Defaults were chosen on validation splits of the mlearn Si and Cu training sets (ridge fits
    on energies and forces): order 4 with max degree 16 beat order 3 / degree 12 (Si 2.9 vs
    4.2 meV/atom, 0.068 vs 0.087 eV/Å); λ = 1 beat 2 and 5 (Si 2.70 / 0.066, 2.94 / 0.068,
    4.07 / 0.079); larger bases validate better still (Si 2.57 / 0.062 at 1,350 coefficients)
    at about twice the MD and fitting cost.
    """

    model_config = ConfigDict(extra="forbid")

    cutoff: float = Field(5.0, gt=0, description="outer cutoff rc (Å)")
    correlation_order: int = Field(
        4, ge=1, le=4, description="max correlation order ν (body order ν+1)"
    )
    max_degree: float | None = Field(
        None,
        gt=0,
        description="total degree Σ_t (n_t + 1 + l_weight·l_t) of a basis function (the size "
        "knob); default by element count: 16, 13, 11, then 9 (the basis grows ~ n_el^ν)",
    )
    degree_drop_per_order: float = Field(
        1.0,
        ge=0,
        description="orders ν > 2 get max_degree − drop·(ν − 2) (fewer high-body-order functions)",
    )
    max_degree_per_order: list[float] | None = Field(
        None,
        description="max total degree for orders 1..ν (overrides max_degree; length ν)",
    )
    n_radial: int | None = Field(
        None, ge=1, le=30, description="radial functions g_k (default: ⌊max degree⌋)"
    )
    max_l: int = Field(5, ge=0, le=8, description="largest spherical-harmonic order l")
    l_weight: float = Field(1.5, gt=0, description="weight of l in the degree")
    radial_scale: float = Field(1.0, gt=0, description="λ of PACE's ChebExpCos radial base")
    inner_cutoff: float | None = Field(
        None,
        gt=0,
        description="inner cutoff r_in for every pair (Å); default inner_cutoff_fraction × the "
        "sum of covalent radii",
    )
    inner_cutoff_fraction: float = Field(0.6, gt=0, le=1.5)
    inner_width: float = Field(0.25, gt=0, description="width of the inner switch (Å)")
    core_strength: float = Field(
        20.0, ge=0, description="core repulsion prefactor prehc (eV·Å) below the inner cutoff"
    )
    core_decay: float = Field(1.0, gt=0, description="core repulsion λ_hc (1/Å²)")
    fit: AceFitParams = Field(default_factory=AceFitParams)

    @model_validator(mode="after")
    def _check(self) -> AceParams:
        if (
            self.max_degree_per_order is not None
            and len(self.max_degree_per_order) != self.correlation_order
        ):
            raise ValueError("max_degree_per_order needs one entry per correlation order")
        if self.inner_cutoff is not None and self.inner_cutoff >= self.cutoff:
            raise ValueError(
                f"inner_cutoff {self.inner_cutoff} Å must be below cutoff {self.cutoff} Å"
            )
        return self

    def degrees(self, n_elements: int = 1) -> list[float]:
        """Max total degree of each correlation order 1..ν."""
        if self.max_degree_per_order is not None:
            return list(self.max_degree_per_order)
        top = self.max_degree
        if top is None:
            top = DEFAULT_MAX_DEGREE.get(n_elements, DEFAULT_MAX_DEGREE[0])
        drop = self.degree_drop_per_order
        return [top - drop * max(0, nu - 2) for nu in range(1, self.correlation_order + 1)]

    def radial_count(self, n_elements: int = 1) -> int:
        if self.n_radial is not None:
            return self.n_radial
        return max(1, int(max(self.degrees(n_elements))))


def inner_cutoffs(elements: list[str], params: AceParams) -> torch.Tensor:
    """r_in per ordered element pair (n_el, n_el), Å."""
    radii = torch.tensor([covalent_radii[atomic_numbers[s]] for s in elements], dtype=torch.float64)
    if params.inner_cutoff is not None:
        return torch.full((len(elements), len(elements)), params.inner_cutoff, dtype=torch.float64)
    return params.inner_cutoff_fraction * (radii[:, None] + radii[None, :])


class AcePotential(Potential):
    """Linear atomic cluster expansion (PACE-compatible), fitted by Bayesian linear regression."""

    family = "ace"
    description = "Linear atomic cluster expansion (closed-form Bayesian fit, posterior σ)"
    Params = AceParams
    custom_fit = True

    def __init__(self, elements: list[str], params: AceParams | None = None) -> None:
        params = params or AceParams()
        super().__init__(elements, params)
        self.basis = AceBasis(
            self.elements,
            cutoff=params.cutoff,
            n_radial=params.radial_count(len(self.elements)),
            max_l=params.max_l,
            max_degree=params.degrees(len(self.elements)),
            l_weight=params.l_weight,
            radial_scale=params.radial_scale,
            inner_cutoff=inner_cutoffs(self.elements, params),
            inner_width=params.inner_width,
            core_strength=params.core_strength,
            core_decay=params.core_decay,
        )
        self.register_buffer(
            "coefficients", torch.zeros(self.basis.n_coefficients, dtype=torch.float64)
        )
        self.posterior = AcePosterior()
        self._compute_dtype = torch.float64

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
        for atoms, edges, centers in atom_blocks(graph, CHUNK_ATOMS):
            e_block, g_block = self._block_energy_and_gradient(graph, atoms, edges, centers, coef)
            edge_grad[edges] = g_block
            energy = energy.index_add(0, graph.structure[atoms], e_block)
        out = {"energy": energy}
        out.update(self._outputs_from_edge_gradients(edge_grad, graph, forces, stress))
        return out

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


__all__ = ["AceParams", "AcePotential", "inner_cutoffs"]
