"""CLI: `matloop data push|pull|count` — a shared label store on SQLite or PostgreSQL."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import typer

from matloop.cli._options import FORCE, QUIET, STRESS_KEY, refuse_overwrites
from matloop.utils import progress as bars

_SELECT_HELP = (
    "ASE db query: conditions joined by ',' (all must hold), e.g. 'tag=cu,natoms<20'; "
    "keys: tag, run, ref_code, ref_version, natoms, energy, formula, ..."
)
_SELECT_SYNTAX = (
    "ASE db query syntax: conditions joined by ',' (all must hold), each KEY=VALUE, KEY!=VALUE, "
    "KEY<VALUE, KEY<=VALUE, KEY>VALUE, KEY>=VALUE, LOW<KEY<HIGH, a bare KEY (rows having it) or "
    "an element or formula (rows containing it), e.g. 'tag=cu,natoms<20'; keys of stored labels "
    "include tag, run, ref_code, ref_version, natoms, energy and formula"
)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_OPS = ("!=", "<=", ">=", "<", ">", "=")  # in the order ASE looks for them


def check_selection(select: str | None) -> None:
    """One ConfigError line for a --select that ASE would reject with a bare error (``tag==ni``:
    'too many values to unpack') or would read as a test that no row can pass (``foo bar``)."""
    from ase.db.core import parse_selection
    from ase.formula import Formula

    from matloop.errors import ConfigError

    def refuse(problem: str) -> ConfigError:
        return ConfigError(f"--select {select!r}: {problem}; {_SELECT_SYNTAX}")

    if not select:
        return
    for expression in (e.strip() for e in select.split(",")):
        if not expression:
            continue
        if "==" in expression:
            raise refuse(f"{expression!r} compares with '=='; use a single '='")
        if expression.count("<") == 2:  # LOW<KEY<HIGH (or <=)
            parts = [p.strip() for p in re.split(r"<=?", expression)]
            if len(parts) != 3 or not all(parts) or not _KEY.match(parts[1]):
                raise refuse(f"{expression!r} is not a range LOW<KEY<HIGH")
            continue
        op = next((o for o in _OPS if o in expression), None)
        if op is None:
            try:
                Formula(expression).count()
            except ValueError:
                if not _KEY.match(expression):
                    raise refuse(
                        f"{expression!r} is no key name, comparison, element or formula"
                    ) from None
            continue
        parts = [p.strip() for p in expression.split(op)]
        if len(parts) != 2:
            raise refuse(f"{expression!r} holds more than one comparison; join them with ','")
        key, value = parts
        if not key or not value:
            raise refuse(f"{expression!r} needs a key and a value on either side of {op!r}")
        if not _KEY.match(key):
            raise refuse(f"{key!r} in {expression!r} is not a key name")
        if key == "formula" and op != "=":
            raise refuse(f"{expression!r}: a formula is selected with '=', e.g. formula=Cu4")
    try:
        parse_selection(select)
    except KeyError as exc:  # formula=Xx
        raise refuse(f"unknown element {exc}") from None
    except ValueError as exc:
        raise refuse(" ".join(str(exc).split())) from None


_DB_HELP = (
    "label store: FILE.db (SQLite) or postgresql://user@host:5432/db "
    "(password from PGPASSWORD or ~/.pgpass, never printed)"
)


def push_command(
    # str, not Path: Path would collapse a mistyped sqlite://rel.db before it can be refused
    files: list[str] = typer.Argument(
        ..., help="labelled structures (extxyz, ASE db, FILE@SLICE, sqlite:///abs/FILE.db, ...)"
    ),
    db: str = typer.Option(..., "--db", help=_DB_HELP),
    code: str = typer.Option(..., "--code", help="reference code that made the labels (e.g. emt)"),
    settings: str = typer.Option("{}", "--settings", help="its settings, as JSON"),
    code_version: str = typer.Option(None, "--code-version", help="its version"),
    tag: str = typer.Option(None, "--tag", help="a tag to select these rows by later"),
    run: str = typer.Option(None, "--run", help="name of the run that made them"),
    energy_key: str = typer.Option("energy", "--energy-key"),
    forces_key: str = typer.Option("forces", "--forces-key"),
    stress_key: str = STRESS_KEY,
    json_out: bool = typer.Option(False, "--json", help="print the outcome as JSON"),
    quiet: bool = QUIET,
) -> None:
    """Store labelled structures once each (content hash is unique in the database)."""
    from matloop.data.io import check_sources, iter_chunks
    from matloop.errors import ConfigError, DataError
    from matloop.store import LabelStore, redact

    try:
        settings_dict = json.loads(settings)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--settings is not valid JSON: {exc.msg}") from exc
    if not isinstance(settings_dict, dict):
        raise ConfigError('--settings must be a JSON object, e.g. \'{"xc": "PBE"}\'')
    sources = check_sources(files)  # all inputs before writing anything
    with _redacting(db):
        chunks = iter_chunks(
            sources,
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
        )
        structures = (a for chunk in chunks for a in chunk)
        first = next(structures, None)  # an empty FILE@SLICE: say so and create no database
        if first is None:
            names = ", ".join(redact(s) for s in sources)
            raise DataError(f"no structures in {names}; nothing pushed")
        structures = itertools.chain([first], structures)
        store = LabelStore(db)
        result = store.push(
            bars.delayed_bar(structures, "pushing", "structure", enabled=not quiet),
            code=code,
            settings=settings_dict,
            version=code_version,
            run=run,
            tag=tag,
        )
        total = store.count()
    out = {**result.as_dict(), "rows_in_store": total, "db": redact(db)}
    if json_out:
        typer.echo(json.dumps(out))
    else:
        typer.echo(
            f"pushed {result.written} new label(s), {result.existing} already stored; "
            f"{total} row(s) in {redact(db)}"
        )


def pull_command(
    db: str = typer.Option(..., "--db", help=_DB_HELP),
    select: str = typer.Option(None, "--select", help=_SELECT_HELP),
    out: Path = typer.Option(..., "--out", help="extended XYZ file to write"),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Write the labelled structures matching a selection to an extended XYZ file."""
    from ase.io import write

    from matloop.errors import ConfigError
    from matloop.store import LabelStore, redact
    from matloop.utils.files import atomic_path

    check_selection(select)
    refuse_overwrites(force, {"--out": out}, {"--db": db})
    n = 0
    with _redacting(db):
        store = LabelStore(db, create=False)  # reading never creates a database
        with atomic_path(out) as tmp:
            with open(tmp, "w") as fh:
                rows = store.pull(select)
                for atoms in bars.delayed_bar(rows, "pulling", "structure", enabled=not quiet):
                    write(fh, atoms, format="extxyz")
                    n += 1
            if n == 0:
                which = f" match {select!r}" if select else ""
                raise ConfigError(f"no rows in {redact(db)}{which}; nothing written")
    typer.echo(f"wrote {n} structure(s) to {out}")


def count_command(
    db: str = typer.Option(..., "--db", help=_DB_HELP),
    select: str = typer.Option(None, "--select", help=_SELECT_HELP),
) -> None:
    """Number of rows matching a selection."""
    from matloop.store import LabelStore

    check_selection(select)
    with _redacting(db):
        typer.echo(str(LabelStore(db, create=False).count(select)))


class _redacting:
    """Re-raise database errors as one DataError line with the password removed."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        from matloop.errors import DataError, MatloopError
        from matloop.store import redact

        if exc is None or isinstance(exc, KeyboardInterrupt):
            return
        text = str(exc).replace(self.url, redact(self.url))
        if isinstance(exc, MatloopError):
            if text != str(exc):
                raise type(exc)(text) from None
            return
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise DataError(f"{redact(self.url)}: {type(exc).__name__}: {first}") from None


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    sub = typer.Typer(no_args_is_help=True, help="Shared label store (SQLite or PostgreSQL).")
    sub.command("push")(push_command)
    sub.command("pull")(pull_command)
    sub.command("count")(count_command)
    app.add_typer(sub, name="data", help="Shared label store (SQLite or PostgreSQL).")
