"""Turn exceptions into one clear line on stderr (no traceback) for the CLI."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

import yaml
from pydantic import ValidationError

from matloop.errors import Interrupted, MatloopError


def describe(exc: BaseException) -> str:
    """A one-line, user-facing description of `exc`."""
    if isinstance(exc, MatloopError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or str(exc)
        return f"file not found: {name}"
    if isinstance(exc, IsADirectoryError | PermissionError | NotADirectoryError):
        return f"cannot use {exc.filename}: {exc.strerror}"
    if isinstance(exc, ValidationError):  # one not raised by a config file (those name the file)
        from matloop.utils.config import format_validation_error

        return format_validation_error(exc, None, "invalid configuration")
    if isinstance(exc, yaml.YAMLError):
        return f"malformed YAML: {str(exc).splitlines()[0]}"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, UnicodeDecodeError):
        return f"not a text file ({exc.reason} at byte {exc.start})"
    if isinstance(exc, OSError):
        return f"cannot use {exc.filename or 'a file'}: {exc.strerror or exc}"
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller system, batch or model)"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
    return (
        f"internal error ({type(exc).__name__}: {first}); this is a matloop bug, please report "
        "it with the output of MATLOOP_DEBUG=1"
    )


def report(exc: BaseException) -> int:
    """Print `exc` as one line to stderr; return the exit code. MATLOOP_DEBUG=1 re-raises."""
    if os.environ.get("MATLOOP_DEBUG"):
        raise exc
    message = " ".join(describe(exc).split())
    print(f"error: {message}", file=sys.stderr)
    return 130 if isinstance(exc, KeyboardInterrupt | Interrupted) else 1


def report_usage(exc) -> int:
    """A command-line usage error (click) as one line naming the help to read; exit code 2."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    print(f"error: {message}{hint}", file=sys.stderr)
    return exc.exit_code


@contextlib.contextmanager
def show_warnings() -> Iterator[None]:
    """Print each warning raised inside the block at once, as one ``warning: ...`` line on stderr.

    The one way matloop's CLI shows warnings: every command runs inside it (see ``main``).
    Deprecation warnings of libraries are not shown; a repeated text is shown once. The caller's
    warning settings are restored afterwards.
    """
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        if issubclass(category, DeprecationWarning):
            return
        text = " ".join(str(message).split())
        if text not in seen:
            seen.add(text)
            print(f"warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield
