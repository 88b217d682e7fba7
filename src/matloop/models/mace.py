"""MACE (Batatia et al., NeurIPS 2022) built from mace-torch's own modules, trained by matloop.

The network is ``mace.modules.ScaleShiftMACE``: Bessel radial basis with a polynomial envelope,
spherical harmonics up to ``max_ell``, ``num_interactions`` equivariant message-passing layers whose
atomic basis is raised to body order ``correlation + 1`` by symmetric tensor products, and a
readout of the scalar channels, scaled and shifted.

What matloop adds around it:

* **Edge vectors in, energy out.** MACE computes r_ij = pos[receiver] − pos[sender] + shift. We
  feed it positions = 0 and shifts = matloop's edge vectors (sender = centre i, receiver =
  neighbour j), so its energy is a function of our ``graph.vectors`` and forces/stress come from
  the shared autograd path of :class:`~matloop.models.base.Potential` (MACE's own force code is not
  used; ``tests/test_mace_family.py`` checks both agree).
* **E0 stays outside** (``model.e0``): MACE's ``atomic_energies`` are zero. ``fit_normalization``
  sets the scale/shift of the atomic interaction energies and ``avg_num_neighbors`` (stored in the
  hyper-parameters, so the one-file model format rebuilds the same network).
* **Isolation.** mace-torch pins e3nn 0.4.4, whose import calls ``torch.load`` without
  ``weights_only`` (refused by torch ≥ 2.6 unless ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), and
  ``import mace`` sets that variable process-wide. We import it only here, inside
  :func:`_isolated_import`, which sets what the import needs and then restores ``os.environ`` (and
  the warning filters), so matloop's ``torch.load(weights_only=True)`` stays enforced.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import Any

import torch
from ase.data import atomic_numbers

from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph
from matloop.models.params import MACEParams

_MACE: Any = None


@contextlib.contextmanager
def _isolated_import():
    """Let mace/e3nn import (they need weights_only off for e3nn's constants), then undo it."""
    saved = dict(os.environ)
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # e3nn's "forcing weights_only=False" notice
            yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def _mace_modules():
    """``mace.modules`` and ``e3nn.o3``, imported once without leaving global side effects."""
    global _MACE
    if _MACE is None:
        with _isolated_import():
            import e3nn.o3
            import mace.modules

        _MACE = (mace.modules, e3nn.o3)
    return _MACE


class MACEPotential(Potential):
    """MACE from mace-torch on matloop's edge vectors: E = Σ_i (scale · ε_i + shift) + Σ_i E0."""

    family = "mace"
    description = "MACE higher-order equivariant message passing (mace-torch modules)"
    Params = MACEParams

    def __init__(self, elements: list[str], params: MACEParams | None = None) -> None:
        params = params or MACEParams()
        super().__init__(elements, params)
        modules, o3 = _mace_modules()
        default = torch.get_default_dtype()
        # build in float64 so the Clebsch–Gordan constants are exact before any cast
        torch.set_default_dtype(torch.float64)
        try:
            with warnings.catch_warnings():
                # e3nn scripts some blocks on construction and warns about TorchScript annotations
                warnings.filterwarnings("ignore", message="The TorchScript type system")
                warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")
                self.mace = modules.ScaleShiftMACE(
                    atomic_inter_scale=1.0,
                    atomic_inter_shift=0.0,
                    r_max=params.r_max,
                    num_bessel=params.num_bessel,
                    num_polynomial_cutoff=params.num_polynomial_cutoff,
                    max_ell=params.max_ell,
                    interaction_cls=modules.interaction_classes[params.interaction],
                    interaction_cls_first=modules.interaction_classes[params.interaction],
                    num_interactions=params.num_interactions,
                    num_elements=len(self.elements),
                    hidden_irreps=o3.Irreps(params.hidden_irreps),
                    MLP_irreps=o3.Irreps(params.mlp_irreps),
                    atomic_energies=torch.zeros(len(self.elements)).numpy(),
                    avg_num_neighbors=params.avg_num_neighbors or 1.0,
                    atomic_numbers=[atomic_numbers[s] for s in self.elements],
                    correlation=params.correlation,
                    gate=modules.gate_dict[params.gate],
                    radial_MLP=list(params.radial_mlp),
                )
        finally:
            torch.set_default_dtype(default)
        hidden = o3.Irreps(params.hidden_irreps)
        self._n_scalars = hidden.count(o3.Irrep(0, 1))
        self._hidden_dim = hidden.dim
        self.to(default)

    @property
    def cutoff(self) -> float:
        return float(self.params.r_max)

    def _data(self, graph: AtomicGraph) -> dict[str, torch.Tensor]:
        """MACE's input dict with positions 0 and shifts = edge vectors (so vectors = r_ij)."""
        dtype = graph.vectors.dtype
        n_structures = graph.n_structures
        ptr = torch.zeros(n_structures + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(graph.n_atoms, 0)
        return {
            "positions": graph.vectors.new_zeros(graph.n_total_atoms, 3),
            "edge_index": torch.stack([graph.centers, graph.neighbors]),
            "shifts": graph.vectors,
            "unit_shifts": torch.zeros_like(graph.vectors),
            "cell": graph.vectors.new_zeros(n_structures, 3, 3),
            "node_attrs": torch.nn.functional.one_hot(graph.species, len(self.elements)).to(dtype),
            "batch": graph.structure,
            "ptr": ptr,
        }

    def _forward(self, graph: AtomicGraph) -> dict[str, torch.Tensor]:
        return self.mace(self._data(graph), training=False, compute_force=False)

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        return self._forward(graph)["interaction_energy"]

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        """The invariant (0e) channels of every layer, shape (N, n_scalars × layers)."""
        feats = self._forward(graph)["node_feats"]
        f, d = self._n_scalars, self._hidden_dim
        layers = self.params.num_interactions
        return torch.cat([feats[:, i * d : i * d + f] for i in range(layers)], dim=1)

    def fit_normalization(self, graphs: list[AtomicGraph], energies_per_atom: torch.Tensor) -> None:
        """Shift = mean, scale = spread of the per-atom residual energies (eV/atom); neighbours."""
        e = energies_per_atom.double()
        spread = float(e.std()) if len(e) > 1 else 0.0
        block = self.mace.scale_shift
        block.scale.fill_(max(spread, 0.01))
        block.shift.fill_(float(e.mean()) if len(e) else 0.0)
        if self.params.avg_num_neighbors is None and graphs:
            edges = sum(len(g.centers) for g in graphs)
            atoms = sum(g.n_total_atoms for g in graphs)
            self.set_avg_num_neighbors(max(edges / max(atoms, 1), 1.0))

    def set_avg_num_neighbors(self, value: float) -> None:
        """Set the message normalisation of every interaction (kept in the hyper-parameters)."""
        self.params = self.params.model_copy(update={"avg_num_neighbors": float(value)})
        for interaction in self.mace.interactions:
            interaction.avg_num_neighbors = float(value)
