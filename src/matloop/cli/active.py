"""CLI: `matloop al run|status|report` and `matloop demo` (thin layer over matloop.active)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def al_run(
    config: Path = typer.Argument(..., help="active-learning YAML (`matloop config template al`)"),
    dir: Path = typer.Option(..., "--dir", help="run directory (rerun the same command to resume)"),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Run (or resume) an active-learning loop: explore → select → label → retrain → stop."""
    from matloop.active.config import load_config
    from matloop.active.loop import run_active_learning

    cfg = load_config(config)
    report = run_active_learning(cfg, dir, scheduler=scheduler, progress=not quiet)
    typer.echo(f"labels: {report['n_labels']} ({report['n_quarantined']} quarantined); "
               f"stop: {report['stop_reason']}")
    typer.echo(f"final model: {report['final_model']}")
    typer.echo(f"report: {Path(dir) / 'report.html'}")


def al_status(
    dir: Path = typer.Argument(..., help="run directory"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show progress of a run (also while it runs or after a crash)."""
    from matloop.active.report import status

    st = status(dir)
    if json_out:
        typer.echo(json.dumps(st, indent=2, default=str))
        return
    typer.echo(f"iterations done: {st['iterations_done']}")
    typer.echo(f"labels: {st['n_labels']}  pending: {st['n_pending']}  "
               f"quarantined: {st['n_quarantined']}  attempted: {st['n_attempted']}")
    last = st["last"]
    if last and last.get("test_force_mae_ev_per_a") is not None:
        typer.echo(f"last test force MAE: {last['test_force_mae_ev_per_a']:.4f} eV/Å, energy MAE: "
                   f"{last['test_energy_mae_mev_per_atom']:.2f} meV/atom")
    if st["stop_reason"]:
        typer.echo(f"finished: {st['stop_reason']}")
    for q in st["quarantine"]:
        typer.echo(f"  quarantine {q['key']} ({q['formula']}): {q['status']}: {q['reason'][:100]}")


def al_report(dir: Path = typer.Argument(..., help="run directory")) -> None:
    """(Re)write DIR/report.json and DIR/report.html from the run database."""
    from matloop.active.report import write_reports

    report = write_reports(dir)
    typer.echo(f"{report['n_iterations']} iteration(s), {report['n_labels']} labels")
    typer.echo(f"report: {Path(dir) / 'report.html'}")


def demo(
    dir: Path = typer.Option(Path("matloop-demo"), "--dir", help="run directory"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress lines"),
) -> None:
    """Small active-learning loop on EMT Cu (a few minutes on 2 cores) ending in an HTML report."""
    from matloop.active.demo import run_demo

    report = run_demo(dir, progress=not quiet)
    last = report["iterations"][-1] if report["iterations"] else {}
    typer.echo(f"labels: {report['n_labels']}; stop: {report['stop_reason']}")
    if last.get("test_force_mae_ev_per_a") is not None:
        typer.echo(f"test force MAE: {last['test_force_mae_ev_per_a']:.4f} eV/Å; energy MAE: "
                   f"{last['test_energy_mae_mev_per_atom']:.2f} meV/atom")
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
