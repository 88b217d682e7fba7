"""CLI commands for matloop.eos: ``matloop eos fit`` and ``matloop eos compute``."""

from __future__ import annotations

from pathlib import Path

import typer

from matloop.cli._errors import show_warnings
from matloop.cli._options import FORCE, QUIET, check_outputs, refuse_overwrites


def fit_command(
    data: Path = typer.Argument(..., help="CSV file with a header row (e.g. Volume,Energy)."),
    x: str = typer.Option("Volume", "--x", help="Column with volumes (Å³)."),
    y: str = typer.Option("Energy", "--y", help="Column with energies (eV)."),
    eos: str = typer.Option("bm3", "--eos", help="bm3 | bm4 | vinet | murnaghan | poly"),
    degree: int = typer.Option(3, "--degree", help="Degree of the polynomial for --eos poly."),
    bootstrap: int = typer.Option(
        200, "--bootstrap", help="Residual-bootstrap refits for uncertainties (0: off)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed of the bootstrap."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the results as JSON here."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of the fit here."),
    force: bool = FORCE,
) -> None:
    """Fit an equation of state to E(V) data; print V0, E0, B0, B0' with uncertainties."""
    import json

    from matloop.eos import fit_eos, plot_eos, read_eos_csv
    from matloop.errors import ConfigError
    from matloop.utils.files import atomic_write_text

    if bootstrap < 0:
        raise ConfigError(f"--bootstrap must be ≥ 0 (0: off), got {bootstrap}")
    check_outputs(force, {"--json": json_out}, plot, {"DATA": data})
    with show_warnings():
        volumes, energies = read_eos_csv(data, x=x, y=y)
        res = fit_eos(
            volumes,
            energies,
            eos=eos,
            degree=degree,
            bootstrap=bootstrap,
            random_state=seed,
            source=str(data),
        )
    d = res.to_dict()
    u = d["uncertainties"]
    name = res.eos + (f" (degree {res.degree})" if res.degree else "")
    typer.echo(f"{data}: {res.volumes.size} points, {name} fit")
    typer.echo(f"  V0  = {res.v0:.5f} ± {_sd(u['v0_a3'])} Å³")
    typer.echo(f"  E0  = {res.e0:.6f} ± {_sd(u['e0_ev'])} eV")
    typer.echo(f"  B0  = {res.b0_gpa:.3f} ± {_sd(u['b0_gpa'])} GPa")
    typer.echo(f"  B0' = {res.b0_prime:.4f} ± {_sd(u['b0_prime'])}")
    typer.echo(f"  RMSE = {res.rmse * 1000:.4g} meV")
    if "bootstrap" in d:
        s = d["bootstrap"]["std"]
        typer.echo(
            f"  bootstrap ({bootstrap}) 1σ: V0 {_sd(s['v0_a3'])} Å³, B0 {_sd(s['b0_gpa'])} GPa, "
            f"B0' {_sd(s['b0_prime'])}"
        )
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(d, indent=2) + "\n")
        typer.echo(f"wrote {json_out}")
    if plot is not None:
        plot_eos(res, path=plot)
        typer.echo(f"wrote {plot}")


def _sd(value: float | None) -> str:
    """An uncertainty for the report; ``n/a`` where it is undefined (None in the JSON: no
    degrees of freedom left, e.g. as many points as parameters)."""
    return "n/a" if value is None else f"{value:.2g}"


def compute_command(
    structure: Path = typer.Argument(..., help="Structure file readable by ase.io.read."),
    calculator: str = typer.Option(
        ..., "--calculator", "-c", help="Built-in name (emt, sw, ...), module:function or model."
    ),
    strain: float = typer.Option(0.05, "--strain", help="Max volumetric strain (0.05 = ±5 %)."),
    points: int = typer.Option(11, "--points", help="Number of volumes."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write (Volume,Energy)."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Compute E(V) of STRUCTURE at evenly spaced volumes with a calculator and write a CSV."""
    from matloop.eos import compute_eos_data, write_eos_csv
    from matloop.errors import DataError

    refuse_overwrites(force, {"--out": out}, {"STRUCTURE": structure})

    with show_warnings():
        from ase.io import read

        if not structure.exists():
            raise FileNotFoundError(2, "No such file", str(structure))
        try:
            atoms = read(structure)
        except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
            raise DataError(f"{structure}: cannot read a structure ({exc})") from None
        volumes, energies = compute_eos_data(
            atoms, calculator, strain=strain, points=points, progress=not quiet
        )
        write_eos_csv(out, volumes, energies)
    typer.echo(
        f"wrote {out}: {points} volumes {volumes.min():.4f}–{volumes.max():.4f} Å³, "
        f"lowest energy {energies.min():.6f} eV at {volumes[energies.argmin()]:.4f} Å³"
    )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    sub = typer.Typer(no_args_is_help=True, help="Equations of state E(V): compute and fit.")
    sub.command("fit")(fit_command)
    sub.command("compute")(compute_command)
    app.add_typer(sub, name="eos", help="Equations of state E(V): compute and fit.")
