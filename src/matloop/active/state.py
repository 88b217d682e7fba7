"""All state of an active-learning run in one ASE database (SQLite default, PostgreSQL allowed).

Rows carry ``kind`` (a key-value pair) and a unique ``key``:

- ``meta``: the configuration (data) and creation time;
- ``candidate``: a structure chosen for labelling (``status`` pending/done, ``iteration``,
  ``origin``, uncertainty ``unc`` in eV/Å);
- ``selection``: marks that an iteration's candidates were all written (same transaction);
- ``label``: a labelled structure (energy, forces, stress) with provenance (labeller, settings,
  iteration, ``labelled_at`` Unix time, seconds);
- ``quarantine``: a failed or inconsistent labelling with ``status`` and ``reason``;
- ``model``: one trained committee member (``path``, ``member``, ``iteration``);
- ``iteration``: the record of a finished iteration (metrics in data).

A label row and the "done" mark of its candidate are written in one transaction, so a crash
never loses a finished label nor leaves one that would be computed again.

Uniqueness is enforced by the database, not only by this client: each row's ``unique_id`` (a
UNIQUE column) is ``KIND:KEY``, and a label and a quarantine row of the same candidate share
``outcome:KEY``. Several processes writing one state (e.g. on PostgreSQL) can therefore never
record two selections for an iteration nor two outcomes for a candidate; the loser of a race
rolls back and finds the winner's row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ase import Atoms

from matloop.labelling.base import LabelResult, LabelStatus
from matloop.utils.jsonable import to_jsonable


class RunState:
    """Read and write the run database (an SQLite file or a ``postgresql://`` URL)."""

    def __init__(self, url: str | Path) -> None:
        from matloop.store import connect, is_postgres
        from matloop.store._backend import check_url, sqlite_path

        self._url = check_url(url, "state database")
        if is_postgres(self._url):
            self.db = connect(self._url)
        else:
            import ase.db

            path = sqlite_path(self._url)
            if Path(path).exists():
                _check_sqlite(path)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.db = ase.db.connect(path, type="db", use_lock_file=False)

    @property
    def url(self) -> str:
        """The database location with any password replaced by ``***`` (for reports)."""
        from matloop.store import redact

        return redact(self._url)

    def __repr__(self) -> str:
        return f"RunState({self.url!r})"

    @contextmanager
    def _unique_transaction(self) -> Iterator[bool]:
        """A transaction that rolls back silently when a unique row already exists.

        Yields True; a caller that finds the transaction rolled back sees no change (the row
        written by the other process stands).
        """
        from matloop.store._backend import is_unique_violation, transaction

        try:
            with transaction(self.db):
                yield True
        except Exception as exc:  # noqa: BLE001 - only a lost race is swallowed
            if not is_unique_violation(exc):
                raise

    def _write(self, uid: str, atoms: Atoms, data: dict | None = None, **kvp: Any) -> int:
        """Write a row whose ``unique_id`` is `uid` (UNIQUE in the database)."""
        from ase.db.core import now
        from ase.db.row import AtomsRow

        row = AtomsRow(atoms)
        row.unique_id = uid
        row.ctime = now()
        row.user = os.getenv("USER")
        return self.db.write(row, key_value_pairs=kvp, data=data or {})

    # -- generic -----------------------------------------------------------------------------
    def _rows(self, **query: Any) -> list[Any]:
        return list(self.db.select(**query))

    def count(self, **query: Any) -> int:
        return self.db.count(**query)

    def get_key(self, kind: str, key: str) -> Any | None:
        rows = self._rows(kind=kind, key=key)
        return rows[0] if rows else None

    # -- meta --------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any] | None:
        row = self.get_key("meta", "meta")
        return None if row is None else dict(row.data)

    def write_meta(self, config: dict[str, Any]) -> None:
        """Store the run's configuration (a password in ``state.database`` is not stored)."""
        config = public_config(config)
        with self._unique_transaction():
            row = self.get_key("meta", "meta")
            if row is None:
                self._write(
                    "meta:meta",
                    Atoms(),
                    {"config": config},
                    kind="meta",
                    key="meta",
                    started=time.time(),
                )
            else:
                self.db.update(row.id, data={"config": config})

    # -- candidates and selections -----------------------------------------------------------
    def has_selection(self, iteration: int) -> bool:
        return self.get_key("selection", f"sel{iteration:03d}") is not None

    def write_selection(
        self,
        iteration: int,
        candidates: list[tuple[str, Atoms, dict[str, Any]]],
        info: dict[str, Any],
    ) -> None:
        """Write an iteration's candidates and its selection marker in one transaction.

        If another process has already written this iteration's selection, nothing is written.
        """
        with self._unique_transaction():
            key_sel = f"sel{iteration:03d}"
            self._write(
                f"selection:{key_sel}",
                Atoms(),
                to_jsonable(info),
                kind="selection",
                key=key_sel,
                iteration=iteration,
                n_selected=len(candidates),
            )
            for key, atoms, kvp in candidates:
                clean = atoms.copy()
                clean.calc = None
                self._write(
                    f"candidate:{key}",
                    clean,
                    None,
                    kind="candidate",
                    key=key,
                    iteration=iteration,
                    status="pending",
                    **kvp,
                )

    def selection_info(self, iteration: int) -> dict[str, Any]:
        row = self.get_key("selection", f"sel{iteration:03d}")
        return {} if row is None else dict(row.data)

    def pending(self, iteration: int | None = None) -> list[tuple[str, Atoms]]:
        query: dict[str, Any] = {"kind": "candidate", "status": "pending"}
        if iteration is not None:
            query["iteration"] = iteration
        out = []
        for row in self.db.select(**query, sort="id"):
            atoms = row.toatoms()
            atoms.info["matloop_key"] = row.key
            out.append((row.key, atoms))
        return out

    def record_label(self, key: str, iteration: int, result: LabelResult) -> None:
        """Store a labelling outcome and mark its candidate done, atomically (idempotent).

        A second outcome for the same candidate (another process, a recomputed task) is refused
        by the database and dropped: every candidate has exactly one label or quarantine row.
        """
        with self._unique_transaction():
            if self.get_key("label", key) is not None or self.get_key("quarantine", key):
                return
            prov = result.provenance()
            atoms = result.atoms.copy()
            atoms.info.pop("matloop_key", None)
            if result.status is LabelStatus.SUCCESS:
                atoms.calc = result.atoms.calc
                self._write(
                    f"outcome:{key}",
                    atoms,
                    prov,
                    kind="label",
                    key=key,
                    iteration=iteration,
                    labeller=result.labeller,
                    labelled_at=time.time(),
                    seconds=float(result.seconds),
                    n_attempts=len(result.attempts),
                )
            else:
                atoms.calc = None
                self._write(
                    f"outcome:{key}",
                    atoms,
                    prov,
                    kind="quarantine",
                    key=key,
                    iteration=iteration,
                    status=result.status.value,
                    reason=result.reason[:1000],
                    labeller=result.labeller,
                    labelled_at=time.time(),
                    seconds=float(result.seconds),
                    n_attempts=len(result.attempts),
                )
            for row in self._rows(kind="candidate", key=key):
                self.db.update(row.id, status="done")

    # -- dataset and quarantine --------------------------------------------------------------
    def labelled(self, max_iteration: int | None = None) -> list[Atoms]:
        out = []
        for row in self.db.select(kind="label", sort="id"):
            if max_iteration is not None and row.iteration > max_iteration:
                continue
            atoms = row.toatoms()
            atoms.info["config_type"] = f"al_it{row.iteration:03d}"
            atoms.info["matloop_key"] = row.key
            out.append(atoms)
        return out

    def label_keys(self) -> list[str]:
        return [row.key for row in self.db.select(kind="label")]

    def quarantine(self) -> list[dict[str, Any]]:
        return [
            {
                "key": r.key,
                "iteration": r.iteration,
                "status": r.status,
                "reason": r.reason,
                "formula": r.formula,
            }
            for r in self.db.select(kind="quarantine", sort="id")
        ]

    def n_attempted(self) -> int:
        """Candidates chosen for labelling so far (done or pending) — what the budget counts."""
        return self.count(kind="candidate")

    # -- models ------------------------------------------------------------------------------
    def models(self, iteration: int) -> list[str]:
        rows = sorted(self._rows(kind="model", iteration=iteration), key=lambda r: r.member)
        return [r.path for r in rows]

    def model_members(self, iteration: int) -> dict[int, str]:
        return {r.member: r.path for r in self._rows(kind="model", iteration=iteration)}

    def record_model(self, iteration: int, member: int, path: str, metrics: dict) -> None:
        key = f"it{iteration:03d}-m{member}"
        self._record_once("model", key, metrics, iteration=iteration, member=member, path=str(path))

    # -- iterations --------------------------------------------------------------------------
    def record_iteration(self, iteration: int, record: dict[str, Any]) -> None:
        self._record_once("iteration", f"it{iteration:03d}", record, iteration=iteration)

    def _record_once(self, kind: str, key: str, data: dict[str, Any], **kvp: Any) -> None:
        """Write row `kind`:`key` with `data` unless it exists (a resumed run writes it again)."""
        with self._unique_transaction():
            if self.get_key(kind, key) is None:
                self._write(f"{kind}:{key}", Atoms(), to_jsonable(data), kind=kind, key=key, **kvp)

    def iterations(self) -> list[dict[str, Any]]:
        rows = sorted(self._rows(kind="iteration"), key=lambda r: r.iteration)
        return [dict(r.data) for r in rows]

    def last_iteration(self) -> int | None:
        its = [r.iteration for r in self._rows(kind="iteration")]
        return max(its) if its else None


def _check_sqlite(path: str) -> None:
    """Refuse a file that is not a readable SQLite database with one line (DataError)."""
    import sqlite3

    from matloop.errors import DataError

    if Path(path).is_dir():
        raise DataError(f"state database {path} is a directory, not an SQLite file")
    try:
        con = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise DataError(
            f"state database {path} is corrupted or not an SQLite database ({exc})"
        ) from None


def public_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a configuration dump with the password of ``state.database`` masked."""
    from matloop.store import redact

    database = (config.get("state") or {}).get("database")
    if not database:
        return config
    return {**config, "state": {**config["state"], "database": redact(database)}}
