"""Options and checks shared by several commands (declared once)."""

from __future__ import annotations

import os
from collections.abc import Iterable
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
#: the reference-label keys of train, evaluate and validate (mlearn, MACE and ACE sets often
#: store them as REF_energy, REF_forces, REF_stress)
ENERGY_KEY = typer.Option("energy", "--energy-key", help="Info key of the reference energy.")
FORCES_KEY = typer.Option("forces", "--forces-key", help="Array key of the reference forces.")
STRESS_KEY = typer.Option(
    "stress",
    "--stress-key",
    help="Info key of the reference stress: eV/Å³, ASE's sign, Voigt xx yy zz yz xz xy (9 "
    "numbers are read as a 3×3 tensor); a key containing 'virial' holds the virial W (eV), "
    "read as σ = −W/V.",
)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option with parameter `name` was given (command line or environment), not
    left at its default: a given option overrides a config file's value, a default does not."""
    source = ctx.get_parameter_source(name)
    # by name: typer may bring its own copy of click, whose enum is not click's
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")


#: an input given as it is on the command line: a path, a model directory, ``FILE@SLICE``,
#: ``FILE.db#QUERY``, ``sqlite:///FILE.db``, a calculator name, several of them, or None
InputSpec = str | os.PathLike | Iterable[str | os.PathLike] | None


def refuse_overwrites(
    force: bool, outputs: dict[str, Path | None], inputs: dict[str, InputSpec] | None = None
) -> None:
    """Refuse (one ConfigError line) if any output, {option: path}, exists and `force` is off,
    if two options name the same file (the second would overwrite the first), or if an output
    is one of the `inputs`, {option or argument name: what was given} (even with `force`: the
    command would destroy what it reads).

    Called before any work, so a refusal leaves every existing file as it was.
    """
    from matloop.errors import ConfigError
    from matloop.utils.files import refuse_overwrite

    refuse_inputs(outputs, inputs or {})
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        key = Path(path).resolve()
        if key in seen:
            raise ConfigError(f"{seen[key]} and {option} both name {path}; give each its own file")
        seen[key] = option
        refuse_overwrite(path, force, option)


def refuse_inputs(outputs: dict[str, Path | None], inputs: dict[str, InputSpec]) -> None:
    """One ConfigError line if an output is the same file as an input (also through a symlink,
    a hard link, ``./`` or ``..``): --force never lets a command overwrite what it reads."""
    from matloop.errors import ConfigError

    files = [(name, given, path) for name, spec in inputs.items() for given, path in _files(spec)]
    for option, out in outputs.items():
        if out is None:
            continue
        for name, given, path in files:
            if _same_file(out, path):
                read = f"the input {name} {given}"
                what = read if str(path) == given else f"{path}, read as {read}"
                raise ConfigError(
                    f"{option} {out} is {what}; write the output to another file "
                    "(--force never overwrites an input)"
                )


def _files(spec: InputSpec) -> list[tuple[str, Path]]:
    """The existing files an input names, each with the text given: a model directory also
    names its model.pt; ``FILE@SLICE``, ``FILE.db#QUERY`` and ``sqlite:///FILE`` name FILE."""
    if spec is None:
        return []
    if not isinstance(spec, str | os.PathLike):
        return [f for s in spec for f in _files(s)]
    from matloop.store._backend import is_postgres, restore_url, sqlite_path

    given = os.fspath(spec)
    text = restore_url(given)
    if is_postgres(text):
        return []
    text = sqlite_path(text)
    candidates = [Path(text)]
    if not candidates[0].exists():
        for sep in ("#", "@"):
            name, at, _ = text.rpartition(sep)
            if at and name:
                candidates.append(Path(name))
    files = []
    for path in candidates:
        if path.is_file():
            files.append((given, path))
        elif path.is_dir():
            files.append((given, path / "model.pt"))
    return files


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist: no file to lose
        return False


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


def check_outputs(
    force: bool,
    outputs: dict[str, Path | None],
    plot: Path | None = None,
    inputs: dict[str, InputSpec] | None = None,
) -> None:
    """Before any work: a `plot` (--plot) in a format matplotlib writes, and no output, `plot`
    included, that exists already (unless `force`) or is one of the `inputs` (never)."""
    if plot is not None:
        check_plot_format(plot)
    refuse_overwrites(force, {**outputs, "--plot": plot}, inputs)
