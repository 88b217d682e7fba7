"""ASE calculator for matloop potentials."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from matloop.errors import DataError
from matloop.models import Potential
from matloop.models.io import load_model, resolve_model_path
from matloop.models.outputs import stress_from_virial
from matloop.neighbors import check_structure, no_stress_message, stress_volume
from matloop.utils.allocator import keep_freed_memory
from matloop.utils.threads import default_torch_threads, torch_threads


class MatloopCalculator(Calculator):
    """A trained matloop potential as an ASE calculator.

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (eV/Å) and ``stress`` (eV/Å³, ASE
    Voigt order xx yy zz yz xz xy) for a cell periodic along at least one axis with a non-zero
    volume. For a slab or wire this is ASE's convention (EMT's): σ = (1/V) ∂E/∂ε with V the
    whole cell, vacuum included, and positions strained with the cell (σ·V does not depend on
    the vacuum; see :func:`stress_volume`).

    Models with a predictive variance (``calc.has_variance``) also give ``energy_std``: the
    predictive standard deviation of the energy per atom (eV/atom, the same meaning and unit as
    :class:`~matloop.calculators.committee.CommitteeCalculator`'s ``energy_std``), and

    - the ``kernel`` family: ``energies_std``, the std of each atomic energy (eV, (n_atoms,));
    - linear families with a Bayesian posterior (``ace``): ``forces_std`` (eV/Å, (n_atoms,): per
      atom the root mean over x, y, z of the force-component variance, as the committee gives
      it), ``extrapolation_grade`` ((n_atoms,), > 1 is extrapolation: the MaxVol grade, or
      the force σ relative to the validation atoms' for small training sets) and
      ``max_extrapolation_grade`` (its maximum over the structure).

    Only such models list these in ``implemented_properties``; they are computed only when asked
    for (``calc.get_property("forces_std", atoms)``), so MD does not pay for them.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    kernel_variance_properties = ["energy_std", "energies_std"]
    posterior_properties = [
        "energy_std",
        "forces_std",
        "extrapolation_grade",
        "max_extrapolation_grade",
    ]

    def __init__(
        self,
        model: Potential,
        *,
        metadata: dict[str, Any] | None = None,
        path: str | os.PathLike | None = None,
        dtype: str | None = None,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        keep_freed_memory()  # MD reuses its temporaries instead of page-faulting them each step
        self.model = model.eval()
        if dtype is not None:
            self.model.to(getattr(torch, dtype))
        self.metadata = metadata or {}
        self.path = Path(path) if path is not None else None
        #: torch threads used inside calculate (the caller's setting is restored after it);
        #: default MATLOOP_NUM_THREADS or 1, as in the matloop commands: with 2 threads one force
        #: call of 64 / 500 Cu atoms took 2.5 / 5.0× as long on a 2-core machine with one core
        #: busy, 0.93 / 0.78× when quiet (benchmarks/calculator_threads.py)
        self.num_threads = default_torch_threads() if num_threads is None else num_threads
        self._posterior = _fitted_posterior(self.model)
        if self._posterior is not None:
            self.variance_properties = list(self.posterior_properties)
            if not self._posterior.has_grade:
                self.variance_properties = ["energy_std", "forces_std"]
        elif bool(getattr(self.model, "has_variance", False)):
            self.variance_properties = list(self.kernel_variance_properties)
        else:
            self.variance_properties = []
        if self.variance_properties:
            self.implemented_properties = [
                *type(self).implemented_properties,
                *self.variance_properties,
            ]

    @property
    def has_variance(self) -> bool:
        """True when the model offers a predictive variance (results ``energy_std``)."""
        return bool(self.variance_properties)

    @property
    def elements(self) -> list[str]:
        return list(self.model.elements)

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def cutoff(self) -> float:
        return float(self.model.cutoff)

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's check, with shortcuts for MD, which asks three times a step: moved positions
        are a change whatever else changed (every result is recomputed from the whole
        structure), and a structure exactly equal in everything ASE compares is none. ASE's
        six ``allclose`` comparisons per call were 10-20 % of a 64-atom `ace` MD step."""
        old = self.atoms
        if old is not None and len(atoms) == len(old):
            if not np.array_equal(atoms.positions, old.positions):
                return ["positions"]
            if _exactly_equal(atoms, old):
                return []
        return super().check_state(atoms, tol)

    def calculate(
        self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        if len(self.atoms) == 0:  # nothing to evaluate (some families' graphs need an atom)
            check_structure(self.atoms)
            self.results.update(energy=0.0, free_energy=0.0, forces=np.zeros((0, 3)))
            if stress_volume(self.atoms) is not None:
                self.results["stress"] = np.zeros(6)
            return
        with torch_threads(self.num_threads):
            self._calculate(properties, system_changes)

    def _calculate(self, properties, system_changes) -> None:
        atoms = self.atoms
        check_structure(atoms)
        volume = stress_volume(atoms)
        if "stress" in properties and volume is None:
            raise PropertyNotImplementedError(no_stress_message(atoms))
        graph = self.model.graph(atoms)
        want_variance = self.has_variance and bool(set(properties) & set(self.variance_properties))
        # asking for the variance of an unchanged structure (ASE passes no system_changes then)
        # must not recompute energy and forces
        if system_changes or "energy" not in self.results:
            self._energy_forces_stress(atoms, graph, volume)
        if want_variance and self._posterior is not None:
            from matloop.models.ace.uncertainty import uncertainty_results

            wanted = set(properties) & set(self.variance_properties)
            self.results.update(uncertainty_results(self.model, graph, sorted(wanted)))
        elif want_variance:
            per_atom = "energies_std" in properties
            variance = self.model.energy_variance(graph, per_atom=per_atom)
            if per_atom:
                variance, atom_variance = variance
                self.results["energies_std"] = atom_variance.double().sqrt().numpy()
            std = float(variance.double().sum().sqrt())
            self.results["energy_std"] = std / max(len(atoms), 1)

    def _energy_forces_stress(self, atoms: Atoms, graph, volume: float | None) -> None:
        if volume is not None and not atoms.pbc.all():
            # graphs of slabs carry V = 0, which some families read as no stress
            graph = replace(graph, volumes=torch.full_like(graph.volumes, volume))
        out = self.model.predict(graph, forces=True, stress=volume is not None)
        energy = float(out["energy"].detach().double().sum()) + self.model.reference_energy(atoms)
        forces = out["forces"].detach().double().numpy()
        if not (np.isfinite(energy) and np.isfinite(forces).all()):
            raise DataError(_non_finite_message(atoms, self.family))
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["forces"] = forces
        if volume is not None:
            stress = stress_from_virial(out["virial"].detach().double(), graph.volumes.double())
            self.results["stress"] = stress[0].numpy()

    def get_descriptors(self, atoms: Atoms) -> np.ndarray:
        """Per-atom features of the model (n_atoms, n_features), e.g. for diversity selection."""
        with torch.no_grad():
            return self.model.atom_features(self.model.graph(atoms)).double().numpy()


def _exactly_equal(a: Atoms, b: Atoms) -> bool:
    """Numbers, cell, pbc and the initial charges and moments identical (positions checked
    by the caller): no change in anything ASE's ``compare_atoms`` looks at."""
    return (
        np.array_equal(a.numbers, b.numbers)
        and np.array_equal(a.cell.array, b.cell.array)
        and np.array_equal(a.pbc, b.pbc)
        and all(
            np.array_equal(a.arrays.get(key), b.arrays.get(key))
            for key in ("initial_magmoms", "initial_charges")
        )
    )


def _non_finite_message(atoms: Atoms, family: str) -> str:
    """Why a model gave NaN/inf: usually atoms on top of each other (distance in Å)."""
    from matloop.neighbors import neighbor_list

    text = f"the {family} model gave a NaN or inf energy/forces for {atoms.get_chemical_formula()}"
    nl = neighbor_list(atoms, 0.5)
    if len(nl.distances):
        k = int(np.argmin(nl.distances))
        text += (
            f": atoms {int(nl.centers[k])} and {int(nl.neighbors[k])} are "
            f"{nl.distances[k]:.3g} Å apart"
        )
    return text


def _fitted_posterior(model: Potential):
    """The model's Bayesian posterior (linear families such as ``ace``) when fitted, else None."""
    if getattr(model, "posterior", None) is None:
        return None
    from matloop.models.ace.uncertainty import posterior_of

    post = posterior_of(model)
    return post if post is not None and post.has_variance else None


def load_calculator(path: str | os.PathLike, **kwargs: Any) -> MatloopCalculator:
    """Load a model file (or the directory `matloop train` wrote) as a calculator.

    A delta-learned model (metadata ``delta_base``) comes back as base + correction.
    """
    resolved = resolve_model_path(path)
    model, metadata = load_model(resolved)
    calc = MatloopCalculator(model, metadata=metadata, path=resolved, **kwargs)
    if metadata.get("delta_base"):
        from matloop.calculators.foundation import DeltaCalculator
        from matloop.calculators.registry import resolve_calculator

        base_name = str(metadata["delta_base"])
        base = resolve_calculator(base_name, **dict(metadata.get("delta_base_kwargs") or {}))
        return DeltaCalculator(base, calc, base_name)
    return calc
