"""Options and checks shared by several commands (declared once)."""

from __future__ import annotations

from pathlib import Path

import typer

FORCE = typer.Option(False, "--force", help="Overwrite existing output files.")
QUIET = typer.Option(
    False, "--quiet", "-q", help="No progress bars or progress lines on stderr (results unchanged)."
)


def refuse_overwrites(force: bool, outputs: dict[str, Path | None]) -> None:
    """Refuse (one ConfigError line) if any output, {option: path}, exists and `force` is off.

    Called before any work, so a refusal leaves every existing file as it was.
    """
    from matloop.utils.files import refuse_overwrite

    for option, path in outputs.items():
        if path is not None:
            refuse_overwrite(path, force, option)
