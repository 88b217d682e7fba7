"""`matloop config template` and `matloop config validate`."""

from __future__ import annotations

from pathlib import Path

import typer

from matloop.cli._options import FORCE, refuse_overwrites

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
    kind: str = typer.Argument("train", help="Which config: train, al or property."),
    out: Path | None = typer.Option(None, "--out", help="Write to a file instead of stdout."),
    model: str = typer.Option(
        "ace", "--model", "-m", help="Model family of a train template (`matloop models`)."
    ),
    force: bool = FORCE,
) -> None:
    """Print a complete YAML config with every default filled in."""
    from matloop.errors import ConfigError
    from matloop.training import train_config_template

    refuse_overwrites(force, {"--out": out})

    if kind == "train":
        text = train_config_template(model)
    elif kind == "al":
        text = _al_module().template()
    elif kind == "property":
        from matloop.property.config import template as property_template

        text = property_template()
    else:
        raise ConfigError(f"unknown config kind {kind!r}; choose train, al or property")
    if out is None:
        typer.echo(text, nl=False)
    else:
        from matloop.utils.files import atomic_write_text

        atomic_write_text(out, text)
        typer.echo(f"wrote {out}")


_KINDS = "train, al, space (design), report (validation) or property"


@config_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="YAML file to check."),
    kind: str = typer.Option("auto", help=f"{_KINDS}; auto: guess from the keys."),
) -> None:
    """Check a config completely without computing: keys, value ranges, model family and its
    parameters, training options, reference calculator and its arguments, input files."""
    from matloop.errors import ConfigError
    from matloop.utils.config import load_yaml

    if kind == "auto":
        kind = _guess_kind(load_yaml(file))
    if kind == "al":
        al = _al_module()
        al.check_inputs(al.load_config(file))
    elif kind in _LOADERS:
        _LOADERS[kind](file)
    else:
        raise ConfigError(f"unknown config kind {kind!r}; choose {_KINDS} or auto")
    typer.echo(f"{file}: valid {kind} config")


def _guess_kind(data: object) -> str:
    keys = set(data) if isinstance(data, dict) else set()
    if {"reference", "initial", "explore"} & keys:
        return "al"
    if "components" in keys:
        return "space"
    if keys & _property_keys():
        return "property"
    if keys and keys <= {"thresholds", "settings"}:
        return "report"
    return "train"


def _property_keys() -> set[str]:
    """Top-level keys only a property config has (a train config with a stray 'split' or
    'val_fraction' stays a train config, so its error names the train keys)."""
    from matloop.property.config import PropertyConfig

    return {"targets", "task", "cgcnn", "gbt"} & set(PropertyConfig.model_fields)


def _load_train(file: Path) -> None:
    from matloop.training.config import load_train_config

    load_train_config(file)


def _load_space(file: Path) -> None:
    from matloop.design.space import load_space

    load_space(file)


def _load_report(file: Path) -> None:
    from matloop.validation.config import load_report_config

    load_report_config(file)


def _load_property(file: Path) -> None:
    from matloop.property.config import load_config

    load_config(file)


_LOADERS = {
    "train": _load_train,
    "space": _load_space,
    "report": _load_report,
    "property": _load_property,
}


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
