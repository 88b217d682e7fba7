"""A shared store of labelled structures (ASE database on SQLite or PostgreSQL).

Every labelled structure is stored once: its content hash (species, positions, cell and pbc
rounded to :data:`DECIMALS` decimals in Å, plus the reference code and its settings) is the row's
``unique_id``, a column the database keeps UNIQUE. Writers that push the same label at the same
time therefore never duplicate it, and a writer whose transaction collides simply retries: no
label is lost.

Provenance key-value pairs on every row: ``ref_code``, ``ref_version``, ``settings_hash``,
``run``, ``tag``, ``pushed_by`` (user), ``host``, ``labelled_at`` (Unix time, s),
``matloop_version``; the settings themselves are in the row's data. Selections use ASE's query
language, e.g. ``"tag=cu-al,natoms<20"``.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import random
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from matloop.errors import DataError
from matloop.store._backend import connect, is_conflict, redact, select_chunks, transaction

DECIMALS = 8
"""Positions and cell are rounded to 10**-DECIMALS Å before hashing (the precision of extended
XYZ files, so a label read back from one hashes the same)."""

_BATCH = 200
_MAX_RETRIES = 50


def settings_hash(code: str, settings: dict[str, Any] | None) -> str:
    """Hash of the reference code name and its settings (canonical JSON)."""
    text = json.dumps({"code": code, "settings": settings or {}}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def content_hash(atoms: Atoms, code: str, settings: dict[str, Any] | None = None) -> str:
    """Identity of a label: structure (rounded) + reference code + settings (hex, 32 chars)."""
    scale = 10.0**DECIMALS
    h = hashlib.sha256()
    h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.rint(atoms.positions * scale).astype(np.int64).tobytes())
    h.update(np.rint(np.asarray(atoms.cell) * scale).astype(np.int64).tobytes())
    h.update(np.asarray(atoms.pbc, dtype=np.int8).tobytes())
    h.update(settings_hash(code, settings).encode())
    return h.hexdigest()[:32]


@dataclass
class PushResult:
    """What a push did: rows written, rows already in the store, transaction retries."""

    written: int
    existing: int
    retries: int

    def as_dict(self) -> dict[str, int]:
        return {"written": self.written, "existing": self.existing, "retries": self.retries}


class LabelStore:
    """Labelled structures shared by a team (or by concurrent active-learning runs).

    `url` is an SQLite file (``labels.db``, ``sqlite:///abs/labels.db``) or a PostgreSQL URL
    (``postgresql://user@host:5432/db``; password from the URL or ``PGPASSWORD``/``~/.pgpass``).
    """

    def __init__(self, url: str | os.PathLike, *, create: bool = True) -> None:
        """Open the store at `url`; with ``create=False`` a missing SQLite file is an error."""
        self.url = str(url)
        self.db = connect(self.url, create=create)

    def __repr__(self) -> str:
        return f"LabelStore({redact(self.url)!r})"

    def count(self, selection: str | None = None) -> int:
        return int(self.db.count(selection))

    def push(
        self,
        structures: Iterable[Atoms],
        *,
        code: str,
        settings: dict[str, Any] | None = None,
        version: str | None = None,
        run: str | None = None,
        tag: str | None = None,
    ) -> PushResult:
        """Store labelled structures (energy and forces required); skip those already stored."""
        if not code:
            raise DataError("name the reference code that made the labels (code='emt', ...)")
        prov = _provenance(code, settings, version, run, tag)
        total = PushResult(0, 0, 0)
        batch: list[tuple[str, Atoms]] = []
        for i, atoms in enumerate(structures):
            _check_labelled(atoms, i)
            if "config_type" in atoms.info:
                _kvp_text(str(atoms.info["config_type"]), f"structure {i}: config_type")
            batch.append((content_hash(atoms, code, settings), atoms))
            if len(batch) >= _BATCH:
                _add(total, self._push_batch(batch, prov, settings))
                batch = []
        if batch:
            _add(total, self._push_batch(batch, prov, settings))
        return total

    def _push_batch(
        self, batch: list[tuple[str, Atoms]], prov: dict[str, Any], settings: dict | None
    ) -> PushResult:
        unique: dict[str, Atoms] = {}  # file order; a deadlock between writers is retried
        for h, atoms in batch:
            unique.setdefault(h, atoms)
        for attempt in range(_MAX_RETRIES):
            try:
                with transaction(self.db) as cur:
                    present = _present(cur, list(unique))
                    for h, atoms in unique.items():
                        if h not in present:
                            self._write(atoms, h, prov, settings)
                n_new = len(unique) - len(present)
                return PushResult(n_new, len(batch) - n_new, attempt)
            except Exception as exc:  # noqa: BLE001 - only conflicts are retried
                if not is_conflict(exc):
                    raise
                time.sleep(random.uniform(0.0, 0.02 * (attempt + 1)))
        raise DataError(f"{redact(self.url)}: gave up after {_MAX_RETRIES} conflicting retries")

    def _write(self, atoms: Atoms, h: str, prov: dict[str, Any], settings: dict | None) -> None:
        from ase.db.core import now
        from ase.db.row import AtomsRow

        # the row is built from arrays: ASE's atoms2dict re-checks the calculator state per
        # property, which costs more than the database write
        results = atoms.calc.results
        dct: dict[str, Any] = {
            "numbers": np.asarray(atoms.numbers),
            "positions": np.asarray(atoms.positions, dtype=float),
            "cell": np.asarray(atoms.cell, dtype=float),
            "pbc": np.asarray(atoms.pbc, dtype=bool),
            "unique_id": h,
            "ctime": now(),
            "user": prov["pushed_by"],
            "calculator": str(prov["ref_code"]).lower(),
            "calculator_parameters": {},
        }
        for key in _RESULT_KEYS:
            if key in results:
                dct[key] = (
                    np.asarray(results[key], dtype=float)
                    if key != "energy"
                    else float(results[key])
                )
        kvp = dict(prov)
        if "config_type" in atoms.info:
            kvp["config_type"] = _kvp_text(str(atoms.info["config_type"]), "config_type")
        self.db.write(AtomsRow(dct), key_value_pairs=kvp, data={"settings": settings or {}})

    def iter_rows(self, selection: str | None = None, chunk_size: int = 1000) -> Iterator[Any]:
        """ASE rows matching `selection`, read `chunk_size` at a time (ordered by id)."""
        for rows in select_chunks(self.db, selection, chunk_size):
            yield from rows

    def pull(self, selection: str | None = None, chunk_size: int = 1000) -> Iterator[Atoms]:
        """Labelled structures (SinglePointCalculator) with provenance in ``atoms.info``."""
        for row in self.iter_rows(selection, chunk_size):
            yield row_to_atoms(row)

    def hashes(self) -> list[str]:
        """Content hashes of all rows (one query)."""
        with transaction(self.db) as cur:
            cur.execute("SELECT unique_id FROM systems")
            return [r[0] for r in cur.fetchall()]


_RESULT_KEYS = ("energy", "free_energy", "forces", "stress", "magmom", "magmoms", "dipole")
"""Calculator results stored with a label (ASE units: eV, eV/Å, eV/Å³, e·Å)."""


def row_to_atoms(row: Any) -> Atoms:
    """An ASE row → Atoms with its labels and key-value pairs in ``info``."""
    atoms = row.toatoms(add_additional_information=False)
    atoms.info.update(dict(row.key_value_pairs))
    atoms.info["db_id"] = row.id
    atoms.info["content_hash"] = row.unique_id
    return atoms


def _present(cur: Any, hashes: list[str]) -> set[str]:
    marks = ",".join("?" * len(hashes))
    cur.execute(f"SELECT unique_id FROM systems WHERE unique_id IN ({marks})", hashes)
    return {r[0] for r in cur.fetchall()}


def _provenance(
    code: str, settings: dict | None, version: str | None, run: str | None, tag: str | None
) -> dict[str, Any]:
    from matloop._version import __version__

    prov: dict[str, Any] = {
        "ref_code": _kvp_text(str(code), "the reference code"),
        "ref_version": _kvp_text(str(version or "unknown"), "the code version"),
        "settings_hash": settings_key(code, settings),
        "run": _kvp_text(str(run or "manual"), "the run name"),
        "pushed_by": _kvp_text(getpass.getuser(), "", user_given=False),
        "host": _kvp_text(socket.gethostname(), "", user_given=False),
        "labelled_at": time.time(),
        "matloop_version": _kvp_text(__version__, "", user_given=False),
    }
    if tag:
        prov["tag"] = _kvp_text(str(tag), "the tag")
    return prov


def settings_key(code: str, settings: dict[str, Any] | None) -> str:
    """The ``settings_hash`` column of a row: :func:`settings_hash`, with an ``h`` in front
    when its 16 hex digits read as a number (about 1 settings in 800), which ASE stores as text
    only with that prefix."""
    from ase.db.core import convert_str_to_int_float_bool_or_str

    h = settings_hash(code, settings)
    return h if isinstance(convert_str_to_int_float_bool_or_str(h), str) else "h" + h


def _kvp_text(text: str, what: str, *, user_given: bool = True) -> str | int | float | bool:
    """A text key-value pair as ASE can store it.

    ASE refuses a string that reads as a number or a boolean ('6.4', '2024', 'True'); such a
    text is stored as that value (as ``ase db`` does with ``key=value``), so ``tag=2024`` or
    ``ref_version=6.4`` selects it. A text that would not survive the conversion ('6.10',
    '1e3') is refused with one line rather than stored changed, when the user gave it; a value
    matloop supplies itself (user and host name, its version) is stored as text with a '_' in
    front, since nothing the user could write would change it.
    """
    import math

    from ase.db.core import convert_str_to_int_float_bool_or_str

    value = convert_str_to_int_float_bool_or_str(text)
    if isinstance(value, str):
        return text
    if str(value) == text and (not isinstance(value, float) or math.isfinite(value)):
        return value
    if not user_given:
        return "_" + text
    raise DataError(
        f"{what} {text!r} would be stored as the number {value!r} in the database; "
        "write it so that it does not read as a number (e.g. 'v' + it)"
    )


def _check_labelled(atoms: Atoms, index: int) -> None:
    results = getattr(atoms.calc, "results", None) or {}
    if "energy" not in results or "forces" not in results:
        raise DataError(f"structure {index}: no energy and forces to store (unlabelled)")
    if not np.isfinite(results["energy"]) or not np.all(np.isfinite(results["forces"])):
        raise DataError(f"structure {index}: energy or forces are not finite")


def _add(total: PushResult, part: PushResult) -> None:
    total.written += part.written
    total.existing += part.existing
    total.retries += part.retries
