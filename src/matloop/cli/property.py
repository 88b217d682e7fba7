"""CLI for structure → property models: ``matloop property fit|evaluate|predict|nearest|...``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from matloop.cli._options import FORCE, QUIET, refuse_overwrites

_SPLITS = ("random", "composition", "prototype", "column")

# everything `property fit` writes into --out (see StructurePropertyModel.save, write_report)
_FIT_OUTPUTS = frozenset(
    {
        "model.json",
        "weights.pt",
        "trees.npz",
        "embeddings.npz",
        "config.yaml",
        "report.html",
        "report.json",
        "parity.png",
        "calibration.png",
        "roc.png",
    }
)


def _check_out_dir(path: Path, force: bool, option: str, marker: str | None = None) -> None:
    """An output directory must be new or empty, unless --force; with `marker` (a file name),
    --force replaces only a directory holding it (an earlier model) and nothing but the files
    `property fit` writes (a data file, notes or an evaluation kept there would be deleted)."""
    from matloop.errors import ConfigError

    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} exists and is not a directory")
    if not path.exists() or not any(path.iterdir()):
        return
    if not force:
        raise ConfigError(f"{option} {path} exists; use --force to overwrite it")
    if marker is None:
        return
    if not (path / marker).is_file():
        raise ConfigError(
            f"{option} {path} holds files but no {marker}; --force replaces only an earlier "
            "model directory, so choose a new one"
        )
    if Path.cwd().resolve().is_relative_to(path.resolve()):
        raise ConfigError(f"{option} {path} holds the current directory; choose another one")
    foreign = sorted(p.name for p in path.iterdir() if p.name not in _FIT_OUTPUTS)
    if foreign:
        raise ConfigError(
            f"{option} {path} holds {path / foreign[0]}, which `property fit` did not write; "
            "--force would delete it with the earlier model: move it or choose a new --out"
        )


def _refuse_inputs(out: Path | None, option: str, model_dir: Path) -> None:
    """`out` (a file to write) must not be a file of the model, even with --force (the model
    would be lost); the data file read is refused by ``refuse_overwrites``."""
    from matloop.errors import ConfigError

    if out is None:
        return
    target = out.resolve()
    if target.parent == model_dir.resolve() and target.name in _FIT_OUTPUTS:
        raise ConfigError(f"{option} {out} is a file of the model {model_dir}; choose another name")


def _targets(text: str) -> list[str]:
    from matloop.errors import ConfigError

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise ConfigError("--target needs at least one property name")
    return names


def fit_command(
    data: Path = typer.Option(..., "--data", help="Structures + properties (extxyz/db/jsonl/csv)."),
    target: str = typer.Option(..., "--target", help="Property name(s), comma-separated."),
    task: str | None = typer.Option(None, "--task", help="regression | classification"),
    split: str | None = typer.Option(
        None, "--split", help="Validation split: random | composition | prototype | column"
    ),
    split_column: str | None = typer.Option(None, "--split-column", help="id/time column."),
    model: str | None = typer.Option(
        None, "--model", help="auto (gbt and cgcnn, the better on validation) | cgcnn | gbt"
    ),
    config: Path | None = typer.Option(None, "--config", help="YAML config (see template)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (split, init)."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Train a structure → property model; writes the model, report.html and plots into --out."""
    from matloop.errors import ConfigError
    from matloop.property import fit_auto, load_config, make_model, read_dataset
    from matloop.property.report import write_report
    from matloop.utils.files import atomic_dir

    for value, allowed, flag in (
        (split, _SPLITS, "--split"),
        (task, ("regression", "classification"), "--task"),
        (model, ("auto", "cgcnn", "gbt"), "--model"),
    ):
        if value is not None and value not in allowed:
            raise ConfigError(f"unknown {flag} {value!r} (choose from {', '.join(allowed)})")
    cfg = load_config(config)
    updates = {"task": task, "split": split, "model": model, "seed": seed}
    updates["split_column"] = split_column
    given = {k: v for k, v in updates.items() if v is not None}  # --seed 0 is a choice too
    cfg = cfg.model_validate({**cfg.model_dump(), **given})
    cfg.targets = _targets(target)
    if cfg.split == "column" and not cfg.split_column:
        raise ConfigError("--split column needs --split-column NAME")
    _check_out_dir(out, force, "--out", marker="model.json")
    dataset = read_dataset(data)
    for name in cfg.targets:
        if not dataset.has_value(name).any():
            raise ConfigError(f"{data}: no structure has a value of {name!r}")
    shared = dict(
        target=cfg.targets if len(cfg.targets) > 1 else cfg.targets[0],
        task=cfg.task,
        split=cfg.split,
        split_column=cfg.split_column,
        val_fraction=cfg.val_fraction,
        class_weight=cfg.class_weight,
        ood_k=cfg.ood_k,
        ood_quantile=cfg.ood_quantile,
        seed=cfg.seed,
        progress=not quiet,
    )
    params = {"cgcnn": cfg.cgcnn.model_dump(), "gbt": cfg.gbt.model_dump()}
    if cfg.model == "auto":
        est = fit_auto(dataset, params=params, **shared)
    else:
        est = make_model(cfg.model, params=params[cfg.model], **shared).fit(dataset)
    val = dataset.subset([dataset.ids.index(i) for i in est.val_ids_])
    with atomic_dir(out) as tmp:  # --force: no file of the earlier model is left beside these
        est.save(tmp)
        result = write_report(est, val, tmp, f"validation ({cfg.split} split)")
        (tmp / "config.yaml").write_text(_yaml(cfg))
    keys = (
        ("mae", "rmse", "r2", "coverage_95")
        if cfg.task == "regression"
        else ("accuracy", "f1", "roc_auc")
    )
    unit = est.units_.get(cfg.targets[0], "")
    unit = f"[{unit}]" if unit else ""
    shown = ", ".join(f"{k} {result[k]:.4g}" for k in keys if k in result)
    # σ is scaled on this split, so its coverage there is 0.95 by construction
    note = "; σ calibrated on this split" if "coverage_95" in shown else ""
    sel = getattr(est, "selection_", None)
    if sel:
        scores = ", ".join(f"{k} {v:.4g}" for k, v in sel["validation"].items())
        typer.echo(f"model auto: chose {sel['chosen']} by validation {sel['metric']} ({scores})")
    typer.echo(
        f"trained {est.kind} on {est.n_train_} structures in {est.train_time_s_:.1f} s; "
        f"validation ({est.n_val_}, {cfg.split} split): {shown} {unit}{note}"
    )
    typer.echo(f"model and report: {out}/report.html")


def _yaml(cfg) -> str:
    import yaml

    return yaml.safe_dump(cfg.model_dump(), sort_keys=False)


def _with_reference(model, dataset, target: str):
    """`dataset` whose reference for the model's target is read from column `target`."""
    from matloop.errors import ConfigError

    if target in model.targets_:
        return dataset, target
    if len(model.targets_) != 1:
        raise ConfigError(f"--target {target!r} is not one of the model's {model.targets_}")
    own = model.targets_[0]
    if own in dataset.properties:  # renaming is for data that call the property otherwise
        raise ConfigError(
            f"--target {target!r}: the model predicts {own!r}, which {dataset.source or 'the data'}"
            f" also holds; give --target {own} (another column would score it against another"
            " property)"
        )
    dataset._column(target)
    dataset.properties[model.targets_[0]] = dataset.properties[target]
    return dataset, model.targets_[0]


def evaluate_command(
    model_dir: Path = typer.Argument(..., help="Directory written by `property fit`."),
    data: Path = typer.Argument(..., help="Labelled structures to evaluate on."),
    target: str = typer.Option(..., "--target", help="Property holding the reference values."),
    json_out: Path = typer.Option(..., "--json", help="Write metrics here (JSON)."),
    report: Path | None = typer.Option(None, "--report", help="Directory for HTML + plots."),
    force: bool = FORCE,
) -> None:
    """Metrics (regression: mae, rmse, r2, coverage_95; classes: accuracy, f1, roc_auc)."""
    from matloop.property import load_model, read_dataset
    from matloop.property.report import write_report
    from matloop.utils.files import atomic_write_text

    _refuse_inputs(json_out, "--json", model_dir)
    refuse_overwrites(force, {"--json": json_out}, {"DATA": data})
    if report is not None:
        _check_out_dir(report, force, "--report")
    model = load_model(model_dir)
    dataset, name = _with_reference(model, read_dataset(data), target)
    if report is not None:
        result = write_report(model, dataset, report, f"{data.name}: {name}", target=name)
    else:
        result = model.evaluate(dataset, target=name)
    result["target"] = name
    if target != name:
        result["reference_column"] = target
    result["unit"] = model.units_.get(name, "")
    atomic_write_text(json_out, json.dumps(result, indent=1))
    keys = ("mae", "rmse", "r2", "coverage_95", "accuracy", "f1", "roc_auc", "ood_flag_rate")
    typer.echo(", ".join(f"{k} {result[k]:.4g}" for k in keys if k in result))
    _warn_overlap(result)


def _warn_overlap(result: dict) -> None:
    """One stderr line when evaluated structures were part of the model's own fit."""
    seen = {k: result.get(f"n_in_{k}", 0) for k in ("training", "validation")}
    if any(seen.values()):
        typer.echo(
            f"warning: {seen['training']} of these {result['n']} structures were in the training"
            f" part and {seen['validation']} in the validation part (early stopping, σ "
            "calibration); these metrics are optimistic",
            err=True,
        )


def predict_command(
    model_dir: Path = typer.Argument(..., help="Directory written by `property fit`."),
    data: Path = typer.Argument(..., help="Structures to predict (properties not needed)."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write."),
    force: bool = FORCE,
) -> None:
    """One row per structure: id, prediction, std, ood_score, ood (+ class probabilities)."""
    from matloop.property import load_model, read_dataset
    from matloop.surrogate.io import write_columns

    _refuse_inputs(out, "--out", model_dir)
    refuse_overwrites(force, {"--out": out}, {"DATA": data})
    model = load_model(model_dir)
    table = model.predict_table(read_dataset(data))
    write_columns(out, table)
    n_ood = sum(table["ood"])
    typer.echo(
        f"wrote {len(table['id'])} predictions to {out} ({n_ood} flagged out of distribution)"
    )


def nearest_command(
    model_dir: Path = typer.Argument(..., help="Directory written by `property fit`."),
    structure: Path = typer.Argument(..., help="Query structure (any ASE-readable file)."),
    data: Path = typer.Option(..., "--data", help="Structures to search."),
    k: int = typer.Option(5, "-k", help="Number of neighbours."),
) -> None:
    """The `k` structures of --data nearest to STRUCTURE in the model's embedding space."""
    from ase.io import read

    from matloop.errors import DataError
    from matloop.property import from_structures, load_model, read_dataset

    model = load_model(model_dir)
    try:
        query = from_structures([read(str(structure))], ids=[structure.name])
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - any ASE read error becomes one line
        raise DataError(f"{structure}: cannot read structure: {exc}") from None
    reference = read_dataset(data)
    idx, dist = model.nearest(query, reference, k)
    formulas = reference.subset(idx[0]).formulas()
    typer.echo("rank  id  formula  distance")
    for rank, (i, d, f) in enumerate(zip(idx[0], dist[0], formulas, strict=True), 1):
        typer.echo(f"{rank}  {reference.ids[i]}  {f}  {d:.4g}")


def duplicates_command(
    data: Path = typer.Argument(..., help="Structures (extxyz/db/jsonl/csv)."),
    target: str | None = typer.Option(None, "--target", help="Report the spread of this property."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report here (JSON)."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Groups of identical crystals (StructureMatcher within a reduced formula)."""
    from matloop.property import duplicate_report, find_duplicates, read_dataset
    from matloop.utils.files import atomic_write_text

    refuse_overwrites(force, {"--json": json_out}, {"DATA": data})
    dataset = read_dataset(data)
    result = duplicate_report(dataset, find_duplicates(dataset, progress=not quiet), target)
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=1))
    typer.echo(
        f"{result['n_groups']} duplicate groups, {result['n_in_groups']} of "
        f"{result['n_structures']} structures in them"
    )


def template_command() -> None:
    """Print a YAML config with every option at its default."""
    from matloop.property.config import template

    typer.echo(template(), nl=False)


def validate_command(path: Path = typer.Argument(..., help="YAML config.")) -> None:
    """Check a config file (unknown keys and bad values are errors)."""
    from matloop.property import load_config

    load_config(path)
    typer.echo(f"{path}: valid")


def register(app: typer.Typer) -> None:
    """Attach ``matloop property ...`` to the root app."""
    sub = typer.Typer(no_args_is_help=True, help="Structure → property models.")
    sub.command("fit")(fit_command)
    sub.command("evaluate")(evaluate_command)
    sub.command("predict")(predict_command)
    sub.command("nearest")(nearest_command)
    sub.command("duplicates")(duplicates_command)
    sub.command("template")(template_command)
    sub.command("validate")(validate_command)
    app.add_typer(
        sub,
        name="property",
        help="Structure → property models (crystal graph, boosted trees): uncertainty, OOD.",
    )
