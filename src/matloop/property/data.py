"""Structure → property tables: one dataset type for extxyz / ASE db / JSON lines / CSV inputs.

Properties are read from each structure's ``info`` (extxyz, JSON lines) or key-value pairs (ASE
db), or from a CSV joined on ``id``. Each property can carry a unit string (``units``); well-known
names of the shared crystal sets get theirs from :data:`KNOWN_UNITS`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

from matloop.errors import DataError

#: units of property names that appear in common crystal sets (Matbench, MP, Castelli)
KNOWN_UNITS: dict[str, str] = {
    "formation_energy_per_atom": "eV/atom",
    "e_form": "eV/atom",
    "e_above_hull": "eV/atom",
    "formation_energy": "eV/cell",
    "heat_all": "eV/cell",
    "heat_ref": "eV/cell",
    "dir_gap": "eV",
    "ind_gap": "eV",
    "band_gap": "eV",
    "n": "1 (refractive index)",
    "last_phdos_peak": "cm^-1",
    "exfoliation_en": "meV/atom",
    "K_VRH": "GPa",
    "G_VRH": "GPa",
    "log10_K_VRH": "log10(GPa)",
    "log10_G_VRH": "log10(GPa)",
    "energy_per_atom": "eV/atom",
    "volume_per_atom": "Å^3/atom",
}
_STRUCTURE_SUFFIXES = (".extxyz", ".xyz", ".db", ".jsonl", ".json")


@dataclass
class PropertyDataset:
    """Structures with ids and per-structure properties (NaN/None where a value is missing).

    ``properties[name]`` is a list aligned with ``structures``; numeric columns become float
    arrays via :meth:`target`, others (booleans, strings) via :meth:`labels`.
    """

    structures: list[Atoms]
    ids: list[str]
    properties: dict[str, list] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.structures):
            raise DataError("ids and structures differ in length")
        for name, col in self.properties.items():
            if len(col) != len(self.structures):
                raise DataError(
                    f"property {name!r} has {len(col)} values for {len(self)} structures"
                )

    def __len__(self) -> int:
        return len(self.structures)

    def __iter__(self) -> Iterator[Atoms]:
        return iter(self.structures)

    def subset(self, index: Sequence[int] | np.ndarray) -> PropertyDataset:
        """The structures at `index` (integer positions or a boolean mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(int)
        return PropertyDataset(
            [self.structures[i] for i in idx],
            [self.ids[i] for i in idx],
            {k: [v[i] for i in idx] for k, v in self.properties.items()},
            dict(self.units),
            self.source,
        )

    def unit(self, name: str) -> str:
        return self.units.get(name) or KNOWN_UNITS.get(name, "")

    def _column(self, name: str) -> list:
        if name not in self.properties:
            known = ", ".join(sorted(self.properties)) or "none"
            raise DataError(f"{self.source or 'dataset'}: no property {name!r} (found: {known})")
        return self.properties[name]

    def has_value(self, name: str) -> np.ndarray:
        """Boolean mask of the structures that carry a (non-missing) value of `name`."""
        return np.array([not _missing(v) for v in self._column(name)], dtype=bool)

    def target(self, name: str) -> np.ndarray:
        """Float array of property `name` (NaN where missing); booleans become 0/1."""
        out = np.full(len(self), np.nan)
        for i, v in enumerate(self._column(name)):
            if _missing(v):
                continue
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise DataError(
                    f"{self.source or 'dataset'}: property {name!r} of {self.ids[i]} is not a "
                    f"number ({v!r}); use --task classification for labels"
                ) from None
        return out

    def labels(self, name: str) -> list[str | None]:
        """Property `name` as class labels (strings; None where missing)."""
        return [None if _missing(v) else _label(v) for v in self._column(name)]

    def formulas(self) -> list[str]:
        """Reduced formulas (pymatgen convention, e.g. ``SrTiO3``)."""
        from pymatgen.core import Composition

        with warnings.catch_warnings():  # noble gases: "No Pauling electronegativity" per formula
            warnings.simplefilter("ignore", UserWarning)
            return [Composition(a.get_chemical_formula()).reduced_formula for a in self.structures]


def fingerprint(atoms: Atoms) -> str:
    """A short hash of `atoms`' species, cell and positions rounded to 1e-3 Å: equal for the
    same structure read again from any file, whatever its id (not for a rotated copy)."""
    import hashlib

    h = hashlib.sha1(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    for arr in (atoms.cell.array, atoms.positions):
        h.update((np.round(np.asarray(arr, dtype=float), 3) + 0.0).tobytes())
    return h.hexdigest()[:16]


def _missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float | np.floating) and not np.isfinite(v):
        return True
    return isinstance(v, str) and v.strip().lower() in ("", "nan", "none", "null")


def _label(v) -> str:
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().capitalize()
    return str(v)


def _scalar(v):
    """A property value from a structure's info, or None for arrays and other non-scalars."""
    if isinstance(v, np.ndarray):
        return v.item() if v.size == 1 else None
    if isinstance(v, bool | int | float | str | np.generic):
        return v.item() if isinstance(v, np.generic) else v
    return None


def _from_infos(
    structures: list[Atoms], infos: list[dict], source: str, id_key: str
) -> PropertyDataset:
    ids = [str(info.get(id_key, i)) for i, info in enumerate(infos)]
    names: list[str] = []
    for info in infos:
        for k, v in info.items():
            if k != id_key and k not in names and _scalar(v) is not None:
                names.append(k)
    props = {k: [_scalar(info.get(k)) for info in infos] for k in names}
    _check_unique(ids, source)
    return PropertyDataset(structures, ids, props, source=source)


def _check_unique(ids: list[str], source: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise DataError(f"{source}: id {i!r} occurs more than once")
        seen.add(i)


def _open_text(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)  # noqa: SIM115


def _base_suffix(path: Path) -> str:
    name = path.name.lower()
    return Path(name[:-3]).suffix if name.endswith(".gz") else path.suffix.lower()


def _row_atoms(row: dict) -> Atoms:
    """The structure of one JSON object: ``cell``/``numbers``/``positions`` (Å) keys, or a
    pymatgen ``Structure.as_dict()`` (``lattice`` + ``sites``); its keys are removed from `row`
    and a pymatgen dict's ``properties`` become property keys."""
    if "lattice" in row and "sites" in row:
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        keys = ("@module", "@class", "charge", "lattice", "sites", "properties")
        struct = Structure.from_dict({k: row.pop(k) for k in keys if k in row})
        atoms = AseAtomsAdaptor.get_atoms(struct)
        for k, v in (struct.properties or {}).items():
            row.setdefault(k, v)
        return Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    return Atoms(
        numbers=row.pop("numbers"),
        positions=row.pop("positions"),
        cell=row.pop("cell"),
        pbc=row.pop("pbc", True),
    )


def _json_rows(path: Path) -> Iterator[tuple[int, dict | str]]:
    """(line number, object) of a JSON-lines file, or of a ``.json`` file holding one object or
    a list of them (a line that is not JSON is yielded as its text)."""
    with _open_text(path) as fh:
        text = fh.read()
    if _base_suffix(path) == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None
        if isinstance(doc, dict | list):
            yield from enumerate(doc if isinstance(doc, list) else [doc], 1)
            return
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError:
                yield line_no, line


def _read_jsonl(path: Path, id_key: str) -> PropertyDataset:
    structures, infos = [], []
    for n, row in _json_rows(path):
        try:
            if not isinstance(row, dict):
                raise TypeError("not a JSON object")
            structures.append(_row_atoms(row))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise DataError(
                f"{path}:{n}: not a structure (needs cell, numbers, positions, or a pymatgen "
                f"Structure dict): {type(exc).__name__}: {exc}"
            ) from None
        infos.append(row)
    return _from_infos(structures, infos, str(path), id_key)


def _read_ase(path: Path, id_key: str) -> PropertyDataset:
    from ase.io import read

    if _base_suffix(path) == ".db":
        from ase.db import connect

        structures, infos = [], []
        for row in connect(str(path)).select():
            structures.append(row.toatoms())
            info = dict(row.key_value_pairs)
            info.update({k: v for k, v in dict(row.data).items() if _scalar(v) is not None})
            info.setdefault(id_key, str(row.id))
            infos.append(info)
        return _from_infos(structures, infos, str(path), id_key)
    try:
        if path.suffix == ".gz" and _base_suffix(path) in (".xyz", ".extxyz"):
            # ASE seeks back to each frame; on a gzip stream every seek re-inflates from the start
            # (quadratic: > 10 min for the 6,665-frame Matbench file, 2 s from memory)
            with _open_text(path) as fh:
                frames = read(io.StringIO(fh.read()), index=":", format="extxyz")
        else:
            frames = read(str(path), index=":")
    except Exception as exc:  # noqa: BLE001 - ASE raises many types; reported as one line
        raise DataError(f"{path}: cannot read structures: {exc}") from None
    for a in frames:
        if a.calc is not None:  # extxyz puts energy/free_energy into a calculator
            a.info.update({k: v for k, v in a.calc.results.items() if _scalar(v) is not None})
            a.calc = None
    return _from_infos(list(frames), [a.info for a in frames], str(path), id_key)


def _read_csv_table(path: Path) -> tuple[list[str], list[dict]]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _csv_value(text: str):
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return float(t)
    except ValueError:
        return t


def _sibling_structures(path: Path) -> Path:
    for name in (
        "structures.extxyz.gz",
        "structures.extxyz",
        "structures.jsonl.gz",
        "structures.jsonl",
    ):
        if (path.parent / name).exists():
            return path.parent / name
    raise DataError(
        f"{path}: a CSV needs a 'structure' column (file paths) "
        "or a structures.extxyz/.jsonl beside it"
    )


def _read_csv(path: Path, id_key: str) -> PropertyDataset:
    from ase.io import read

    columns, rows = _read_csv_table(path)
    if not rows:
        raise DataError(f"{path}: empty table")
    if "structure" in columns:
        structures = []
        for r in rows:
            file = path.parent / r["structure"]
            try:
                structures.append(read(str(file)))
            except Exception as exc:  # noqa: BLE001 - any ASE read error becomes one line
                raise DataError(f"{file}: cannot read structure: {exc}") from None
        ids = [r.get(id_key) or str(i) for i, r in enumerate(rows)]
    else:
        if id_key not in columns:
            raise DataError(f"{path}: no {id_key!r} column to join structures on")
        base = read_dataset(_sibling_structures(path), id_key=id_key)
        by_id = {i: a for i, a in zip(base.ids, base.structures, strict=True)}
        missing = [r[id_key] for r in rows if r[id_key] not in by_id]
        if missing:
            raise DataError(f"{path}: {len(missing)} ids have no structure, e.g. {missing[0]!r}")
        ids = [r[id_key] for r in rows]
        structures = [by_id[i] for i in ids]
    _check_unique(ids, str(path))
    props = {c: [_csv_value(r[c]) for r in rows] for c in columns if c not in (id_key, "structure")}
    return PropertyDataset(structures, ids, props, source=str(path))


def read_dataset(
    path: str | os.PathLike, *, id_key: str = "id", units: dict[str, str] | None = None
) -> PropertyDataset:
    """Read a structure → property table.

    Formats (optionally gzip-compressed): extxyz/xyz (properties in ``info``), ASE ``.db``
    (key-value pairs), JSON lines with ``cell``/``numbers``/``positions`` (Å) plus property keys,
    and CSV with an ``id`` column joined to ``structures.extxyz|jsonl`` beside it (or a
    ``structure`` column of file paths).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"file not found: {p}")
    suffix = _base_suffix(p)
    if suffix in (".jsonl", ".json"):
        ds = _read_jsonl(p, id_key)
    elif suffix == ".csv":
        ds = _read_csv(p, id_key)
    else:
        ds = _read_ase(p, id_key)
    if not len(ds):
        raise DataError(f"{p}: no structures")
    ds.units.update(units or {})
    return ds


def from_structures(
    structures: Sequence[Atoms],
    properties: dict[str, Sequence] | None = None,
    ids: Sequence[str] | None = None,
    units: dict[str, str] | None = None,
) -> PropertyDataset:
    """Build a dataset in memory (e.g. from ASE-generated structures)."""
    ids = [str(i) for i in (ids if ids is not None else range(len(structures)))]
    props = {k: list(v) for k, v in (properties or {}).items()}
    return PropertyDataset(list(structures), ids, props, dict(units or {}), "memory")


def write_extxyz(dataset: PropertyDataset, path: str | os.PathLike) -> None:
    """Write `dataset` as extxyz with its properties (and ``id``) in each frame's info."""
    from ase.io import write

    from matloop.utils.files import atomic_path

    frames = []
    for i, a in enumerate(dataset.structures):
        b = a.copy()
        b.info = {"id": dataset.ids[i]}
        for k, col in dataset.properties.items():
            if not _missing(col[i]):
                b.info[k] = col[i]
        frames.append(b)
    with atomic_path(path) as tmp:
        write(str(tmp), frames, format="extxyz")


# --- duplicates ---------------------------------------------------------------------------------


def find_duplicates(
    dataset: PropertyDataset, *, progress: bool = False, **matcher_kwargs
) -> list[list[int]]:
    """Groups (≥ 2 members) of structures that are the same crystal up to symmetry.

    Uses pymatgen's ``StructureMatcher`` (defaults, ``primitive_cell=True``) inside groups that
    share a reduced formula, so the cost grows with the polymorph count, not the dataset size.
    ``progress=True`` shows a bar over the structures compared (stderr).
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor
    from tqdm.auto import tqdm

    by_formula: dict[str, list[int]] = defaultdict(list)
    for i, f in enumerate(dataset.formulas()):
        by_formula[f].append(i)
    matcher = StructureMatcher(**matcher_kwargs)
    groups: list[list[int]] = []
    shared = [m for m in by_formula.values() if len(m) >= 2]
    total = sum(len(m) for m in shared)
    bar = tqdm(total=total, desc="duplicates", unit="structure", disable=not progress, leave=False)
    for members in shared:
        structs = [AseAtomsAdaptor.get_structure(dataset.structures[i]) for i in members]
        for cluster in matcher.group_structures(structs):
            if len(cluster) > 1:
                pos = [next(k for k, s in enumerate(structs) if s is c) for c in cluster]
                groups.append(sorted(members[k] for k in pos))
        bar.update(len(members))
    bar.close()
    return sorted(groups)


def duplicate_report(
    dataset: PropertyDataset, groups: list[list[int]], target: str | None = None
) -> dict:
    """Counts of duplicate groups and, with `target`, the spread of its values inside groups."""
    out: dict = {
        "n_structures": len(dataset),
        "n_groups": len(groups),
        "n_in_groups": int(sum(len(g) for g in groups)),
        "groups": [[dataset.ids[i] for i in g] for g in groups],
    }
    if target is not None and groups:
        y = dataset.target(target)
        spreads = [float(np.nanmax(y[g]) - np.nanmin(y[g])) for g in groups]
        out["target"] = target
        out["max_spread_in_group"] = float(np.nanmax(spreads))
        out["median_spread_in_group"] = float(np.nanmedian(spreads))
    return out
