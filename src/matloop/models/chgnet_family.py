"""Fine-tuning the pretrained CHGNet (Deng et al., Nat. Mach. Intell. 5, 1031 (2023)) as a family.

``matloop train --model chgnet`` starts from the pretrained weights that ship inside the chgnet
wheel (offline) and fine-tunes them on the user's energies, forces and (optionally) stresses; the
fine-tuned state_dict is saved in matloop's one-file format, so ``matloop.load`` returns an ASE
calculator like for every family.

How it differs from the edge-vector families (and why it overrides ``graph``/``predict``):

* CHGNet builds its own atom graph (6 Å) and bond graph (3 Å, angles), so :meth:`graph` stores
  CHGNet's ``CrystalGraph`` tensors in ``graph.extra`` (with per-structure counts so that
  :func:`~matloop.models.graph.collate` can batch them) and leaves matloop's edge lists empty.
* :meth:`predict` runs CHGNet's own network; forces (−∂E/∂R) and stress (∂E/∂ε / V) come from
  CHGNet's autograd through positions and a strain, in the model's dtype (float64 works too).
* CHGNet predicts total energies (with its per-element "AtomRef" composition model). matloop's E0
  is kept as the bookkeeping reference: :meth:`energy` returns E_CHGNet − Σ E0 so that
  ``MatloopCalculator`` (which adds Σ E0 back) returns CHGNet's total energy.
* Non-periodic structures are placed in a vacuum box wider than the cutoff (CHGNet needs a cell).
* It is trained by matloop's one training loop (:func:`matloop.training.train`), through two hooks:
  :meth:`before_training` refits the AtomRef weights of the training elements by least squares to
  the reference energies (so a constant per-element offset between the user's method and MPtrj's
  PBE(+U) is absorbed first), and :meth:`trainable_parameters` leaves out the weights listed in
  ``freeze``; checkpoints, resume, schedules and model selection are the loop's.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph, species_indices
from matloop.models.params import CHGNetParams
from matloop.units import GPA_TO_EV_PER_A3

# CrystalGraph tensors kept in graph.extra: name -> which count (column of "cg_counts") sizes it
_CG_FIELDS = {
    "cg_atomic_number": 0,
    "cg_frac": 0,
    "cg_atom_graph": 1,
    "cg_image": 1,
    "cg_d2u": 1,
    "cg_u2d": 2,
    "cg_bond_graph": 3,
}
_VACUUM = 2.0  # Å beyond the cutoff around a non-periodic structure


def padded_cell(atoms: Atoms, pad: float) -> np.ndarray:
    """A cell for `atoms` periodic along every axis with no interaction across the open ones.

    The cell vectors of periodic axes are kept (so a slab keeps its in-plane images); each
    non-periodic axis gets a vector orthogonal to the periodic ones, as long as the structure's
    extent along it plus 2·`pad` (Å): images across it are then at least 2·`pad` apart.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    periodic = cell[pbc]
    if len(periodic):
        open_axes = np.linalg.svd(periodic)[2][len(periodic) :]
    else:
        open_axes = np.eye(3)
    for axis, direction in zip(np.flatnonzero(~pbc), open_axes, strict=True):
        extent = float(np.ptp(atoms.positions @ direction)) if len(atoms) else 0.0
        cell[axis] = direction * (extent + 2.0 * pad)
    if np.linalg.det(cell) < 0:
        cell[np.flatnonzero(~pbc)[-1]] *= -1.0
    return cell


def _load_chgnet(name: str):
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:  # pragma: no cover - the registry checks `requires`
        from matloop.errors import ConfigError

        raise ConfigError(f"the chgnet family needs chgnet: pip install chgnet ({exc})") from None
    with contextlib.redirect_stdout(io.StringIO()):
        return CHGNet.load(model_name=name, use_device="cpu", verbose=False)


class CHGNetFinetune(Potential):
    """Pretrained CHGNet, fine-tuned on the user's data (see the module docstring)."""

    family = "chgnet"
    description = "CHGNet pretrained universal potential, fine-tuned on your data (chgnet)"
    Params = CHGNetParams
    #: usable before training (the pretrained weights)
    pretrained = True

    def __init__(self, elements: list[str], params: CHGNetParams | None = None) -> None:
        params = params or CHGNetParams()
        super().__init__(elements, params)
        self.chgnet = _load_chgnet(params.pretrained)
        known = int(self.chgnet.atom_embedding.embedding.num_embeddings)
        missing = [s for s in self.elements if not 1 <= atomic_numbers.get(s, 0) <= known]
        if missing:
            from matloop.errors import UnknownElementError

            raise UnknownElementError(
                f"element(s) {', '.join(missing)} not described by the pretrained CHGNet "
                f"{params.pretrained} (it knows Z = 1..{known}, H to {chemical_symbols[known]})"
            )
        self.chgnet.graph_converter.on_isolated_atoms = "ignore"
        self.to(torch.get_default_dtype())

    @property
    def cutoff(self) -> float:
        return float(self.chgnet.graph_converter.atom_graph_cutoff)

    # --- graphs ---------------------------------------------------------------------------
    def _structure(self, atoms: Atoms):
        from pymatgen.io.ase import AseAtomsAdaptor

        if atoms.pbc.all():
            return AseAtomsAdaptor.get_structure(atoms)
        work = atoms.copy()  # CHGNet needs a fully periodic cell: pad the open directions
        work.set_cell(padded_cell(atoms, self.cutoff + _VACUUM))
        work.pbc = True
        return AseAtomsAdaptor.get_structure(work)

    def graph(self, atoms: Atoms) -> AtomicGraph:
        """CHGNet's crystal graph in ``extra`` (matloop's edge lists stay empty)."""
        species = species_indices(atoms, self.elements)
        structure = self._structure(atoms)
        cg = self.chgnet.graph_converter(structure)
        bond_graph = cg.bond_graph.reshape(-1, 5).long()
        atom_graph = cg.atom_graph.reshape(-1, 2).long()
        counts = [len(atoms), len(atom_graph), len(cg.undirected2directed), len(bond_graph)]
        volume = float(abs(atoms.cell.volume)) if atoms.pbc.all() else 0.0
        dtype = self.dtype
        return AtomicGraph(
            species=torch.from_numpy(species),
            structure=torch.zeros(len(atoms), dtype=torch.long),
            centers=torch.zeros(0, dtype=torch.long),
            neighbors=torch.zeros(0, dtype=torch.long),
            vectors=torch.zeros(0, 3, dtype=dtype),
            volumes=torch.tensor([volume], dtype=dtype),
            n_atoms=torch.tensor([len(atoms)], dtype=torch.long),
            extra={
                "cg_counts": torch.tensor([counts], dtype=torch.long),
                # coordinates from the float64 structure (CHGNet's graph rounds them to float32)
                "cg_lattice": torch.tensor(structure.lattice.matrix, dtype=dtype)[None],
                "cg_atomic_number": cg.atomic_number.long(),
                "cg_frac": torch.tensor(structure.frac_coords, dtype=dtype),
                "cg_atom_graph": atom_graph,
                "cg_image": cg.neighbor_image.to(dtype),
                "cg_d2u": cg.directed2undirected.long(),
                "cg_u2d": cg.undirected2directed.long(),
                "cg_bond_graph": bond_graph,
            },
        )

    def _split(self, graph: AtomicGraph) -> list[dict[str, torch.Tensor]]:
        """Per-structure CrystalGraph tensors of a (collated) graph."""
        counts = graph.extra["cg_counts"]
        parts = {
            name: torch.split(graph.extra[name], counts[:, col].tolist())
            for name, col in _CG_FIELDS.items()
        }
        out = []
        for s in range(len(counts)):
            item = {name: parts[name][s] for name in _CG_FIELDS}
            item["cg_lattice"] = graph.extra["cg_lattice"][s]
            out.append(item)
        return out

    def _batch(self, graphs: list[dict[str, torch.Tensor]], stress: bool):
        """CHGNet's ``BatchedGraph.from_graphs`` in the model's dtype (CHGNet's is float32)."""
        from chgnet.model.model import BatchedGraph

        model, dtype = self.chgnet, self.dtype
        numbers, positions, strains, volumes = [], [], [], []
        bases_ag, bases_bg, angle_bases, atom_graphs, bond_graphs, d2u, owners = (
            [] for _ in "1234567"
        )
        atom_offset = n_undirected = 0
        for k, g in enumerate(graphs):
            n_atom = len(g["cg_atomic_number"])
            lattice = g["cg_lattice"].to(dtype)
            strain = None
            if stress:
                strain = lattice.new_zeros(3, 3, requires_grad=True)
                lattice = lattice @ (torch.eye(3, dtype=dtype) + strain)
            volumes.append(torch.dot(lattice[0], torch.linalg.cross(lattice[1], lattice[2])))
            strains.append(strain)
            frac = g["cg_frac"].to(dtype).detach().requires_grad_(True)
            cart = frac @ lattice
            atom_graph = g["cg_atom_graph"]
            b_ag, b_bg, bond_vectors = model.bond_basis_expansion(
                center=cart[atom_graph[:, 0]],
                neighbor=cart[atom_graph[:, 1]],
                undirected2directed=g["cg_u2d"],
                image=g["cg_image"].to(dtype),
                lattice=lattice,
            )
            positions.append(cart)
            bases_ag.append(b_ag)
            bases_bg.append(b_bg)
            atom_graphs.append(atom_graph + atom_offset)
            d2u.append(g["cg_d2u"] + n_undirected)
            bond_graph = g["cg_bond_graph"]
            if len(bond_graph):
                vi = bond_vectors.index_select(0, bond_graph[:, 2])
                vj = bond_vectors.index_select(0, bond_graph[:, 4])
                angle_bases.append(model.angle_basis_expansion(vi, vj))
                bg = bond_graph.new_zeros(len(bond_graph), 3)
                bg[:, 0] = bond_graph[:, 0] + atom_offset
                bg[:, 1] = bond_graph[:, 1] + n_undirected
                bg[:, 2] = bond_graph[:, 3] + n_undirected
                bond_graphs.append(bg)
            numbers.append(g["cg_atomic_number"])
            owners.append(torch.full((n_atom,), k, dtype=torch.int32))
            atom_offset += n_atom
            n_undirected += len(b_ag)
        return BatchedGraph(
            atomic_numbers=torch.cat(numbers),
            bond_bases_ag=torch.cat(bases_ag),
            bond_bases_bg=torch.cat(bases_bg),
            angle_bases=torch.cat(angle_bases) if angle_bases else torch.tensor([]),
            batched_atom_graph=torch.cat(atom_graphs),
            batched_bond_graph=torch.cat(bond_graphs) if bond_graphs else torch.tensor([]),
            atom_owners=torch.cat(owners),
            directed2undirected=torch.cat(d2u),
            atom_positions=positions,
            strains=strains,
            volumes=torch.stack(volumes),
        )

    # --- energy and derivatives -----------------------------------------------------------
    def _e0_per_atom(self, graph: AtomicGraph) -> torch.Tensor:
        e0 = torch.tensor([self.e0[s] for s in self.elements], dtype=torch.float64)
        return e0[graph.species]

    def predict(
        self,
        graph: AtomicGraph,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Interaction energy (S,) = E_CHGNet − Σ E0, forces (N, 3), virial ∂E/∂ε (S, 3, 3)."""
        # a batch mixing periodic and open structures gets the stress of the periodic ones (the
        # open ones' virial is that of their vacuum box; stress_from_virial makes it NaN, V = 0)
        stress = bool(stress and (graph.volumes > 0).any())
        items = self._split(graph)
        with torch.enable_grad():
            batched = self._batch(items, stress)
            pred = self.chgnet._compute(batched, compute_force=forces, compute_stress=stress)
            n_atoms = graph.n_atoms.to(self.dtype)
            energy = pred["e"] * n_atoms if self.chgnet.is_intensive else pred["e"]
            weight = self.chgnet.composition_model.fc.weight[0]
            numbers = batched.atomic_numbers
            atom_ref = weight[numbers - 1]
            energy = energy + atom_ref.new_zeros(len(items)).index_add(0, graph.structure, atom_ref)
            e0 = self._e0_per_atom(graph).to(energy.dtype)
            energy = energy - e0.new_zeros(len(items)).index_add(0, graph.structure, e0)
        out = {"energy": energy}
        if forces:
            out["forces"] = torch.cat(pred["f"])
        if stress:
            per_gpa = torch.stack(pred["s"]).reshape(-1, 3, 3)
            out["virial"] = per_gpa * GPA_TO_EV_PER_A3 * batched.volumes[:, None, None]
        if not create_graph:
            out = {k: v.detach() for k, v in out.items()}
        return out

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        return self.predict(graph, forces=False, stress=False, create_graph=True)["energy"]

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        """CHGNet's atom features before its last convolution, shape (N, 64)."""
        batched = self._batch(self._split(graph), stress=False)
        pred = self.chgnet._compute(batched, return_atom_feas=True)
        return torch.cat(pred["atom_fea"])

    # --- fitting --------------------------------------------------------------------------
    def _refit_atom_ref(self, graphs: list[AtomicGraph], energies: list[float]) -> dict:
        """Least-squares shift of the AtomRef weights of our elements to the reference energies."""
        with torch.no_grad():
            residual = np.array(
                [
                    e - float(self.predict(g, forces=False, stress=False)["energy"][0])
                    for g, e in zip(graphs, energies, strict=True)
                ]
            )
        counts = np.array(
            [np.bincount(g.species.numpy(), minlength=len(self.elements)) for g in graphs], float
        )
        shift, *_ = np.linalg.lstsq(counts, residual, rcond=None)
        weight = self.chgnet.composition_model.fc.weight
        with torch.no_grad():
            for symbol, delta in zip(self.elements, shift, strict=True):
                weight[0, atomic_numbers[symbol] - 1] += float(delta)
        return {s: float(d) for s, d in zip(self.elements, shift, strict=True)}

    def before_training(self, graphs: list[AtomicGraph], energies: list[float]) -> dict:
        """Refit the AtomRef weights of the training elements first (``refit_atom_ref``)."""
        if not self.params.refit_atom_ref:
            return {}
        return {"atom_ref_shift_ev": self._refit_atom_ref(graphs, energies)}

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """All CHGNet weights except those whose names start with a ``freeze`` prefix."""
        frozen = tuple(self.params.freeze)
        return [
            p
            for name, p in self.chgnet.named_parameters()
            if not (frozen and name.startswith(frozen))
        ]
