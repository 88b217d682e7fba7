"""Model-level contract checks: declared capabilities, dtype consistency, batching."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from ase import Atoms

from matloop.models.base import Potential
from matloop.models.graph import collate


def assert_capabilities_declared(model: Potential) -> None:
    """The family declares its capabilities with the types the base class gives them."""
    caps = model.capabilities()
    assert set(caps) == {"variance", "fit_hook", "pretrained"}, caps
    assert all(isinstance(v, bool) for v in caps.values()), caps
    assert caps["fit_hook"] == type(model).custom_fit
    if caps["fit_hook"]:
        assert type(model).fit is not Potential.fit, "custom_fit families must override fit()"


def _predict(model: Potential, atoms: Atoms, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    graph = model.graph(atoms).to(dtype)
    out = model.predict(graph, forces=True, stress=bool(atoms.pbc.all()))
    return {k: v.detach().double() for k, v in out.items()}


def assert_dtype_consistent(
    model: Potential,
    atoms: Atoms,
    energy_rtol: float = 1e-5,
    energy_atol_per_atom: float = 5e-5,
    force_atol: float = 1e-4,
) -> None:
    """float32 and float64 copies of `model` agree on energy and forces (eV/Å).

    The energy may differ by `energy_rtol` of max(|E|, 1 eV) or by `energy_atol_per_atom` (eV)
    per atom, whichever is larger: a linear model whose site energy is a sum of terms a few
    hundred times larger than itself keeps only five of float32's seven digits, ~10 µeV/atom,
    still 20× below the ~1 meV/atom error of the best potentials; a dtype bug (a constant or
    table left in the wrong precision) shows as 1e-3 or more.
    """
    m64 = copy.deepcopy(model).double()
    m32 = copy.deepcopy(model).float()
    a, b = _predict(m64, atoms, torch.float64), _predict(m32, atoms, torch.float32)
    e_err = float((a["energy"] - b["energy"]).abs().max())
    e_tol = max(
        energy_rtol * max(float(a["energy"].abs().max()), 1.0), energy_atol_per_atom * len(atoms)
    )
    assert e_err <= e_tol, f"float32 energy differs by {e_err:.1e} eV (allowed {e_tol:.1e} eV)"
    f_err = float((a["forces"] - b["forces"]).abs().max())
    assert f_err <= force_atol, f"float32 forces differ by {f_err:.1e} eV/Å"


def assert_batch_equals_single(
    model: Potential, structures: Sequence[Atoms], atol: float = 1e-9
) -> None:
    """Predicting a batch of structures equals predicting each alone (float64 model)."""
    graphs = [model.graph(a) for a in structures]
    batch = model.predict(collate(graphs), forces=True, stress=True)
    singles = [model.predict(g, forces=True, stress=True) for g in graphs]
    energy = torch.cat([s["energy"] for s in singles])
    forces = torch.cat([s["forces"] for s in singles])
    virial = torch.cat([s["virial"] for s in singles])
    torch.testing.assert_close(batch["energy"].detach(), energy.detach(), rtol=0, atol=atol)
    torch.testing.assert_close(batch["forces"].detach(), forces.detach(), rtol=0, atol=atol)
    torch.testing.assert_close(batch["virial"].detach(), virial.detach(), rtol=0, atol=atol * 10)
