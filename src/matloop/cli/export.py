"""CLI: ``matloop export MODEL --format lammps --out DIR``."""

from __future__ import annotations

from pathlib import Path

import typer


def export_command(
    model: Path = typer.Argument(..., help="Model file (model.pt) or the run directory of one."),
    fmt: str = typer.Option("lammps", "--format", help="Target: lammps (pair_style pace)."),
    out: Path = typer.Option(..., "--out", help="Directory for model.yace and in.matloop."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files in --out."),
    spline_step: float = typer.Option(
        1.0e-3,
        "--spline-step",
        help="ML-PACE spline bin (Å); smaller is closer to matloop, larger tables.",
    ),
) -> None:
    """Write a model for another code: `ace` → LAMMPS ML-PACE (model.yace + in.matloop)."""
    from matloop.errors import ConfigError
    from matloop.export import FORMATS, INPUT_NAME, export_lammps
    from matloop.models.io import load_model, resolve_model_path

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    pot, _ = load_model(resolve_model_path(model))
    written = export_lammps(pot, out, force=force, spline_step=spline_step)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"run it: cd {out} && lmp -in {INPUT_NAME} -var data structure.data")


def register(app: typer.Typer) -> None:
    """Attach ``matloop export`` to the root app."""
    app.command("export")(export_command)
