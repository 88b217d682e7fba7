"""Connections to ASE databases (SQLite file or PostgreSQL server) with real transactions.

ASE's PostgreSQL backend (package ``ase-db-backends``) has two defects that matter when several
processes write at once, both fixed here by a small subclass:

- the id of a freshly written row is read as ``last_value`` of the id sequence, which is shared by
  all sessions, so a concurrent writer could attach key-value pairs to another process's row;
  ``currval`` is per session;
- a failed transaction cannot be rolled back (the connection wrapper has no ``rollback``).
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from matloop.errors import ConfigError

_PG_PREFIXES = ("postgresql://", "postgres://")


def is_postgres(url: str | os.PathLike) -> bool:
    return str(url).startswith(_PG_PREFIXES)


def is_database(source: str | os.PathLike) -> bool:
    """True for a PostgreSQL URL, a ``sqlite:///`` URL or a ``.db`` file name."""
    text = str(source)
    return is_postgres(text) or text.startswith("sqlite:///") or Path(text).suffix == ".db"


def redact(url: str | os.PathLike) -> str:
    """The URL with any password replaced by ``***`` (safe for logs, reports and JSON).

    The user information ends at the last ``@``, as a password may hold ``#``, ``?`` or ``/``
    unencoded (libpq accepts ``#`` and ``?`` there), which a URL parser reads as the fragment,
    the query or the path; an ``@`` in a query value hides more than the password, never less.
    """
    text = str(url)
    if "://" not in text:
        return text
    scheme, rest = text.split("://", 1)
    if "@" in rest:
        userinfo, host = rest.rsplit("@", 1)
        if ":" in userinfo:
            rest = f"{userinfo.split(':', 1)[0]}:***@{host}"
    rest = re.sub(r"(?i)(password=)[^&]*", r"\1***", rest)
    return f"{scheme}://{rest}"


def restore_url(text: str) -> str:
    """Undo ``pathlib.Path``'s collapsing of ``scheme://`` (``sqlite:/x.db``, a URL that went
    through a CLI option or argument typed as Path) for the schemes a database may have."""
    for scheme, slashes in (("postgresql", "//"), ("postgres", "//"), ("sqlite", "///")):
        if text.startswith(f"{scheme}:/") and not text.startswith(f"{scheme}://"):
            return f"{scheme}:{slashes}{text[len(scheme) + 2 :].lstrip('/')}"
    return text


_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")  # 'http://', or 'http:/' from a Path


def check_url(url: str | os.PathLike, what: str = "label store") -> str:
    """`url` as text (a Path-collapsed ``sqlite:/`` or ``postgresql:/`` restored) if it names a
    database: a file path, ``sqlite:///abs/FILE.db`` or a ``postgresql://`` URL; else one
    ConfigError line. The one check of database locations (label store, run state, data
    sources): ``sqlite://rel.db`` (two slashes) or ``http://...`` would otherwise become a
    file under a folder named ``sqlite:`` or ``http:``."""
    text = restore_url(str(url))
    if is_postgres(text) or text.startswith("sqlite:///") or not _URL_LIKE.match(text):
        return text
    raise ConfigError(
        f"{redact(text)}: not a {what} URL; give FILE.db, sqlite:///abs/FILE.db or "
        "postgresql://user@host:5432/db"
    )


def sqlite_path(url: str) -> str:
    """The file of an SQLite location (``sqlite:///abs/x.db`` → ``/abs/x.db``)."""
    return url[len("sqlite:///") - 1 :] if url.startswith("sqlite:///") else url


def connect(url: str | os.PathLike, *, create: bool = True) -> Any:
    """An ASE database for a file path / ``sqlite:///path`` or a ``postgresql://`` URL.

    PostgreSQL credentials come from the URL or the standard ``PG*`` environment variables
    (``PGPASSWORD``, ``PGPASSFILE``, ...), as libpq reads them. Errors never show a password.
    """
    text = check_url(url)
    if is_postgres(text):
        return _postgres(text)
    path = Path(sqlite_path(text))
    if path.suffix != ".db":
        raise ConfigError(f"{text}: a label store is an SQLite '.db' file or a postgresql:// URL")
    if not create and not path.exists():
        raise ConfigError(f"database not found: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    import ase.db

    return ase.db.connect(str(path), type="db", use_lock_file=False)


def _postgres(url: str) -> Any:
    try:
        from ase_db_backends.postgresql import Connection, PostgreSQLDatabase
    except ImportError as exc:
        raise ConfigError(
            "PostgreSQL needs the 'postgres' extra: pip install 'matloop[postgres]'"
        ) from exc

    class _Connection(Connection):
        def rollback(self) -> None:
            self.con.rollback()

    class _PostgreSQLDatabase(PostgreSQLDatabase):
        def _connect(self) -> Any:
            return _Connection(_pg_connect(self.filename))

        def get_last_id(self, cur: Any) -> int:
            cur.execute("SELECT currval('systems_id_seq')")
            return int(cur.fetchone()[0])

    _pg_connect(url).close()  # fail now, in one line, rather than inside ASE
    return _PostgreSQLDatabase(url, create_indices=True, use_lock_file=False)


def _pg_connect(url: str) -> Any:
    import psycopg2

    try:
        return psycopg2.connect(url)
    except psycopg2.OperationalError as exc:
        text = str(exc).replace(url, redact(url)).strip()
        first = " ".join(text.split()) if text else "refused"
        raise ConfigError(f"cannot connect to {redact(url)}: {first}") from exc


def is_conflict(exc: BaseException) -> bool:
    """A unique-constraint violation, serialization failure or deadlock: retry the transaction."""
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc)
    try:
        import psycopg2
        from psycopg2 import errors
    except ImportError:  # pragma: no cover - no PostgreSQL support installed
        return False
    return isinstance(
        exc,
        psycopg2.IntegrityError | errors.DeadlockDetected | errors.SerializationFailure,
    )


def is_unique_violation(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.IntegrityError):
        return True
    try:
        import psycopg2
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, psycopg2.IntegrityError)


@contextmanager
def transaction(db: Any) -> Iterator[Any]:
    """One transaction on `db` (commit on success, roll back on any error); yields a cursor.

    ASE's own ``with db:`` cannot roll back on PostgreSQL; this works on both backends.
    """
    _ensure_initialized(db)
    db.change_count = 0
    db.connection = db._connect()
    try:
        yield db.connection.cursor()
        db.connection.commit()
    except BaseException as exc:
        try:
            db.connection.rollback()
        except Exception as rollback_error:  # noqa: BLE001 - the original error is raised
            exc.add_note(f"the rollback failed too: {rollback_error!r}")
        raise
    finally:
        try:
            db.connection.close()
        finally:
            db.connection = None


def _ensure_initialized(db: Any) -> None:
    """Create the schema once; two processes creating it at the same time is not an error."""
    if getattr(db, "initialized", False):
        return
    for attempt in range(20):
        try:
            db.count()
            return
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - another process is creating the schema: retry
            if attempt == 19 or not _schema_in_progress(exc):
                raise
            import time

            time.sleep(0.05 * (attempt + 1))


def _schema_in_progress(exc: BaseException) -> bool:
    """True for what a reader meets while another process creates the schema: a table that
    exists already or not yet, a locked file, or (SQLite) ASE reading the schema version before
    its row is written (a TypeError on the empty row). Six writers starting on a new SQLite file
    met one of these in 4 of 10 trials."""
    text = str(exc).lower()
    transient = ("exist", "no such table", "locked")
    return any(t in text for t in transient) or is_conflict(exc) or isinstance(exc, TypeError)


def select_chunks(db: Any, selection: str | None, chunk_size: int) -> Iterator[list[Any]]:
    """Rows matching `selection`, `chunk_size` at a time, ordered by id (keyset pagination:
    every query is an index range scan, unlike OFFSET)."""
    last = 0
    while True:
        query = f"id>{last}" if not selection else f"{selection},id>{last}"
        rows = list(db.select(query, sort="id", limit=chunk_size))
        if not rows:
            return
        yield rows
        last = rows[-1].id
