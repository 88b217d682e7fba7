"""`matloop train`, `matloop evaluate` and `matloop models`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from matloop.cli._options import (
    ENERGY_KEY,
    FORCE,
    FORCES_KEY,
    PROGRESS,
    QUIET,
    STRESS_KEY,
    check_outputs,
)


def train_command(
    train: Path = typer.Option(..., "--train", help="Training data (extxyz, ASE .db, ...)."),
    out: Path = typer.Option(..., "--out", help="Output directory (model.pt, train_log.csv)."),
    valid: Path | None = typer.Option(
        None, "--valid", help="Validation data; default: a random split of --train."
    ),
    model: str | None = typer.Option(None, "--model", help="Model family (see `matloop models`)."),
    config: Path | None = typer.Option(None, "--config", help="Training YAML (matloop config)."),
    max_time: float | None = typer.Option(None, "--max-time", help="Time budget (seconds)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from DIR/checkpoint.pt."),
    init_model: Path | None = typer.Option(None, "--init-model", help="Warm-start from a model."),
    delta_base: str | None = typer.Option(
        None, "--delta-base", help="Learn reference − BASE (a calculator name, e.g. chgnet)."
    ),
    energy_key: str = ENERGY_KEY,
    forces_key: str = FORCES_KEY,
    stress_key: str = STRESS_KEY,
    progress: bool = PROGRESS,
    force: bool = typer.Option(False, "--force", help="Overwrite a model already in --out."),
) -> None:
    """Train a potential and write the model file and training log into --out.

    Everything is checked before training starts; an existing model in --out is kept unless
    --force (or --resume continues its checkpoint). Ctrl-C says how to resume.
    """
    from matloop.data import read_dataset
    from matloop.training import TrainConfig, load_train_config
    from matloop.training import train as run_training

    _check_numbers(max_time=max_time, seed=seed)
    cfg = load_train_config(config) if config is not None else TrainConfig()
    if model is not None and model != cfg.model.family:
        from matloop.training.config import ModelConfig

        cfg.model = ModelConfig(family=model)
        cfg = cfg.revalidated()  # a left-out force weight takes this family's default
    if delta_base is not None and (resume or init_model is not None):
        from matloop.errors import ConfigError

        raise ConfigError("--delta-base cannot be combined with --resume or --init-model")
    if valid is not None and Path(valid).resolve() == Path(train).resolve():
        from matloop.errors import ConfigError

        raise ConfigError(  # early stopping and the reported errors would measure the fit itself
            f"--valid {valid} is the training file; give held-out data, or leave --valid out "
            "for a random split of --train"
        )
    _check_out_dir(out, resume=resume, force=force, family=cfg.model.family)
    if init_model is not None:
        import matloop

        matloop.load(init_model)  # a missing or unsafe file fails before any work
    require_forces = cfg.training.loss.forces > 0
    keys = {"energy_key": energy_key, "forces_key": forces_key, "stress_key": stress_key}
    keys["require_forces"] = require_forces
    train_ds = read_dataset(train, **keys)
    valid_ds = read_dataset(valid, **keys) if valid is not None else None
    if valid_ds is not None:
        _check_coverage(train_ds.elements, valid_ds, "--valid")
    if (note := train_ds.volume_coverage_warning()) is not None:  # once the input is accepted
        import warnings

        warnings.warn(f"{train}: {note}", stacklevel=1)
    created = not out.exists()
    try:
        if delta_base is not None:
            from matloop.training.delta import train_delta

            result = train_delta(
                train_ds,
                delta_base,
                out,
                cfg,
                valid_data=valid_ds,
                seed=seed,
                max_time=max_time,
                progress=progress,
            )
        else:
            result = run_training(
                train_ds,
                out,
                cfg,
                valid_data=valid_ds,
                seed=seed,
                max_time=max_time,
                resume=resume,
                init_model=init_model,
                progress=progress,
            )
    except KeyboardInterrupt:
        raise _train_interrupted(out) from None
    except BaseException:
        if created and out.is_dir() and not (out / "checkpoint.pt").exists():
            import shutil

            shutil.rmtree(out, ignore_errors=True)  # a failed first run leaves nothing behind
        raise
    best = result.best_metrics
    typer.echo(f"model: {result.model_path}")
    typer.echo(f"log:   {result.log_path}")
    typer.echo(
        f"stopped after {result.epochs} epochs ({result.stopped_because}), "
        f"{result.seconds:.1f} s; best epoch {best.get('epoch')}"
    )
    typer.echo(_table({"train": _strip(best, "train_"), "valid": _strip(best, "valid_")}))
    if result.fit.get("stress_search"):
        typer.echo(_stress_search_line(result.fit["stress_search"]))
    if result.fit.get("basis_search"):
        typer.echo(_basis_search_line(result.fit["basis_search"]))


def _basis_search_line(found: dict) -> str:
    """The ace basis the validation split chose (``fit.basis_search``), in one line."""
    chosen = found["chosen"]
    others = [
        f"{c['cutoff']:g} Å / {c['n_coefficients']} coefficients: {c['valid_score']:.4g}"
        for c in found["candidates"]
        if c != chosen
    ]
    return (
        f"basis: cutoff {chosen['cutoff']:g} Å, {chosen['n_coefficients']} coefficients "
        f"(validation loss {chosen['valid_score']:.4g}; "
        + ("; ".join(others) or "no other candidate")
        + ")"
    )


def _stress_search_line(found: dict) -> str:
    """What the ace fit did with the training stresses (``fit.stress_search``), in one line."""
    if "skipped" in found:
        return f"stresses: not fitted ({found['skipped']})"
    tried = {t["stress_weight"]: t for t in found["tried"]}
    without = tried[0.0]["stress_rmse_gpa"]
    kept = found["stress_weight"]
    if kept > 0:
        return (
            f"stresses: fitted at loss weight {kept:g} (validation stress RMSE "
            f"{tried[kept]['stress_rmse_gpa']:.2f} GPa, {without:.2f} without them)"
        )
    return (
        f"stresses: left out (validation stress RMSE {without:.2f} GPa): fitting them cost the "
        "energies and forces more than it gained; set training.loss.stress to fit them anyway"
    )


def _check_numbers(**values: float | None) -> None:
    """Options that must be ≥ 0 (seed) or > 0 (times), named as on the command line."""
    from matloop.errors import ConfigError

    for name, value in values.items():
        if value is None:
            continue
        option = "--" + name.replace("_", "-")
        if name == "seed" and value < 0:
            raise ConfigError(f"{option} must be ≥ 0, got {value}")
        if name != "seed" and not (value > 0 and value < float("inf")):
            raise ConfigError(f"{option} must be a positive number of seconds, got {value}")


def _check_out_dir(out: Path, *, resume: bool, force: bool, family: str) -> None:
    """Refuse to clobber a trained model, or to resume without a (matching) checkpoint."""
    from matloop.errors import ConfigError
    from matloop.training.trainer import CHECKPOINT_FILENAME, check_resumable

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    checkpoint = out / CHECKPOINT_FILENAME
    if resume:
        if not checkpoint.exists():
            raise ConfigError(
                f"nothing to resume: {out} has no {CHECKPOINT_FILENAME}; train without --resume"
            )
        # refuses an unsafe or foreign file, or another family's run, before any work
        check_resumable(checkpoint, family)
    elif not force and ((out / "model.pt").exists() or checkpoint.exists()):
        raise ConfigError(
            f"{out} already holds a trained model; use --force to overwrite it, --resume to "
            "continue its checkpoint, or another --out"
        )


def _check_coverage(known: list[str], data, option: str, what: str = "the training data") -> None:
    """Every element of `data` must be in `known` (else its network would never be trained)."""
    from matloop.errors import UnknownElementError

    missing = sorted(set(data.elements) - set(known))
    if missing:
        raise UnknownElementError(
            f"{option} {data.source} contains {', '.join(missing)}, which {what} lacks "
            f"(it has {', '.join(known)})"
        )


def _train_interrupted(out: Path):
    from matloop.errors import Interrupted

    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        return Interrupted(
            f"interrupted: the last checkpoint is {checkpoint}; continue with the same "
            "command plus --resume"
        )
    return Interrupted(f"interrupted before the first checkpoint; nothing to resume in {out}")


def _strip(row: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}


_COLUMNS = [
    ("energy_mae_mev_per_atom", "E MAE meV/at"),
    ("energy_rmse_mev_per_atom", "E RMSE meV/at"),
    ("force_mae_ev_per_a", "F MAE eV/Å"),
    ("force_rmse_ev_per_a", "F RMSE eV/Å"),
    ("stress_mae_gpa", "σ MAE GPa"),
]


def _table(rows: dict[str, dict]) -> str:
    """Metric rows under one header; a row without any value (e.g. the closed-form ace fit has
    no per-epoch train errors) is left out rather than printed as dashes."""
    cols = [(k, h) for k, h in _COLUMNS if any(k in r for r in rows.values())]
    rows = {n: r for n, r in rows.items() if any(isinstance(r.get(k), float) for k, _ in cols)}
    width = max([len(name) for name in rows] + [8])
    header = f"{'':<{width}}  " + "  ".join(f"{h:>14}" for _, h in cols)
    lines = [header]
    for name, r in rows.items():
        cells = "  ".join(
            f"{r[k]:>14.4f}" if isinstance(r.get(k), float) else f"{'-':>14}" for k, _ in cols
        )
        lines.append(f"{name:<{width}}  {cells}")
    return "\n".join(lines)


def evaluate_command(
    model: Path = typer.Argument(..., help="Model file or the directory `matloop train` wrote."),
    data: Path = typer.Argument(..., help="Labelled data to evaluate on."),
    json_out: Path | None = typer.Option(None, "--json", help="Write metrics as JSON."),
    plot: Path | None = typer.Option(None, "--plot", help="Write an energy+force parity plot."),
    energy_key: str = ENERGY_KEY,
    forces_key: str = FORCES_KEY,
    stress_key: str = STRESS_KEY,
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Errors of a model on labelled data, overall and per config_type."""
    import matloop
    from matloop.data import read_dataset
    from matloop.evaluation import evaluate_predictions, parity_plot, predict, unmeasured
    from matloop.utils.files import atomic_write_text

    check_outputs(force, {"--json": json_out}, plot, {"MODEL": model, "DATA": data})
    calc = matloop.load(model)
    dataset = read_dataset(
        data,
        energy_key=energy_key,
        forces_key=forces_key,
        stress_key=stress_key,
        require_forces=False,
    )
    known = getattr(calc, "elements", None)
    if known is not None:
        _check_coverage(list(known), dataset, "data", what=f"the model {model}")
    pred = predict(calc, dataset, progress=not quiet)
    metrics = evaluate_predictions(pred)
    rows = {"all": metrics} | {f"  {k}": v for k, v in metrics["per_config_type"].items()}
    typer.echo(f"{metrics['n_structures']} structures, {metrics['n_atoms']} atoms")
    typer.echo(_table(rows))
    missing = unmeasured(dataset, metrics)
    if missing:  # an energies-only set gets its energy errors, and says what it lacks
        metrics["not_measured"] = missing
        typer.echo("not measured: " + ", ".join(f"{k} ({why})" for k, why in missing.items()))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(metrics, indent=2))
        typer.echo(f"metrics: {json_out}")
    if plot is not None:
        parity_plot(pred, plot, title=f"{Path(model).name} on {data.name}")
        typer.echo(f"parity plot: {plot}")


def models_command() -> None:
    """List the available model families, one per line, name first."""
    from matloop.models import available_families

    for name, description in available_families().items():
        typer.echo(f"{name}\t{description}")


def register(app: typer.Typer) -> None:
    """Attach train / evaluate / models to the root app."""
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
    app.command("models")(models_command)
