"""CLI commands for matloop.surrogate: `matloop surrogate fit` and `matloop surrogate predict`."""

from __future__ import annotations

from pathlib import Path

import typer

from matloop.cli._errors import show_warnings
from matloop.cli._options import FORCE, QUIET, check_plot_format, refuse_overwrites
from matloop.utils.progress import stage


def _columns(option: str, values: list[str]) -> list[str]:
    """Column names from a repeatable option (`--x A --x B`), each value also comma-separated
    (`--x A,B`); an empty name or one given twice is refused rather than dropped."""
    from matloop.errors import ConfigError

    cols: list[str] = []
    for value in values:
        parts = [c.strip() for c in value.split(",")]
        if not any(parts):
            raise ConfigError(f"{option} {value!r} names no column; give e.g. {option} Volume")
        if not all(parts):
            raise ConfigError(
                f"{option} {value!r} has an empty column name between commas; "
                f"write {option} {','.join(p for p in parts if p)!r} if that is what you meant"
            )
        cols.extend(parts)
    repeated = list(dict.fromkeys(c for c in cols if cols.count(c) > 1))
    if repeated:
        raise ConfigError(
            f"{option} names column(s) {', '.join(map(repr, repeated))} more than once"
        )
    return cols


def _gp_checked(key: str, kernel: str, n_inputs: int, ard: bool, n_rows: int) -> bool:
    """True for a GP the fit will accept: the one slow (O(n³)) model, so the one announced on
    stderr; its kernel is checked first so that a bad --kernel is still a single error line."""
    if key != "gp":
        return False
    from matloop.surrogate.models import make_kernel

    make_kernel(kernel, n_inputs, ard)
    return n_rows >= 2  # fewer: refused at once by the fit, with its own line


def fit_command(
    data: Path = typer.Argument(..., help="CSV file with a header row."),
    x: list[str] = typer.Option(
        ...,
        "--x",
        help="Input column; repeat for several (--x SiO2 --x Na2O) or comma-separate them.",
    ),
    y: list[str] = typer.Option(..., "--y", help="Target column (one; e.g. Energy)."),
    model: str = typer.Option("gp", "--model", help="poly | gp | ensemble"),
    degree: int = typer.Option(2, "--degree", help="Polynomial degree (poly, ensemble)."),
    kernel: str = typer.Option("rbf", "--kernel", help="GP kernel: rbf | matern32 | matern52 | rq"),
    ard: bool = typer.Option(False, "--ard", help="GP: one length scale per input column."),
    std_threshold: float | None = typer.Option(
        None, "--std-threshold", help="Flag predictions whose std exceeds this (units of y)."
    ),
    test_size: float = typer.Option(
        0.0, "--test-size", help="Hold out this fraction to report test metrics (0: none)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (GP restarts, bootstrap, split)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Model file to write (.npz: JSON and arrays, no pickle)."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="PNG of the mean and 95 % band (one input column only)."
    ),
    plot_range: str | None = typer.Option(
        None, "--plot-range", help="x range of the plot as MIN,MAX (e.g. 25,55)."
    ),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Fit a surrogate to columns of a CSV and save it; print training (and test) metrics."""
    import numpy as np

    from matloop.errors import ConfigError, DataError
    from matloop.surrogate import (
        dependent_inputs,
        holdout_evaluate,
        make_surrogate,
        read_columns,
        regression_metrics,
        save_surrogate,
    )

    xcols = _columns("--x", x)
    ycols = _columns("--y", y)
    if len(ycols) > 1:
        raise ConfigError(
            f"--y names {len(ycols)} columns ({', '.join(map(repr, ycols))}); a surrogate has one "
            "target: run `matloop surrogate fit` once per target"
        )
    y = ycols[0]
    if y in xcols:
        raise ConfigError(f"--y {y!r} is also an input column (--x); the target must differ")
    x_range = None
    if plot is not None:
        check_plot_format(plot)
    if plot is not None and len(xcols) != 1:
        raise ConfigError("--plot needs exactly one --x column")
    if plot_range:
        try:
            lo, hi = (float(p) for p in plot_range.split(","))
        except ValueError:
            raise ConfigError(f"--plot-range must be MIN,MAX, got {plot_range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ConfigError(f"--plot-range needs finite MIN < MAX, got {plot_range!r}")
        x_range = (lo, hi)
    if seed < 0:
        raise ConfigError(f"--seed must be ≥ 0, got {seed}")
    if std_threshold is not None and not (0 < std_threshold < float("inf")):
        raise ConfigError(
            f"--std-threshold must be a positive number (units of y), got {std_threshold}"
        )
    refuse_overwrites(force, {"--out": out, "--plot": plot}, {"DATA": data})
    kwargs: dict = {"std_threshold": std_threshold}
    key = model.strip().lower()
    if key == "gp":
        kwargs.update(kernel=kernel, ard=ard, random_state=seed)
    elif key == "ensemble":
        kwargs.update(random_state=seed)
    with show_warnings():
        cols = read_columns(data, [*xcols, y])
        X = np.column_stack([cols[c] for c in xcols])
        t = cols[y]
        est = make_surrogate(model, degree=degree, **kwargs)
        if key != "gp" and len(t) > 1:  # a GP copes with dependent inputs; polynomials cannot
            reason = dependent_inputs(X, xcols)
            if reason is not None:
                raise DataError(f"{data}: --model {key}: {reason}")
        slow = _gp_checked(key, kernel, len(xcols), ard, len(t))
        if not 0.0 <= test_size < 1.0:
            raise ConfigError(f"--test-size must be in [0, 1), got {test_size}")
        if test_size > 0:
            n_test = int(round(test_size * len(t)))
            if n_test < 1 or len(t) - n_test < 2:
                raise DataError(f"{data}: {len(t)} rows are too few for --test-size {test_size}")
            stage(slow and not quiet, f"fitting a GP on {len(t) - n_test} rows for the test…")
            _, test_metrics = holdout_evaluate(est, X, t, test_size=test_size, random_state=seed)
        stage(slow and not quiet, f"fitting a GP on {len(t)} rows…")
        est.fit(X, t)
        mean, std, _ = est.predict_with_flags(X)
        train_metrics = regression_metrics(t, mean, std)
        save_surrogate(
            est, out, x_columns=xcols, y_column=y, source=str(data), train_metrics=train_metrics
        )
    typer.echo(f"{data}: {len(t)} rows, {type(est).__name__} on {', '.join(xcols)} → {y}")
    typer.echo(
        f"  train: R² {train_metrics['r2']:.6f}, RMSE {train_metrics['rmse']:.4g}, "
        f"MAE {train_metrics['mae']:.4g}, 95 % coverage {train_metrics['coverage']:.2f}"
    )
    if test_size > 0:
        m = test_metrics
        typer.echo(
            f"  test ({m['n']} rows): R² {m['r2']:.6f}, RMSE {m['rmse']:.4g}, MAE {m['mae']:.4g}, "
            f"95 % coverage {m['coverage']:.2f}"
        )
    typer.echo(f"wrote {out}")
    if plot is not None:
        from matloop.surrogate import plot_band

        with show_warnings():
            plot_band(est, X, t, x_range=x_range, path=plot, xlabel=xcols[0], ylabel=y, label=model)
        typer.echo(f"wrote {plot}")


def predict_command(
    model_file: Path = typer.Argument(..., help="Model written by `matloop surrogate fit`."),
    data: Path = typer.Argument(..., help="CSV with the model's input column(s)."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write: inputs, mean, std, flag."),
    force: bool = FORCE,
) -> None:
    """Predict mean, std (1σ) and an extrapolation flag for each row of a CSV."""
    import numpy as np

    from matloop.errors import ModelFileError
    from matloop.surrogate import load_surrogate, read_columns, write_columns

    refuse_overwrites(force, {"--out": out}, {"MODEL_FILE": model_file, "DATA": data})
    with show_warnings():
        est, info = load_surrogate(model_file, with_info=True)
        xcols = info.get("x_columns")
        if not xcols:
            raise ModelFileError(f"{model_file}: the file does not record its input columns")
        cols = read_columns(data, xcols)
        X = np.column_stack([cols[c] for c in xcols])
        mean, std, flags = est.predict_with_flags(X)
        ycol = info.get("y_column") or "y"
        table = {c: cols[c] for c in xcols}
        table[f"{ycol}_mean"] = mean
        table[f"{ycol}_std"] = std
        table["extrapolation"] = flags
        write_columns(out, table)
    n_flag = int(np.sum(flags))
    typer.echo(f"wrote {out}: {len(mean)} predictions, {n_flag} flagged as extrapolation")
    if n_flag:
        typer.echo(
            f"warning: {n_flag} of {len(mean)} rows are outside the training domain "
            "(or above the std threshold); see the 'extrapolation' column",
            err=True,
        )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    sub = typer.Typer(no_args_is_help=True, help="Surrogate models with uncertainty.")
    sub.command("fit")(fit_command)
    sub.command("predict")(predict_command)
    app.add_typer(sub, name="surrogate", help="Surrogate models with uncertainty: fit, predict.")
