"""Read reference data from any ASE-readable file (extxyz, DFT outputs) or an ASE database.

A database source is a ``.db`` file, ``sqlite:///path.db`` or ``postgresql://user@host/db``,
optionally followed by ``#SELECTION`` in ASE's query language (``labels.db#tag=cu,natoms<20``).
:func:`iter_chunks` and :func:`iter_structures` read any source lazily, a chunk at a time, for
data larger than memory.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from matloop.data.dataset import Dataset, check_label_keys, validate_structure
from matloop.errors import DataError

_DB_SUFFIXES = {".db", ".json"}


def _from_info(
    atoms: Atoms, energy_key: str, forces_key: str, stress_key: str, where: str = "dataset"
) -> Atoms:
    """Move labels stored under custom keys (e.g. ``REF_energy``) onto a SinglePointCalculator.

    The energy key may also name a result ASE already parsed (``free_energy``). A stress of 9
    numbers is a flattened 3×3 tensor; a key containing ``virial`` (and ASE's ``virial`` when
    no stress is given and the cell has a volume) holds the virial W (eV), converted to the
    stress σ = −W/V (eV/Å³).
    `where` (file and frame) starts error messages.
    """
    results = dict(getattr(atoms.calc, "results", {}) or {}) if atoms.calc is not None else {}
    if energy_key in atoms.info:
        results["energy"] = _energy_value(atoms.info.pop(energy_key), energy_key, where)
    elif energy_key != "energy" and energy_key in results:
        results["energy"] = float(results[energy_key])
    if forces_key in atoms.arrays:
        results["forces"] = np.array(atoms.arrays.pop(forces_key), dtype=float)
    if stress_key in atoms.info:
        results["stress"] = _stress_from(atoms, stress_key, atoms.info.pop(stress_key), where)
    elif "stress" not in results and "virial" in atoms.info and atoms.cell.volume > 1e-8:
        results["stress"] = _stress_from(atoms, "virial", atoms.info.pop("virial"), where)
    if "free_energy" in results and "energy" not in results:
        results["energy"] = results["free_energy"]
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _energy_value(value: object, key: str, where: str) -> float:
    """The energy (eV) stored under info `key`: one number (a bare ``key`` in an extended XYZ
    header reads as True, which is no energy)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise DataError(f"{where}: info key {key!r} is {value!r}, not an energy in eV")
    return float(value)


def _stress_from(atoms: Atoms, key: str, value: object, where: str) -> np.ndarray:
    """The stress (eV/Å³, Voigt xx yy zz yz xz xy) stored under info `key`: a stress as 6, 9
    or 3×3 numbers, or, for a key naming a virial, the virial W (eV) as σ = −W/V."""
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError):
        return np.array(value, dtype=object)  # validation names the bad value
    if array.shape == (9,):  # flattened like ASE's own 'stress' and 'virial' (Fortran order)
        array = array.reshape(3, 3, order="F")
    if "virial" in key.lower():
        volume = abs(atoms.cell.volume)
        if array.shape not in {(3, 3), (6,)} or volume < 1e-8:
            why = "the cell has no volume" if volume < 1e-8 else f"it has shape {array.shape}"
            raise DataError(f"{where}: info key {key!r} holds a virial (eV) but {why}")
        array = -array / volume
    if array.shape == (3, 3):
        array = array[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return array


def split_source(source: str | os.PathLike) -> tuple[str, str | None]:
    """``"labels.db#tag=x"`` → ``("labels.db", "tag=x")``; other sources have no selection.

    A URL other than ``sqlite:///`` or ``postgresql://`` (``sqlite://rel.db``, ``http://...``)
    is refused (ConfigError), as by the label store."""
    from matloop.store._backend import check_url

    text = check_url(source, "database")
    if "#" in text and not Path(text).exists():
        location, selection = text.split("#", 1)
        from matloop.store import is_database

        if is_database(location):
            return location, selection.strip() or None
    return text, None


def _iter_db(location: str, selection: str | None, chunk_size: int = 1000) -> Iterator[list[Atoms]]:
    """Rows of an ASE database (file or server) in chunks of `chunk_size`, ordered by id."""
    import ase.db

    from matloop.store import connect, is_database, is_postgres, redact
    from matloop.store._backend import select_chunks, sqlite_path
    from matloop.store.labels import row_to_atoms

    if not is_postgres(location) and not Path(sqlite_path(location)).exists():
        raise DataError(f"database not found: {location}")
    db = connect(location, create=False) if is_database(location) else ase.db.connect(location)
    rows_iter = select_chunks(db, selection, chunk_size)
    while True:
        try:
            rows = next(rows_iter, None)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - bad selection or server error: one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read {redact(location)} ({selection!r}): {first}") from exc
        if rows is None:
            return
        chunk = [row_to_atoms(row) for row in rows]
        for atoms in chunk:
            if "config_type" in atoms.info:
                atoms.info["config_type"] = str(atoms.info["config_type"])
        yield chunk


def _read_db(path: str | Path, selection: str | None) -> list[Atoms]:
    return [atoms for chunk in _iter_db(str(path), selection) for atoms in chunk]


def read_structures(
    path: str | os.PathLike,
    index: str | int | slice = ":",
    format: str | None = None,
    what: str = "file",
) -> list[Atoms]:
    """Read structures (unvalidated) from any ASE-readable file or ASE database.

    `what` names the file in error messages (e.g. ``"trajectory file"``). A database URL or
    ``FILE.db#SELECTION`` reads the matching rows.
    """
    location, selection = split_source(path)
    if location.startswith(("postgresql://", "postgres://", "sqlite:///")) or selection:
        frames = _read_db(location, selection)
        if not frames:
            from matloop.store import redact

            raise DataError(f"{redact(location)}#{selection or ''}: no structures match")
        return frames
    given = Path(path)
    path, index = _at_index(given, index)
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory, expected a {what}")
    try:
        if path.suffix in _DB_SUFFIXES and format is None and _looks_like_db(path):
            if path != given:  # FILE.db@INDEX: rows are chosen by a query
                raise DataError(
                    f"{path} is a database: select rows with {path}#QUERY (e.g. "
                    f"'{path}#id<=10'), not with an index ({index!r})"
                )
            return _read_db(path, None)
        from ase.io import read

        frames = read(str(path), index=index, format=format)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds; report them in one line
        raise DataError(f"cannot read {path}: {_read_failure(exc)}") from exc
    if isinstance(frames, Atoms):
        frames = [frames]
    frames = list(frames)
    if not frames:
        raise DataError(f"{path}: no structures found in this {what}")
    return frames


def _at_index(path: Path, index: str | int | slice) -> tuple[Path, str | int | slice]:
    """ASE's ``FILE@SLICE`` (``OUTCAR@-1``, ``md.traj@::10``): the file and that index, when
    `path` itself does not exist but FILE does."""
    name, at, selected = str(path).rpartition("@")
    if path.exists() or not at or not Path(name).is_file():
        return path, index
    return Path(name), selected


def _read_failure(exc: BaseException) -> str:
    """One line for an exception of ``ase.io.read``: its first line, or for a file name whose
    format ASE cannot guess (it says only ``txt``) what to do about it."""
    from ase.io.formats import UnknownFileTypeError

    text = str(exc).strip()
    if isinstance(exc, UnknownFileTypeError) and " " not in text:
        return (
            f"ASE does not know the file type {text!r} from its name; use an extension ASE "
            "reads (.xyz, .extxyz, .traj, .db, vasprun.xml, OUTCAR, ...)"
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    if "expecting special 3x3 matrix" in first:  # ASE's extxyz: stress/virial need 9 numbers
        first += (
            " (extended XYZ 'stress' and 'virial' must hold 9 numbers; store a 6-number Voigt "
            "stress, xx yy zz yz xz xy in eV/Å³, under another key and pass --stress-key)"
        )
    return first


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

    paths = _expand_globs([paths] if isinstance(paths, str | os.PathLike) else paths)
    structures: list[Atoms] = []
    sources = []
    for path in paths:
        frames = read_structures(path, index=index, format=format)
        source = _redacted(path)
        for i, atoms in enumerate(frames):
            check_label_keys(atoms, energy_key, forces_key, source=source, index=i)
        if stress_key != "stress" and not any(stress_key in a.info for a in frames):
            raise DataError(  # stress is optional per frame, but a key no frame has is a typo
                f"{source}: no frame has the info key {stress_key!r} for the stress"
            )
        keys = (energy_key, forces_key, stress_key)
        frames = [_from_info(a, *keys, f"{source}, frame {i}") for i, a in enumerate(frames)]
        Dataset(frames, source=_redacted(path), validate=validate, require_forces=require_forces)
        structures.extend(frames)
        sources.append(_redacted(path))
    return Dataset(structures, source=" + ".join(sources), validate=False)


def iter_chunks(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    chunk_size: int = 1000,
    format: str | None = None,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    require_forces: bool = True,
    validate: bool = True,
) -> Iterator[list[Atoms]]:
    """Labelled structures from files or databases, `chunk_size` at a time, never all at once.

    Each chunk is validated like :func:`read_dataset`; memory holds one chunk (plus what the
    consumer keeps). Extended XYZ and other multi-frame files are read with ``ase.io.iread``.
    """
    if chunk_size < 1:
        raise DataError(f"chunk_size must be >= 1, got {chunk_size}")
    sources = _expand_globs([sources] if isinstance(sources, str | os.PathLike) else sources)
    keys = (energy_key, forces_key, stress_key)
    for source in sources:
        yield from _labelled_chunks(source, chunk_size, format, keys, require_forces, validate)


def _labelled_chunks(
    source: str | os.PathLike,
    chunk_size: int,
    format: str | None,
    keys: tuple[str, str, str],
    require_forces: bool,
    validate: bool,
) -> Iterator[list[Atoms]]:
    """The chunks of one source with labels moved from `keys` (energy, forces, stress) onto a
    calculator and checked; messages number frames from the start of the source. A custom
    stress key that no frame has is a typo, reported once the source is read."""
    where = _redacted(source)
    start = 0
    has_stress = False
    for chunk in _raw_chunks(source, chunk_size, format):
        for i, atoms in enumerate(chunk, start):
            check_label_keys(atoms, keys[0], keys[1], source=where, index=i)
            has_stress = has_stress or keys[2] in atoms.info
            _from_info(atoms, *keys, f"{where}, frame {i}")
            if validate:
                validate_structure(atoms, source=where, index=i, require_forces=require_forces)
        Dataset(chunk, source=where, validate=False)  # sets the default config_type
        start += len(chunk)
        yield chunk
    if keys[2] != "stress" and not has_stress:
        raise DataError(f"{where}: no frame has the info key {keys[2]!r} for the stress")


def iter_structures(
    sources: str | os.PathLike | Iterable[str | os.PathLike], **kwargs: object
) -> Iterator[Atoms]:
    """One labelled structure at a time, read lazily in chunks (see :func:`iter_chunks`)."""
    for chunk in iter_chunks(sources, **kwargs):  # type: ignore[arg-type]
        yield from chunk


def check_sources(sources: Iterable[str | os.PathLike]) -> list[str | os.PathLike]:
    """`sources` with globs expanded; each must be a database URL or an existing file
    (``FILE#QUERY`` and ``FILE@SLICE`` included), else one DataError line before any work."""
    expanded = _expand_globs(sources)
    for source in expanded:
        location, _ = split_source(source)
        if "://" in location:
            continue
        path, _ = _at_index(Path(location), ":")
        if not path.exists():
            raise DataError(f"file not found: {source}")
    return expanded


def _expand_globs(sources: Iterable[str | os.PathLike]) -> list[str | os.PathLike]:
    """Each source, or for a pattern such as ``runs/*/vasprun.xml`` that is not itself a file,
    the files it matches in sorted order; a pattern that matches nothing is an error."""
    out: list[str | os.PathLike] = []
    for source in sources:
        text = str(source)
        if not any(c in text for c in "*?[") or "#" in text or "://" in text or Path(text).exists():
            out.append(source)
            continue
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise DataError(f"no file matches {text!r}")
        out.extend(matches)
    return out


def _redacted(source: str | os.PathLike) -> str:
    """`source` for messages: a URL restored and its password masked."""
    from matloop.store import redact
    from matloop.store._backend import restore_url

    return redact(restore_url(str(source)))


def _raw_chunks(
    source: str | os.PathLike, chunk_size: int, format: str | None
) -> Iterator[list[Atoms]]:
    location, selection = split_source(source)
    path = Path(location)
    if location.startswith(("postgresql://", "postgres://", "sqlite:///")) or (
        path.suffix in _DB_SUFFIXES and format is None and _looks_like_db(path)
    ):  # an ASE database, also in JSON, keeps its key-value pairs such as config_type
        yield from _iter_db(location, selection, chunk_size)
        return
    path, index = _at_index(path, ":")  # FILE@SLICE, as ASE's own tools take it
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    from ase.io import iread

    chunk: list[Atoms] = []
    try:
        for atoms in iread(str(path), index=index, format=format):
            chunk.append(atoms)
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - ASE raises many kinds; report them in one line
        raise DataError(f"cannot read {path}: {_read_failure(exc)}") from exc
    if chunk:
        yield chunk
