"""Read reference data from any ASE-readable file (extxyz, DFT outputs) or an ASE database."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from matloop.data.dataset import Dataset, check_label_keys
from matloop.errors import DataError

_DB_SUFFIXES = {".db", ".json"}


def _from_info(atoms: Atoms, energy_key: str, forces_key: str, stress_key: str) -> Atoms:
    """Move labels stored under custom keys (e.g. ``REF_energy``) onto a SinglePointCalculator."""
    results = dict(getattr(atoms.calc, "results", {}) or {}) if atoms.calc is not None else {}
    if energy_key in atoms.info:
        results["energy"] = float(atoms.info.pop(energy_key))
    if forces_key in atoms.arrays:
        results["forces"] = np.array(atoms.arrays.pop(forces_key), dtype=float)
    if stress_key in atoms.info:
        results["stress"] = np.array(atoms.info.pop(stress_key), dtype=float)
    if "free_energy" in results and "energy" not in results:
        results["energy"] = results["free_energy"]
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _read_db(path: Path, selection: str | None) -> list[Atoms]:
    import ase.db

    structures = []
    with ase.db.connect(str(path)) as db:
        for row in db.select(selection):
            atoms = row.toatoms(add_additional_information=False)
            kvp = dict(row.key_value_pairs)
            if "config_type" in kvp:
                atoms.info["config_type"] = str(kvp["config_type"])
            atoms.info.update({k: v for k, v in kvp.items() if k != "config_type"})
            atoms.info["db_id"] = row.id
            structures.append(atoms)
    return structures


def read_structures(
    path: str | os.PathLike,
    index: str | int | slice = ":",
    format: str | None = None,
    what: str = "file",
) -> list[Atoms]:
    """Read structures (unvalidated) from any ASE-readable file or ASE database.

    `what` names the file in error messages (e.g. ``"trajectory file"``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, expected a {what}")
    try:
        if path.suffix in _DB_SUFFIXES and format is None and _looks_like_db(path):
            return _read_db(path, None)
        from ase.io import read

        frames = read(str(path), index=index, format=format)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds; report them in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path}: {first}") from exc
    if isinstance(frames, Atoms):
        frames = [frames]
    frames = list(frames)
    if not frames:
        raise DataError(f"{path}: no structures found in this {what}")
    return frames


def _looks_like_db(path: Path) -> bool:
    if path.suffix == ".db":
        return True
    try:
        with open(path) as fh:
            head = fh.read(200)
        return '"ids"' in head or '"nextid"' in head or head.lstrip().startswith('{"1"')
    except OSError:
        return False


def read_dataset(
    paths: str | os.PathLike | list,
    *,
    index: str | int = ":",
    format: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    require_forces: bool = True,
    validate: bool = True,
) -> Dataset:
    """Read and validate reference data.

    Accepts one path or a list of paths: extended XYZ and anything else ASE reads (VASP
    ``vasprun.xml``/``OUTCAR``, Quantum ESPRESSO output, ...) and ASE databases (``.db``).
    Labels under custom keys (``--energy-key REF_energy``) are supported. Raises
    :class:`~matloop.errors.DataError` naming the file and frame on bad data.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    structures: list[Atoms] = []
    sources = []
    for path in paths:
        frames = read_structures(path, index=index, format=format)
        for i, atoms in enumerate(frames):
            check_label_keys(atoms, energy_key, forces_key, source=str(path), index=i)
        frames = [_from_info(a, energy_key, forces_key, stress_key) for a in frames]
        Dataset(frames, source=str(path), validate=validate, require_forces=require_forces)
        structures.extend(frames)
        sources.append(str(path))
    return Dataset(structures, source=" + ".join(sources), validate=False)
