"""CLI: `matloop al run|status|report` and `matloop demo` (thin layer over matloop.active)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from matloop.cli._options import QUIET


def al_run(
    config: Path = typer.Argument(..., help="active-learning YAML (`matloop config template al`)"),
    dir: Path = typer.Option(..., "--dir", help="run directory (rerun the same command to resume)"),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address"),
    quiet: bool = QUIET,
    force: bool = typer.Option(
        False, "--force", help="run in a --dir holding another command's report, overwriting it"
    ),
) -> None:
    """Run (or resume) an active-learning loop: explore → select → label → retrain → stop.

    Only one process may run in a directory at a time (a lock file names the holder).
    """
    from matloop.active.config import check_inputs, load_config
    from matloop.active.loop import run_active_learning
    from matloop.utils.lock import locked_run_dir

    cfg = load_config(config)
    check_inputs(cfg)
    if dir.exists() and not dir.is_dir():
        from matloop.errors import ConfigError

        raise ConfigError(f"--dir {dir} exists and is not a directory")
    _check_run_dir(dir, config, cfg.state.database, force)
    created_dir = not dir.exists()
    before = set() if created_dir else {p.name for p in dir.iterdir()}
    with locked_run_dir(dir) as lock:
        if lock.stale:
            typer.echo(
                f"note: taking over {dir} from a run that ended without releasing it "
                f"(PID {lock.stale.get('pid')} on {lock.stale.get('host')})",
                err=True,
            )
        try:
            report = run_active_learning(cfg, dir, scheduler=scheduler, progress=not quiet)
        except KeyboardInterrupt:
            raise _interrupted(config, dir) from None
        except BaseException:
            _remove_if_nothing_labelled(dir, before, created_dir)
            raise
    if created_dir and not any(dir.iterdir()):
        dir.rmdir()
    typer.echo(
        f"labels: {report['n_labels']} ({report['n_quarantined']} quarantined); "
        f"stop: {report['stop_reason']}"
    )
    typer.echo(f"final model: {report['final_model']}")
    typer.echo(f"report: {Path(dir) / 'report.html'}")


# what a run writes beside its database and config.yaml (see matloop.active.report)
_RUN_OUTPUTS = (
    "report.json",
    "report.html",
    "dataset.xyz",
    "final_model.json",
    "test_parity.png",
    "models",
)


def _check_run_dir(dir: Path, config: Path, database: str | None, force: bool) -> None:
    """A run resumes in its own directory; in any other one it must not overwrite files.

    A run directory holds state.db (SQLite) or, with ``state.database`` elsewhere, config.yaml
    (written by every run): without ``state.database`` a config.yaml beside no state.db is
    someone else's file, which the run would overwrite.
    """
    from matloop.errors import ConfigError

    if force or not dir.is_dir() or (dir / "state.db").exists():
        return
    record = dir / "config.yaml"
    if database is None and record.exists() and record.resolve() == config.resolve():
        raise ConfigError(
            f"{config} would be overwritten: a run keeps its own copy of the configuration in "
            f"--dir {dir} as config.yaml; move or rename yours, or use --force"
        )
    if record.exists() and database is not None:
        return
    why = "no state.db" if database is None else "no state.db or config.yaml"
    for name in ("config.yaml", *_RUN_OUTPUTS):
        if (dir / name).exists():
            raise ConfigError(
                f"{dir / name} already exists and --dir {dir} is not an active-learning run "
                f"({why}); use --force to overwrite it, or another --dir"
            )


def _n_labelled(dir: Path) -> int:
    """Reference calculations whose outcome (label or quarantine) is stored in the run
    database (0 if it cannot be read). Selected candidates not yet computed do not count."""
    from matloop.active.report import status

    try:
        st = status(dir)
        return int(st["n_labels"]) + int(st["n_quarantined"])
    except Exception:  # noqa: BLE001 - no readable database means nothing to keep
        return 0


def _remove_if_nothing_labelled(dir: Path, before: set[str], created_dir: bool) -> None:
    """After a failure, remove what this command created, unless it holds reference labels."""
    import shutil

    from matloop.utils.lock import LOCK_NAME

    if not dir.is_dir() or _n_labelled(dir) > 0:
        return
    for path in dir.iterdir():
        if path.name not in before and path.name != LOCK_NAME:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if created_dir:
        (dir / LOCK_NAME).unlink(missing_ok=True)
        if not any(dir.iterdir()):
            dir.rmdir()


def _interrupted(config: Path, dir: Path):
    from matloop.errors import Interrupted

    n = _n_labelled(dir)
    return Interrupted(
        f"interrupted: {n} reference calculation(s) are saved in {dir}; resume with: "
        f"matloop al run {config} --dir {dir}"
    )


def al_status(
    dir: Path = typer.Argument(..., help="run directory"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show progress of a run (also while it runs or after a crash)."""
    from matloop.active.report import status

    integrity = check_integrity(dir)
    st = status(dir)
    st["integrity"] = integrity
    if json_out:
        typer.echo(json.dumps(st, indent=2, default=str))
        return
    typer.echo(f"database integrity: {integrity}")
    typer.echo(f"iterations done: {st['iterations_done']}")
    typer.echo(
        f"labels: {st['n_labels']}  pending: {st['n_pending']}  "
        f"quarantined: {st['n_quarantined']}  attempted: {st['n_attempted']}"
    )
    last = st["last"]
    if last and last.get("test_force_mae_ev_per_a") is not None:
        typer.echo(
            f"last test force MAE: {last['test_force_mae_ev_per_a']:.4f} eV/Å, energy MAE: "
            f"{last['test_energy_mae_mev_per_atom']:.2f} meV/atom"
        )
    if st["stop_reason"]:
        typer.echo(f"finished: {st['stop_reason']}")
    for q in st["quarantine"]:
        typer.echo(f"  quarantine {q['key']} ({q['formula']}): {q['status']}: {q['reason'][:100]}")


def check_integrity(dir: Path) -> str:
    """``PRAGMA integrity_check`` of DIR/state.db: "ok", or a DataError naming the damage."""
    import sqlite3

    from matloop.errors import ConfigError, DataError

    db = dir / "state.db"
    if not dir.is_dir():
        raise ConfigError(f"{dir} is not a run directory")
    if not db.exists():
        return "not checked (no SQLite state.db here; a database server checks its own)"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            rows = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        raise DataError(f"{db} is corrupted or not an SQLite database ({exc})") from None
    if rows != ["ok"]:
        raise DataError(f"{db} failed the SQLite integrity check: {'; '.join(rows[:3])}")
    return "ok (SQLite integrity_check)"


def al_report(dir: Path = typer.Argument(..., help="run directory")) -> None:
    """(Re)write DIR/report.json and DIR/report.html from the run database."""
    from matloop.active.report import write_reports

    report = write_reports(dir)
    typer.echo(f"{report['n_iterations']} iteration(s), {report['n_labels']} labels")
    typer.echo(f"report: {Path(dir) / 'report.html'}")


def demo(
    dir: Path = typer.Option(Path("matloop-demo"), "--dir", help="run directory"),
    quiet: bool = QUIET,
    force: bool = typer.Option(
        False, "--force", help="run in a --dir holding other files, which it may overwrite"
    ),
) -> None:
    """Small active-learning loop on EMT Cu (about 15 s on 2 cores) ending in an HTML report.

    Rerun with the same --dir to resume; any other non-empty --dir is refused unless --force.
    """
    from matloop.active.demo import check_demo_dir, run_demo
    from matloop.utils.lock import locked_run_dir

    check_demo_dir(dir, force)

    with locked_run_dir(dir):
        try:
            report = run_demo(dir, progress=not quiet, force=force)
        except KeyboardInterrupt:
            from matloop.errors import Interrupted

            raise Interrupted(
                f"interrupted: rerun `matloop demo --dir {dir}` to continue where it stopped"
            ) from None
    last = report["iterations"][-1] if report["iterations"] else {}
    typer.echo(f"labels: {report['n_labels']}; stop: {report['stop_reason']}")
    if last.get("test_force_mae_ev_per_a") is not None:
        typer.echo(
            f"test force MAE: {last['test_force_mae_ev_per_a']:.4f} eV/Å; energy MAE: "
            f"{last['test_energy_mae_mev_per_atom']:.2f} meV/atom"
        )
    typer.echo(f"final model: {report['final_model']}")
    typer.echo(f"report: {Path(dir) / 'report.html'}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    al = typer.Typer(no_args_is_help=True, help="Active learning with committees, resumable.")
    al.command("run")(al_run)
    al.command("status")(al_status)
    al.command("report")(al_report)
    app.add_typer(al, name="al", help="Active learning: run, status, report.")
    app.command("demo")(demo)
