"""The `matloop` command line: a thin typer layer over the library.

Every sub-command lives in its own module; user errors become one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys

import typer

from matloop.cli import _errors

app = typer.Typer(
    name="matloop",
    help="matloop: reference data → potentials, surrogates and designs, with uncertainty.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from matloop.cli import (
        active,
        config,
        data,
        design,
        eos,
        export,
        md,
        potentials,
        property,
        surrogate,
    )

    potentials.register(app)
    config.register(app)
    md.register(app)
    active.register(app)
    eos.register(app)
    surrogate.register(app)
    design.register(app)
    data.register(app)
    export.register(app)
    property.register(app)


_register()


def _print_version(value: bool) -> None:
    if value:
        from matloop import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the matloop version and exit.",
        is_eager=True,
        callback=_print_version,
    ),
) -> None:
    """matloop: reference data → potentials, surrogates and designs, with uncertainty."""
    from matloop.utils.threads import default_torch_threads, torch_threads

    # the command's torch threads (MATLOOP_NUM_THREADS or 1), restored for in-process callers
    # when the command ends; set here rather than in main() so that `--help` imports no torch
    ctx.with_resource(torch_threads(default_torch_threads()))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `matloop` script; returns the exit code (0 on success)."""
    try:
        with _errors.show_warnings():
            result = app(args=argv, prog_name="matloop", standalone_mode=False)
    except SystemExit as exc:  # typer/click exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code
    except BaseException as exc:  # noqa: BLE001 - converted to one clear line
        kind = type(exc).__name__
        if kind == "Exit":  # --help, --version
            return int(getattr(exc, "exit_code", 0))
        if kind == "NoArgsIsHelpError":  # `matloop CMD` alone prints the help, as always
            exc.show()
            return 0
        if kind == "Abort":  # Ctrl-C inside a prompt
            return _errors.report(KeyboardInterrupt())
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # usage error
            return _errors.report_usage(exc)
        return _errors.report(exc)
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The `matloop` script and ``python -m matloop``: run :func:`main` and exit with its code.

    After Ctrl-C has been reported (exit code 130) the process ends at once: what was saved is
    already on disk, and interpreter shutdown (joining worker threads and pools) must not turn the
    exit into a second, uncaught interrupt.
    """
    import os
    import signal

    code = main()
    if code == 130:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
