"""`matloop config template` and `matloop config validate`."""

from __future__ import annotations

from pathlib import Path

import typer

config_app = typer.Typer(no_args_is_help=True, help="YAML configuration templates and checks.")


def _al_module():
    try:
        from matloop.active import config as al_config
    except ImportError as exc:  # pragma: no cover - active learning not installed
        from matloop.errors import ConfigError

        raise ConfigError("active-learning configs are not available in this build") from exc
    return al_config


@config_app.command("template")
def template(
    kind: str = typer.Argument("train", help="Which config: train or al."),
    out: Path | None = typer.Option(None, "--out", help="Write to a file instead of stdout."),
    model: str = typer.Option(
        "ace", "--model", "-m", help="Model family of a train template (`matloop models`)."
    ),
) -> None:
    """Print a complete YAML config with every default filled in."""
    from matloop.errors import ConfigError
    from matloop.training import train_config_template

    if kind == "train":
        text = train_config_template(model)
    elif kind == "al":
        text = _al_module().template()
    else:
        raise ConfigError(f"unknown config kind {kind!r}; choose train or al")
    if out is None:
        typer.echo(text, nl=False)
    else:
        from matloop.utils.files import atomic_write_text

        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


@config_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="YAML file to check."),
    kind: str = typer.Option("auto", help="train, al or auto (guess from the keys)."),
) -> None:
    """Check a config; unknown keys are reported with the list of valid ones."""
    from matloop.errors import ConfigError
    from matloop.training.config import load_train_config, load_yaml

    if kind == "auto":
        data = load_yaml(file)
        kind = (
            "al"
            if isinstance(data, dict) and {"reference", "initial", "explore"} & set(data)
            else "train"
        )
    if kind == "train":
        load_train_config(file)
    elif kind == "al":
        _al_module().load_config(file)
    else:
        raise ConfigError(f"unknown config kind {kind!r}; choose train, al or auto")
    typer.echo(f"{file}: valid {kind} config")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
