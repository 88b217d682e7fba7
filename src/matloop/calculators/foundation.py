"""Universal pretrained ("foundation") potentials by name, and base + correction calculators.

Registered names (resolve with :func:`matloop.calculators.resolve_calculator`):

* ``chgnet`` — CHGNet (optional extra: ``pip install chgnet``; the wheel ships the pretrained
  weights, so it works offline).
* ``mace_mp`` — MACE-MP through mace-torch (optional; downloads its weights on first use, which
  fails offline: a clear :class:`~matloop.errors.ConfigError` says so).

The packages are imported inside the factories only, so matloop works without them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import PropertyNotImplementedError, all_changes
from ase.calculators.mixing import SumCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from matloop.calculators.registry import register_calculator
from matloop.errors import ConfigError, MatloopError
from matloop.neighbors import no_stress_message, stress_volume

CHGNET_HINT = "install the optional extra with: pip install chgnet"
_CHGNET_CLASS: type | None = None


def _chgnet_calculator_class() -> type:
    """CHGNet's ASE calculator with float64 results and its noisy warning silenced."""
    global _CHGNET_CLASS
    if _CHGNET_CLASS is not None:
        return _CHGNET_CLASS
    try:
        from chgnet.model.dynamics import CHGNetCalculator
    except ImportError as exc:
        raise ConfigError(
            f"calculator 'chgnet' needs the chgnet package ({exc}); {CHGNET_HINT}"
        ) from None

    class MatloopCHGNet(CHGNetCalculator):
        """CHGNet (energy eV, forces eV/Å, stress eV/Å³ in ASE order) returning float64.

        Slabs and wires get a stress as :class:`~matloop.calculators.potential.MatloopCalculator`
        gives it (over the caller's whole cell); a structure without one is refused in one line.
        """

        # CHGNet sets free_energy = energy but does not list it (ASE's finite-difference stress
        # and force-consistent energies ask for it)
        implemented_properties = [*CHGNetCalculator.implemented_properties, "free_energy"]
        num_threads: int | None = None

        @property
        def elements(self) -> list[str]:
            """The elements CHGNet has an embedding for (H to Pu: Z = 1..94)."""
            return _chgnet_elements(self.model)

        def calculate(self, atoms=None, properties=None, system_changes=all_changes, **kw):
            from matloop.calculators.elements import check_elements
            from matloop.utils.threads import torch_threads

            atoms = atoms if atoms is not None else self.atoms
            check_elements(atoms, self, "chgnet")  # else an IndexError deep inside torch
            volume = stress_volume(atoms)
            if properties is not None and "stress" in properties and volume is None:
                raise PropertyNotImplementedError(no_stress_message(atoms))
            work = _open_axes_padded(atoms, float(self.model.graph_converter.atom_graph_cutoff))
            with warnings.catch_warnings(), torch_threads(self.num_threads):
                warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
                super().calculate(work, properties, system_changes, **kw)
            self.atoms = atoms.copy()  # the cache compares with the caller's structure
            if volume is None:
                self.results.pop("stress", None)
            for key in ("energy", "free_energy"):
                self.results[key] = float(self.results[key])
            for key in ("forces", "stress", "energies", "magmoms"):
                if key in self.results:
                    self.results[key] = np.asarray(self.results[key], dtype=np.float64)
            if "stress" in self.results:
                stress = self.results["stress"]
                # CHGNet divides ∂E/∂ε by the *signed* volume: a left-handed cell flips the sign
                if np.linalg.det(work.cell.array) < 0:
                    stress = -stress
                if stress.shape == (3, 3):  # ASE calculators return Voigt order
                    stress = full_3x3_to_voigt_6_stress(stress)
                # ∂E/∂ε of a slab or wire is that of its padded box (nothing interacts across
                # the vacuum), divided by the caller's cell volume as MatloopCalculator does
                self.results["stress"] = stress * (abs(work.cell.volume) / volume)

    _CHGNET_CLASS = MatloopCHGNet
    return MatloopCHGNet


def _chgnet_elements(model) -> list[str]:
    """Element symbols a CHGNet model embeds (its atom embedding has one row per Z ≥ 1)."""
    from ase.data import chemical_symbols

    n = int(model.atom_embedding.embedding.num_embeddings)
    return list(chemical_symbols[1 : n + 1])


def _open_axes_padded(atoms, cutoff: float):
    """`atoms`, or a copy whose non-periodic axes get a vacuum cell wider than `cutoff` (Å).

    CHGNet needs an invertible cell even along open axes (a molecule without a cell used to end
    in numpy's "Singular matrix"); periodic axes and the pbc flags are kept.
    """
    from matloop.models.chgnet_family import padded_cell
    from matloop.neighbors import check_structure

    check_structure(atoms)
    if atoms.pbc.all():
        return atoms
    work = atoms.copy()
    work.set_cell(padded_cell(atoms, cutoff + 2.0))
    return work


def chgnet_calculator(num_threads: int | None = None, **kwargs: Any):
    """The pretrained CHGNet as an ASE calculator (CPU unless ``use_device`` is given)."""
    from matloop.utils.threads import default_torch_threads

    cls = _chgnet_calculator_class()
    kwargs.setdefault("use_device", "cpu")
    kwargs.setdefault("on_isolated_atoms", "ignore")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its banner on load
        calc = cls(**kwargs)
    # torch threads inside calculate (the caller's setting is restored): matloop's default, as
    # for MatloopCalculator
    calc.num_threads = default_torch_threads() if num_threads is None else num_threads
    return calc


MACE_HINT = (
    "mace_mp needs the optional package mace-torch (pip install 'matloop[mace]'; it pins "
    "e3nn 0.4.4) and downloads the MACE-MP weights from GitHub on first use"
)


def mace_mp_calculator(**kwargs: Any):
    """MACE-MP (mace-torch). Offline, pass ``model=/path/to/local.model``.

    mace-torch sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` process-wide on import (its model files
    are pickled modules); the import and the load run inside
    :func:`matloop.models.mace._isolated_import`, which restores the environment afterwards.
    """
    from matloop.models.mace import _isolated_import

    try:
        with _isolated_import():
            from mace.calculators import mace_mp
    except ImportError as exc:
        raise ConfigError(f"{MACE_HINT}; it is not installed ({exc})") from None
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("default_dtype", "float64")
    model = kwargs.get("model")
    with _isolated_import():
        from mace.calculators.foundations_models import mace_mp_names
    local = model not in mace_mp_names and not str(model).startswith("https:")
    if local:
        kwargs["model"] = model = str(Path(model).expanduser())
    if local and not Path(model).is_file():
        # mace-torch reports this as "Model download failed": say what is wrong instead
        raise ConfigError(f"mace_mp: model file {str(model)!r} not found")
    try:
        with _isolated_import():
            calc = mace_mp(**kwargs)
    except (OSError, RuntimeError, ValueError) as exc:  # urllib errors are OSErrors
        raise ConfigError(
            f"mace_mp could not load its weights ({type(exc).__name__}: {exc}); the download "
            "needs internet access. Offline, download the .model file elsewhere and pass "
            "model=/path/to/file.model"
        ) from None
    return _with_element_check(calc)


def _with_element_check(calc):
    """`calc` (a MACE calculator) refusing elements outside its model's table in one line.

    mace-torch fails on such an element with ``ValueError: 47 is not in list`` from deep inside
    its data code; the ``elements`` property also lets :func:`check_elements` (delta learning's
    base check) refuse the data before any work.
    """
    if getattr(calc, "z_table", None) is None:  # e.g. a SumCalculator with D3 dispersion
        return calc

    class MatloopMACE(type(calc)):
        @property
        def elements(self) -> list[str]:
            from ase.data import chemical_symbols

            return [chemical_symbols[int(z)] for z in self.z_table.zs]

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            from matloop.calculators.elements import check_elements

            check_elements(atoms if atoms is not None else self.atoms, self, "mace_mp")
            super().calculate(atoms, properties, system_changes)

    calc.__class__ = MatloopMACE
    return calc


register_calculator(
    "chgnet", chgnet_calculator, f"CHGNet pretrained universal potential ({CHGNET_HINT})"
)
register_calculator(
    "mace_mp", mace_mp_calculator, "MACE-MP universal potential (mace-torch; downloads weights)"
)


class NoStressError(MatloopError, PropertyNotImplementedError):
    """A stress asked of a calculator that cannot give one: a matloop one-line error that ASE code
    (and matloop's own optional-stress paths) still catch as ASE's PropertyNotImplementedError."""


class DeltaCalculator(SumCalculator):
    """A base calculator plus a matloop correction trained on (reference − base).

    Exposes the correction's ``model``, ``metadata``, ``family``, ``elements`` and ``cutoff`` so it
    can stand in for a :class:`~matloop.calculators.potential.MatloopCalculator`.
    """

    def __init__(self, base, correction, base_name: str) -> None:
        super().__init__([base, correction])
        self.base = base
        self.correction = correction
        self.base_name = base_name
        props = self.implemented_properties
        if "energy" in props and "free_energy" not in props:
            self.implemented_properties = [*self.implemented_properties, "free_energy"]

    def get_property(self, name, atoms=None, allow_calculation=True):
        # SumCalculator lists only the properties every part lists, so a base without stress
        # ended in ASE's bare "stress property not implemented"
        if name == "stress" and name not in self.implemented_properties:
            raise NoStressError(self._missing_stress_message())
        return super().get_property(name, atoms, allow_calculation)

    def _named_parts(self) -> tuple[tuple[Any, str], ...]:
        """(calculator, how messages name it) for the base and the correction."""
        return (self.base, f"base {self.base_name!r}"), (self.correction, "correction")

    def _missing_stress_message(self) -> str:
        """One line naming the part(s) whose ``implemented_properties`` lack stress."""
        lacking = [
            f"the {what} ({type(part).__name__})"
            for part, what in self._named_parts()
            if "stress" not in getattr(part, "implemented_properties", ())
        ]
        return (
            f"{self}: no stress, because {' and '.join(lacking)} gives none; use a base "
            "calculator that computes stress, or run without stress (NVT rather than NPT, "
            "no cell relaxation)"
        )

    def calculate(self, atoms, properties, system_changes):
        properties = [p for p in properties if p != "free_energy"] or ["energy"]
        if "stress" in properties:
            self._check_stress(atoms)
        super().calculate(atoms, properties, system_changes)
        if "energy" in self.results:
            self.results["energy"] = float(self.results["energy"])
            self.results["free_energy"] = self.results["energy"]

    def _check_stress(self, atoms) -> None:
        """Refuse a stress in one line: for a structure without one (the rule of
        :func:`~matloop.neighbors.stress_volume`), or naming the part that gives none.

        Each part's stress is computed here, so the sum that follows reads them from its cache.
        """
        if stress_volume(atoms) is None:
            raise NoStressError(no_stress_message(atoms))
        for part, what in self._named_parts():
            try:
                part.get_property("stress", atoms)
            except PropertyNotImplementedError as exc:
                raise NoStressError(
                    f"{self}: the {what} gives no stress for {atoms.get_chemical_formula()} "
                    f"(pbc={atoms.pbc.tolist()}): {exc or 'not implemented'}"
                ) from None

    @property
    def model(self):
        return self.correction.model

    @property
    def metadata(self) -> dict[str, Any]:
        return self.correction.metadata

    @property
    def path(self):
        return self.correction.path

    @property
    def family(self) -> str:
        return self.correction.family

    @property
    def elements(self) -> list[str]:
        return self.correction.elements

    @property
    def cutoff(self) -> float:
        return self.correction.cutoff

    def get_descriptors(self, atoms) -> np.ndarray:
        return self.correction.get_descriptors(atoms)

    def __str__(self) -> str:
        return f"DeltaCalculator({self.base_name} + matloop {self.family})"
