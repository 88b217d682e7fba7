"""Options and checks shared by several commands (declared once)."""

from __future__ import annotations

from pathlib import Path

import typer

FORCE = typer.Option(False, "--force", help="Overwrite existing output files.")
QUIET = typer.Option(
    False, "--quiet", "-q", help="No progress bars or progress lines on stderr (results unchanged)."
)
#: the commands whose settings also carry a progress switch (train, md, validate): the same -q /
#: --quiet as everywhere else, beside the older --progress/--no-progress
PROGRESS_HELP = "Progress bars on stderr; -q, --quiet or --no-progress turn them off."
PROGRESS = typer.Option(True, "--progress/--no-progress", " /-q", " /--quiet", help=PROGRESS_HELP)
STRESS_KEY = typer.Option(
    "stress",
    "--stress-key",
    help="Info key of the reference stress: eV/Å³, ASE's sign, Voigt xx yy zz yz xz xy (9 "
    "numbers are read as a 3×3 tensor); a key containing 'virial' holds the virial W (eV), "
    "read as σ = −W/V.",
)


def refuse_overwrites(force: bool, outputs: dict[str, Path | None]) -> None:
    """Refuse (one ConfigError line) if any output, {option: path}, exists and `force` is off,
    or if two options name the same file (the second would overwrite the first).

    Called before any work, so a refusal leaves every existing file as it was.
    """
    from matloop.errors import ConfigError
    from matloop.utils.files import refuse_overwrite

    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise ConfigError(f"{seen[key]} and {option} both name {path}; give each its own file")
        seen[key] = option
        refuse_overwrite(path, force, option)


def check_plot_format(path: Path) -> None:
    """Refuse a plot file name matplotlib cannot write, before anything else is written."""
    from matplotlib.figure import Figure

    from matloop.errors import ConfigError

    formats = Figure().canvas.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ConfigError(
            f"--plot {path}: unknown image format {suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(formats))}"
        )


def check_outputs(force: bool, outputs: dict[str, Path | None], plot: Path | None = None) -> None:
    """Before any work: a `plot` (--plot) in a format matplotlib writes, and no output, `plot`
    included, that exists already (unless `force`)."""
    if plot is not None:
        check_plot_format(plot)
    refuse_overwrites(force, {**outputs, "--plot": plot})
