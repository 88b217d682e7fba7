"""A validated collection of reference structures with energies, forces and stresses.

Every structure is an :class:`ase.Atoms` whose calculator is a SinglePointCalculator holding
``energy`` (eV), ``forces`` (eV/Å) and optionally ``stress`` (eV/Å³, ASE sign, Voigt order
xx, yy, zz, yz, xz, xy). ``atoms.info["config_type"]`` names the kind of configuration.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.geometry import find_mic

from matloop.errors import ConfigError, DataError
from matloop.neighbors import geometry_problem

MIN_DISTANCE_A = 0.5
MAX_EXTENT_A = 1.0e4  # larger structures or cells are input errors (Å)
MAX_STRESS_EV_A3 = 10.0  # ≈ 1.6 TPa; larger stresses are unit errors (kbar or GPa, eV/Å³ meant)
# A warning, not a refusal: the median over a set of its largest stress components. DFT sets of
# solids near ambient pressure have medians of ~0.001–0.05 eV/Å³ (0.2–8 GPa); 0.5 eV/Å³ (80 GPa)
# is exceeded only by genuinely high-pressure data, or by GPa (kbar) numbers read as eV/Å³,
# which come out 160× (1600×) too large: a typical 3 GPa stress reads as 3 eV/Å³.
MEDIAN_STRESS_WARN_EV_A3 = 0.5
DEFAULT_CONFIG_TYPE = "default"


def _results(atoms: Atoms) -> dict:
    calc = atoms.calc
    return dict(getattr(calc, "results", {}) or {}) if calc is not None else {}


def energy_of(atoms: Atoms) -> float:
    """Reference total energy (eV) of a dataset structure."""
    return float(_results(atoms)["energy"])


def forces_of(atoms: Atoms) -> np.ndarray | None:
    """Reference forces (eV/Å, shape (n, 3)) or None."""
    f = _results(atoms).get("forces")
    return None if f is None else np.asarray(f, dtype=float)


def stress_of(atoms: Atoms) -> np.ndarray | None:
    """Reference stress (eV/Å³, Voigt 6-vector in ASE order) or None."""
    s = _results(atoms).get("stress")
    if s is None:
        return None
    s = np.asarray(s, dtype=float)
    if s.shape == (3, 3):
        s = s[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return s


def config_type_of(atoms: Atoms) -> str:
    """The structure's ``config_type`` (a string; ``default`` when absent)."""
    return str(atoms.info.get("config_type", DEFAULT_CONFIG_TYPE))


def _label(source: str | None, index: int) -> str:
    return f"{source or 'dataset'}, frame {index}"


def check_finite_labels(results: dict, where: str, energy: bool = True) -> None:
    """One DataError if the energy (with `energy`), forces or stress in `results` hold NaN or
    inf (a NaN label makes every loss NaN, so a fit would keep its untrained weights)."""
    value = results.get("energy") if energy else None
    if value is not None and not np.isfinite(value):
        raise DataError(f"{where}: energy is NaN or inf")
    for name, verb in (("forces", "contain"), ("stress", "contains")):
        value = results.get(name)
        if value is not None and not np.all(np.isfinite(np.asarray(value, dtype=float))):
            raise DataError(f"{where}: {name} {verb} NaN or inf")


def validate_structure(
    atoms: Atoms,
    *,
    source: str | None = None,
    index: int = 0,
    require_energy: bool = True,
    require_forces: bool = True,
) -> None:
    """Raise :class:`DataError` naming file and frame if `atoms` is not usable reference data."""
    where = _label(source, index)
    n = len(atoms)
    problem = geometry_problem(atoms)
    if problem is not None:
        raise DataError(f"{where}: {problem}")
    _check_extent(atoms, where)
    results = _results(atoms)
    if require_energy:
        if "energy" not in results or results["energy"] is None:
            hint = _candidates(atoms, "energy")
            raise DataError(f"{where}: missing energy" + (f" ({hint[:-2]})" if hint else ""))
    forces = results.get("forces")
    if forces is None:
        if require_forces:
            raise DataError(
                f"{where}: missing forces ({_candidates(atoms, 'forces')}to train on "
                "energy-only data, set training.loss.forces: 0 in --config; from Python, "
                "read_dataset(..., require_forces=False))"
            )
    else:
        forces = np.asarray(forces)
        if forces.shape != (n, 3):
            raise DataError(f"{where}: forces have shape {forces.shape}, expected ({n}, 3)")
    stress = results.get("stress")
    if stress is not None:
        stress = np.asarray(stress)
        if stress.shape not in {(6,), (3, 3)}:
            raise DataError(f"{where}: stress has shape {stress.shape}, expected (6,) or (3, 3)")
    check_finite_labels(results, where, energy=require_energy)
    if stress is not None:
        _check_stress_units(stress, where)
    if n > 1:
        d_min = minimum_distance(atoms)
        if d_min < MIN_DISTANCE_A:
            raise DataError(
                f"{where}: atoms closer than {MIN_DISTANCE_A} Å (minimum distance {d_min:.3f} Å)"
            )


def _candidates(atoms: Atoms, what: str) -> str:
    """For a frame without `what`: ``"KEY1, KEY2 may hold it: pick one with --WHAT-key; "``
    naming its info numbers (energy) or (n, 3) arrays (forces); empty when it has none."""
    if what == "energy":

        def is_number(v: object) -> bool:
            return isinstance(v, float | int | np.floating | np.integer) and not isinstance(v, bool)

        keys = [k for k, v in atoms.info.items() if is_number(v)]
    else:
        shape = (len(atoms), 3)
        skip = {"positions", "momenta"}
        keys = [k for k, v in atoms.arrays.items() if k not in skip and v.shape == shape]
    if not keys:
        return ""
    return f"{', '.join(sorted(map(str, keys)))} may hold it: pick one with --{what}-key; "


def check_label_keys(
    atoms: Atoms, energy_key: str, forces_key: str, *, source: str | None = None, index: int = 0
) -> None:
    """Raise :class:`DataError` if a custom label key (``--energy-key``/``--forces-key``) is
    absent from a frame: a misspelled key must never fall back to the default labels. The energy
    key may be an info key or a result ASE parsed (``free_energy``)."""
    where = _label(source, index)
    parsed = _results(atoms)  # e.g. free_energy, which ASE reads from DFT outputs
    if energy_key != "energy" and energy_key not in atoms.info and energy_key not in parsed:
        keys = ", ".join(sorted(map(str, atoms.info))) or "none"
        raise DataError(f"{where}: no info key {energy_key!r} for the energy (info keys: {keys})")
    if forces_key != "forces" and forces_key not in atoms.arrays:
        keys = ", ".join(sorted(atoms.arrays))
        raise DataError(f"{where}: no array {forces_key!r} for the forces (arrays: {keys})")


def _check_stress_units(stress: np.ndarray, where: str) -> None:
    """Stresses beyond :data:`MAX_STRESS_EV_A3` (eV/Å³) are kbar or GPa read as eV/Å³."""
    from ase import units

    largest = float(np.abs(stress).max())
    if largest > MAX_STRESS_EV_A3:
        raise DataError(
            f"{where}: stress component {largest:.4g} eV/Å³ ({largest / units.GPa:.4g} GPa) is "
            f"beyond {MAX_STRESS_EV_A3:g} eV/Å³; stresses must be in eV/Å³ (1 GPa = 0.0062415 "
            "eV/Å³, 1 kbar = 0.00062415 eV/Å³)"
        )


def _check_extent(atoms: Atoms, where: str) -> None:
    """Sizes no simulation uses (a typo such as 1e30) would overflow the neighbour search."""
    span = np.ptp(atoms.get_positions(), axis=0).max() if len(atoms) else 0.0
    longest = np.linalg.norm(atoms.cell.array, axis=1)[atoms.pbc].max(initial=0.0)
    if max(span, longest) > MAX_EXTENT_A:
        raise DataError(
            f"{where}: structure or cell spans {max(span, longest):.3g} Å (more than "
            f"{MAX_EXTENT_A:g} Å; a unit error?)"
        )
    if atoms.pbc.all():
        from ase.geometry import minkowski_reduce

        reduced, _ = minkowski_reduce(atoms.cell.array)
        shortest = float(np.linalg.norm(reduced, axis=1).min())
        if shortest < MIN_DISTANCE_A:
            raise DataError(
                f"{where}: periodic images are {shortest:.3g} Å apart (less than "
                f"{MIN_DISTANCE_A} Å): the cell is too small or degenerate"
            )


def minimum_distance(atoms: Atoms, cutoff: float = MIN_DISTANCE_A) -> float:
    """Smallest interatomic distance (Å) if below `cutoff`, otherwise `cutoff` (periodic-aware)."""
    from matloop.neighbors import neighbor_list

    if atoms.pbc.all():
        from ase.geometry import minkowski_reduce

        # the same lattice in its most compact cell: distances are unchanged, and the
        # neighbour search stays fast for strongly sheared cells
        reduced, _ = minkowski_reduce(atoms.cell.array)
        atoms = atoms.copy()
        atoms.set_cell(reduced, scale_atoms=False)
        atoms.wrap()
    nl = neighbor_list(atoms, cutoff, with_vectors=True)
    if len(nl.distances) == 0:
        return float(cutoff)
    return float(nl.distances.min())


def check_cutoff(structures: Iterable[Atoms], cutoff: float, what: str = "model") -> None:
    """Refuse (ConfigError) a `cutoff` (Å) within which no atom of `structures` has a neighbour.

    The model would then be a constant per element: it trains "successfully" and predicts zero
    forces. Isolated single atoms (no neighbour at any cutoff) are not counted. Stops at the
    first structure with a neighbour, so a sensible cutoff costs one neighbour search.
    """
    search = 8.0  # Å: how far the error message looks for the nearest-neighbour distance
    seen = []
    for atoms in structures:
        if len(atoms) < 2 and not atoms.pbc.any():
            continue
        if minimum_distance(atoms, cutoff) < cutoff:
            return
        seen.append(atoms)
    if not seen:
        return
    nearest = min(minimum_distance(atoms, search) for atoms in seen[:20])
    found = f"{nearest:.3g} Å" if nearest < search else f"more than {search:g} Å"
    raise ConfigError(
        f"{what} cutoff {cutoff:g} Å is shorter than every interatomic distance of the training "
        f"data (nearest neighbours {found}), so the model sees no neighbours; cutoffs are in Å, "
        f"not nm (e.g. {10 * cutoff:g} Å for {cutoff:g} nm)"
    )


#: Å: neighbouring structures whose atoms all moved less than this are steps of one trajectory
PAIR_MAX_STEP_A = 0.3
#: pairs of such structures below which forces are not checked against energies
MIN_FORCE_PAIRS = 5


def _trajectory_work(structures: Sequence[Atoms]) -> tuple[np.ndarray, np.ndarray]:
    """(work of the forces W (eV), energy change ΔE (eV)) over pairs of neighbouring structures
    that are steps of one trajectory (same species in the same order, same cell and pbc,
    every atom moved by less than PAIR_MAX_STEP_A, minimum image)."""
    work, change = [], []
    for first, second in zip(structures, structures[1:], strict=False):
        if len(first) != len(second) or not np.array_equal(first.numbers, second.numbers):
            continue
        if not (np.array_equal(first.pbc, second.pbc) and np.allclose(first.cell, second.cell)):
            continue
        f1, f2 = forces_of(first), forces_of(second)
        if f1 is None or f2 is None:
            continue
        step, length = find_mic(second.positions - first.positions, first.cell, first.pbc)
        if length.max(initial=0.0) >= PAIR_MAX_STEP_A:
            continue
        work.append(-0.5 * float(np.sum((f1 + f2) * step)))
        change.append(energy_of(second) - energy_of(first))
    return np.asarray(work), np.asarray(change)


class Dataset(Sequence[Atoms]):
    """An ordered, validated list of labelled structures.

    Parameters
    ----------
    structures:
        ASE Atoms with energy (and usually forces) attached via a calculator.
    source:
        Where the data came from (used in error messages).
    validate:
        Check every structure (see :func:`validate_structure`).
    require_forces:
        Treat structures without forces as an error.
    """

    def __init__(
        self,
        structures: Iterable[Atoms],
        *,
        source: str | None = None,
        validate: bool = True,
        require_forces: bool = True,
    ) -> None:
        self._structures: list[Atoms] = list(structures)
        self.source = source
        if validate:
            for index, atoms in enumerate(self._structures):
                validate_structure(atoms, source=source, index=index, require_forces=require_forces)
        for atoms in self._structures:
            atoms.info.setdefault("config_type", DEFAULT_CONFIG_TYPE)

    def __len__(self) -> int:
        return len(self._structures)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return Dataset(self._structures[index], source=self.source, validate=False)
        return self._structures[index]

    def __iter__(self) -> Iterator[Atoms]:
        return iter(self._structures)

    def __repr__(self) -> str:
        return (
            f"Dataset({len(self)} structures, {self.n_atoms} atoms, elements={self.elements}, "
            f"source={self.source!r})"
        )

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A new dataset with the structures at `indices` (no copy of the Atoms)."""
        return Dataset([self._structures[i] for i in indices], source=self.source, validate=False)

    def __add__(self, other: Dataset) -> Dataset:
        return Dataset(list(self) + list(other), source=self.source, validate=False)

    @property
    def structures(self) -> list[Atoms]:
        return list(self._structures)

    @property
    def n_atoms(self) -> int:
        return int(sum(len(a) for a in self._structures))

    @property
    def elements(self) -> list[str]:
        """Chemical symbols present, sorted by atomic number."""
        from ase.data import atomic_numbers

        symbols = {s for a in self._structures for s in a.get_chemical_symbols()}
        return sorted(symbols, key=lambda s: atomic_numbers[s])

    @property
    def config_types(self) -> list[str]:
        return [config_type_of(a) for a in self._structures]

    @property
    def has_forces(self) -> bool:
        return bool(self._structures) and all(forces_of(a) is not None for a in self._structures)

    @property
    def has_stress(self) -> bool:
        return any(stress_of(a) is not None for a in self._structures)

    def energies(self) -> np.ndarray:
        """Total reference energies (eV)."""
        return np.array([energy_of(a) for a in self._structures])

    def volume_coverage_warning(self, rtol: float = 0.005) -> str | None:
        """A sentence when every periodic composition comes at one volume per atom (spread below
        `rtol`), e.g. fixed-cell MD only: the model then sees no compression or expansion, so its
        stress and equation of state are extrapolations. None otherwise."""
        groups: dict[str, list[float]] = {}
        for atoms in self._structures:
            if not atoms.pbc.all():
                return None
            formula = atoms.get_chemical_formula(mode="hill", empirical=True)
            groups.setdefault(formula, []).append(atoms.get_volume() / len(atoms))
        spans = [max(v) / min(v) - 1.0 for v in groups.values() if len(v) > 1]
        if not spans or max(spans) >= rtol:
            return None
        volumes = ", ".join(f"{f} {np.mean(v):.3g} Å³/atom" for f, v in groups.items())
        return (
            f"every training cell has one volume per atom per composition ({volumes}): the model "
            "sees no compression or expansion, so its stress and equation of state are "
            "extrapolations; add strained or NPT cells if you need them"
        )

    def stress_units_warning(self) -> str | None:
        """A sentence when the median over stress-labelled structures of their largest |stress|
        component exceeds :data:`MEDIAN_STRESS_WARN_EV_A3` (eV/Å³): GPa or kbar numbers read as
        eV/Å³ below the per-structure refusal (:data:`MAX_STRESS_EV_A3`). None otherwise."""
        from ase import units

        largest = [
            float(np.abs(s).max()) for a in self._structures if (s := stress_of(a)) is not None
        ]
        if not largest:
            return None
        median = float(np.median(largest))
        if median <= MEDIAN_STRESS_WARN_EV_A3:
            return None
        return (
            f"the median stress of the {len(largest)} stress-labelled training structures is "
            f"{median:.3g} eV/Å³ ({median / units.GPa:.3g} GPa), above "
            f"{MEDIAN_STRESS_WARN_EV_A3:g} eV/Å³: "
            "they look like GPa or kbar; matloop reads stresses in eV/Å³ with ASE's sign "
            "(1 GPa = 0.0062415 eV/Å³), so convert them unless the data are truly at such pressures"
        )

    def force_sign_warning(self) -> str | None:
        """A sentence when the forces contradict the energies along the data's own trajectory.

        Neighbouring structures of one MD run (same atoms and cell, every atom moved by less
        than :data:`PAIR_MAX_STEP_A`) give a check that needs no model: the work of the forces,
        W = −½ Σ (F₁ + F₂)·Δr, equals the energy change E₂ − E₁ to second order in the step.
        With at least :data:`MIN_FORCE_PAIRS` such pairs, a slope of E₂ − E₁ against W near −1
        means forces of the wrong sign (F = +∇E), one far from 1 forces in other units (Hartree
        per bohr read as eV/Å: slope 51). None when the data hold too few such pairs or agree.
        """
        work, change = _trajectory_work(self._structures)
        if len(work) < MIN_FORCE_PAIRS or not np.any(work):
            return None
        if np.corrcoef(work, change)[0, 1] ** 2 < 0.64:  # |r| < 0.8: too noisy to say
            return None
        slope = float(np.dot(work, change) / np.dot(work, work))
        if slope < 0:
            return (
                f"along {len(work)} pairs of neighbouring MD frames the energy rises where the "
                f"forces do work (E₂ − E₁ ≈ {slope:.2f} × their work): the forces look like "
                "+∇E; matloop reads forces as −∂E/∂R (eV/Å), so flip their sign"
            )
        if not 0.5 < slope < 2.0:
            return (
                f"along {len(work)} pairs of neighbouring MD frames the energy change is "
                f"{slope:.3g} × the work of the forces (1 expected): forces and energies look "
                "like different units (matloop reads eV and eV/Å; Hartree/bohr gives ~51)"
            )
        return None

    def summary(self) -> dict:
        return {
            "n_structures": len(self),
            "n_atoms": self.n_atoms,
            "elements": self.elements,
            "config_types": dict(Counter(self.config_types)),
            "has_forces": self.has_forces,
            "has_stress": self.has_stress,
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write the dataset as extended XYZ (or any format ASE writes), atomically."""
        from ase.io import write

        from matloop.utils.files import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            fmt = "extxyz" if path.suffix in {".xyz", ".extxyz"} else None
            write(tmp, self._structures, format=fmt)
        return path


def make_labelled(
    atoms: Atoms,
    energy: float,
    forces: np.ndarray | None = None,
    stress: np.ndarray | None = None,
    config_type: str | None = None,
) -> Atoms:
    """Return a copy of `atoms` carrying the given reference results (eV, eV/Å, eV/Å³)."""
    labelled = atoms.copy()
    results = {"energy": float(energy)}
    if forces is not None:
        results["forces"] = np.asarray(forces, dtype=float)
    if stress is not None:
        results["stress"] = np.asarray(stress, dtype=float)
    labelled.calc = SinglePointCalculator(labelled, **results)
    if config_type is not None:
        labelled.info["config_type"] = config_type
    return labelled


def label_with(
    atoms: Atoms, calculator, *, stress: bool | None = None, config_type: str | None = None
) -> Atoms:
    """A labelled copy of `atoms`: energy (eV), forces (eV/Å) and stress (eV/Å³) from
    `calculator`; by default the stress for periodic cells when the calculator computes one."""
    work = atoms.copy()
    work.calc = calculator
    energy = work.get_potential_energy()
    forces = work.get_forces()
    can = "stress" in getattr(calculator, "implemented_properties", ("stress",))
    want_stress = bool(work.pbc.all()) and can if stress is None else stress
    s = work.get_stress() if want_stress else None
    return make_labelled(atoms, energy, forces, s, config_type or atoms.info.get("config_type"))
