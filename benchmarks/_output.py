"""Output files of the benchmark scripts: one rule for all of them.

* Every output path is checked right after the arguments are read, before any work: its folder
  must exist and be writable, and the path must not be a folder. A bad path fails in a second,
  with one line, not after an hour of fitting.
* An existing output is never overwritten unless ``--force`` is given. Scripts that resume from
  their own earlier output (``bo_liang.py``, ``mlearn_peers.py``) say so in one line instead.
* Files are written atomically (a temporary file beside the target, renamed onto it), so a cut
  run never leaves half a file where a result was.

Scripts import it inside ``main()`` as ``from _output import ...`` (``python benchmarks/x.py``
puts this folder first on ``sys.path``). It imports matloop only when used, so MD workers that
run a script under another interpreter (a MACE venv) still start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "add_force",
    "announce_resume",
    "atomic_path",
    "atomic_write_text",
    "check_output",
    "check_outputs",
    "read_json",
    "resumes_from",
]

Output = tuple[str, "str | os.PathLike | None"]
# figures are drawn by matplotlib, which takes the format from the suffix
FIGURE_OPTIONS = ("--plot", "--plot-dir")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def add_force(parser: argparse.ArgumentParser, help: str = "overwrite existing outputs") -> None:
    """The ``--force`` flag every benchmark script has."""
    parser.add_argument("--force", action="store_true", help=help)


def check_output(path: str | os.PathLike, option: str, *, may_exist: bool = False) -> Path:
    """`path` as a Path if a file can be written there; ConfigError (one line) if not.

    `may_exist` allows an existing file (``--force`` given, or a run that resumes from it).
    """
    from matloop.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: folder {folder} is not writable")
    if option in FIGURE_OPTIONS and path.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError(f"{option} {path}: give the figure one of {', '.join(FIGURE_SUFFIXES)}")
    if path.exists() and not may_exist:
        raise ConfigError(
            f"{option} {path} already exists; pass --force to overwrite it or choose another path"
        )
    return path


def check_outputs(outputs: Iterable[Output], *, force: bool = False) -> None:
    """Exit with one line (status 2) unless every (option, path) can be written.

    Paths that are None (an output not asked for) are skipped.
    """
    from matloop.errors import ConfigError

    try:
        for option, path in outputs:
            if path is not None:
                check_output(path, option, may_exist=force)
    except ConfigError as exc:
        _exit(exc)


def resumes_from(path: str | os.PathLike, option: str, *, force: bool = False) -> bool:
    """True when a resuming script should carry on from `path` (it exists, no ``--force``).

    The path is checked as for :func:`check_outputs` (exits with one line if unusable).
    """
    from matloop.errors import ConfigError

    try:
        path = check_output(path, option, may_exist=True)
    except ConfigError as exc:
        _exit(exc)
    return path.exists() and not force


def read_json(path: str | os.PathLike, option: str) -> dict:
    """The JSON object a resuming script carries on from; exits with one line if it is not one."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _exit(f"{option} {path} cannot be resumed from ({exc}); move it away or choose another")
    if not isinstance(data, dict):
        _exit(f"{option} {path} is not a JSON object to resume from; move it away")
    return data


def announce_resume(path: str | os.PathLike, what: str) -> None:
    """The one line a resuming script prints on start."""
    print(f"resuming from {path}: {what}", flush=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (matloop.utils.files)."""
    from matloop.utils.files import atomic_write_text as write

    write(path, text)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it on success (matloop.utils.files)."""
    from matloop.utils.files import atomic_path as claim

    with claim(path) as tmp:
        yield tmp


def _exit(message: object) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)
