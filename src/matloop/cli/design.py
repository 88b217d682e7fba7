"""CLI for matloop.design: ``matloop design suggest | fit | evaluate | predict``."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer

from matloop.cli._options import FORCE, QUIET, refuse_overwrites

_HELP = "Composition design: property models with uncertainty and Bayesian optimisation."


def _read_csv(path: Path, what: str = "data"):
    import pandas as pd

    from matloop.errors import DataError

    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        frame = pd.read_csv(path, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what} as CSV: {exc}") from exc
    if frame.shape[1] < 2:  # e.g. an extxyz file: its first line parses as one column
        raise DataError(
            f"{path}: {what} is not a comma-separated table (one column, {list(frame.columns)}); "
            "give a CSV file with a header row of column names"
        )
    return frame


def _check_counts(**counts: int | None) -> None:
    """Counts given on the command line (--members, --trees) must be ≥ 1."""
    from matloop.errors import ConfigError

    for name, value in counts.items():
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be ≥ 1, got {value}")


@contextlib.contextmanager
def _quiet_model_internals() -> Iterator[None]:
    """Silence BoTorch/GPyTorch's numerical notices (jitter added, optimiser restarts, input
    scaling hints) while suggesting: they are not actionable and would bury the suggestions.
    Every other warning (the space-filling notice, sklearn's) still reaches the CLI's one
    warning printer, ``cli._errors.show_warnings``, which wraps every command."""
    from botorch.exceptions.warnings import BotorchWarning
    from gpytorch.utils.warnings import GPInputWarning
    from linear_operator.utils.warnings import NumericalWarning

    with warnings.catch_warnings():
        for category in (BotorchWarning, GPInputWarning, NumericalWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


def suggest_command(
    data: Path = typer.Option(..., "--data", help="Observed rows: input columns + properties."),
    space: Path | None = typer.Option(
        None,
        "--space",
        help="space.yaml (components, bounds, total, ...); optional with "
        "--candidates (then it filters the pool).",
    ),
    candidates: Path | None = typer.Option(
        None,
        "--candidates",
        help="Finite pool (CSV) to pick from; its columns other than the "
        "objectives are the inputs (fractions or process parameters).",
    ),
    objective: list[str] = typer.Option(
        ..., "--objective", help="NAME:max | NAME:min | NAME:target=VALUE | NAME:within=LO,HI"
    ),
    batch: int = typer.Option(1, "--batch", min=1, help="Number of suggestions (q-batch)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    acquisition: str = typer.Option(
        "auto",
        "--acquisition",
        help="auto | logei | ei | pi | ucb | nehvi (auto: logei, nehvi if >1).",
    ),
    beta: float | None = typer.Option(
        None,
        "--beta",
        min=0.0,
        help="UCB exploration weight, kappa = sqrt(beta) (default 4; 1 with --candidates, "
        "where auto is UCB for one max/min objective).",
    ),
    model: str = typer.Option("gp", "--model", help="Surrogate for --candidates: gp | rf."),
    input_warp: str | None = typer.Option(
        None,
        "--input-warp",
        help="GP inputs of --candidates: auto (the default: where they are mixture fractions "
        "with one total, a learned warp per input and the redundant last fraction left out) "
        "| on | off.",
    ),
    restarts: int = typer.Option(8, "--restarts", min=1, help="Optimiser restarts (effort)."),
    raw_samples: int = typer.Option(
        256, "--raw-samples", min=8, help="Random feasible points scored to seed the optimiser."
    ),
    out: Path = typer.Option(..., "--out", help="Output CSV (one row per suggestion)."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Ask: propose the next experiments (Bayesian optimisation, BoTorch), from a design space
    or from a finite pool of candidates."""
    from matloop.design.bo import suggest
    from matloop.design.objectives import parse_objective
    from matloop.design.space import load_space
    from matloop.errors import ConfigError
    from matloop.utils.files import atomic_path

    inputs = {"--data": data, "--space": space, "--candidates": candidates}
    refuse_overwrites(force, {"--out": out}, inputs)
    if space is None and candidates is None:
        raise ConfigError("give --space (continuous design) or --candidates (a finite pool)")
    warp = _input_warp_setting(input_warp, candidates)
    if candidates is None and model != "gp":
        raise ConfigError(
            f"--model {model}: only --candidates (a finite pool) can use another surrogate; "
            "a --space design uses a Gaussian process"
        )
    beta_kw = {} if beta is None else {"beta": beta}  # else each ask step's own default
    objs = [parse_objective(s) for s in objective]
    sp = load_space(space) if space is not None else None
    frame = _read_csv(data)
    pool = _read_csv(candidates, "candidates") if candidates is not None else None
    with _quiet_model_internals():
        if pool is not None:
            res = _suggest_pool(
                frame,
                pool,
                objs,
                sp,
                batch=batch,
                seed=seed,
                model=model,
                acquisition=acquisition,
                beta_kw=beta_kw,
                data=data,
                candidates=candidates,
                input_warp=warp,
                progress=not quiet,
            )
        else:
            res = suggest(
                frame,
                sp,
                objs,
                batch=batch,
                seed=seed,
                acquisition=acquisition,
                num_restarts=restarts,
                raw_samples=raw_samples,
                source=str(data),
                progress=not quiet,
                **beta_kw,
            )
    with atomic_path(out) as tmp:
        table = res.table.copy()
        cols = [c for c in table.columns if c.startswith("pred_") or c == "acquisition"]
        _six_digits(table, cols).to_csv(tmp, index=False)
    for m in res.messages:
        if "space-filling" not in m:
            typer.echo(m)
    typer.echo(f"{len(res.table)} suggestion(s) ({res.acquisition}) written to {out}")


def _input_warp_setting(value: str | None, candidates: Path | None) -> bool | str:
    """``--input-warp`` as `suggest_from_pool` takes it (True, False or "auto")."""
    from matloop.errors import ConfigError

    if value is None:
        return "auto"
    if candidates is None:
        raise ConfigError("--input-warp applies to --candidates (a finite pool) only")
    settings = {"auto": "auto", "on": True, "off": False}
    if value not in settings:
        raise ConfigError(f"--input-warp must be auto, on or off, got {value!r}")
    return settings[value]


def _suggest_pool(
    frame,
    pool,
    objs,
    sp,
    *,
    batch,
    seed,
    model,
    acquisition,
    beta_kw,
    data,
    candidates,
    input_warp,
    progress,
):
    """Pool-based ask; with a space, candidate rows outside it are dropped first."""
    import numpy as np

    from matloop.design.pool import suggest_from_pool
    from matloop.errors import DataError

    dropped = 0
    kept = None  # rows of the --candidates file that are inside the space
    if sp is not None:
        # a forbidden component without a column is 0, as in --data
        missing = [c for c in sp.names if c not in pool.columns and c not in sp.forbidden]
        if missing:
            raise DataError(f"{candidates}: no column(s) {missing} of the space")
        try:
            amounts = pool.reindex(columns=sp.names, fill_value=0.0).to_numpy(float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{candidates}: component columns are not numeric: {exc}") from None
        # the sum may be off by the space's sum_tolerance, as for observed rows (rounded mol %)
        problems = [
            sp.check_point(r, atol=1e-6 * max(1.0, sp.total), sum_atol=sp.sum_tolerance)
            for r in amounts
        ]
        kept = np.flatnonzero([not p for p in problems])
        dropped = len(pool) - len(kept)
        if len(pool) and not len(kept):
            raise DataError(
                f"{candidates}: none of the {len(pool)} candidate rows is inside the space "
                f"(row 1: {'; '.join(problems[0])})"
            )
        pool = pool.iloc[kept].reset_index(drop=True)
    res = suggest_from_pool(
        frame,
        pool,
        objs,
        batch=batch,
        seed=seed,
        model=model,
        acquisition=acquisition,
        input_warp=input_warp,
        drop_simplex=input_warp,
        data_name=str(data),
        pool_name=str(candidates),
        progress=progress,
        **beta_kw,
    )
    if kept is not None:  # pool_row: the row of the --candidates file, not of the filtered pool
        res.table["pool_row"] = kept[res.table["pool_row"].to_numpy(int)]
    if dropped:
        res.messages.append(f"{dropped} candidate(s) outside the space were skipped")
    return res


def _load_table(
    data: Path, properties: list[str], components: str | None, basis: str, normalise: bool
):
    from matloop.compositions import read_composition_table
    from matloop.design.objectives import Objective, objective_values

    frame = _read_csv(data)
    comps = [c.strip() for c in components.split(",")] if components else None
    objectives = [Objective(p, "max") for p in properties]
    Y = objective_values(frame, objectives, source=str(data), what="properties")
    table = read_composition_table(
        frame, comps, basis=basis, normalise_rows=normalise, source=str(data), ignore=properties
    )
    return frame, table, Y


_PROP = typer.Option(..., "--property", "-p", help="Property column (repeat for several).")
_COMPS = typer.Option(
    None,
    "--components",
    help="Comma-separated component columns (default: every column named like a chemical formula).",
)
_BASIS = typer.Option("mol", "--basis", help="Composition units: mol or wt (converted to mol %).")
_NORM = typer.Option(False, "--normalise", help="Rescale rows to sum to 100 instead of failing.")
_MODEL = typer.Option("hgb", "--model", help="gp | rf | et | hgb | nn | multitask")
_FEAT = typer.Option(
    "stats",
    "--features",
    help="stats (fractions + element statistics) | glass (stats + oxide-glass structure "
    "descriptors: NBO/T, former/modifier fractions, field strength …) | fractions",
)
_MEMBERS = typer.Option(
    None, "--members", help="Ensemble members (hgb, nn: 5; multitask: 2, as benchmarked)."
)
_TREES = typer.Option(200, "--trees", help="Trees (rf, et).")


def fit_command(
    data: Path = typer.Option(..., "--data", help="CSV with component columns and properties."),
    prop: list[str] = _PROP,
    components: str | None = _COMPS,
    basis: str = _BASIS,
    normalise: bool = _NORM,
    model: str = _MODEL,
    features: str = _FEAT,
    members: int | None = _MEMBERS,
    trees: int = _TREES,
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(
        ..., "--out", help="Model file to write (.npz: JSON and arrays, no pickle)."
    ),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Fit a composition → properties model (missing values allowed per property)."""
    from matloop.design.models import PropertyModel
    from matloop.design.splits import composition_groups

    _check_counts(members=members, trees=trees)
    _, table, Y = _load_table(data, prop, components, basis, normalise)
    refuse_overwrites(force, {"--out": out}, {"--data": data})
    m = PropertyModel(
        table.components,
        prop,
        kind=model,
        features=features,
        n_members=members,
        n_estimators=trees,
        seed=seed,
        progress=not quiet,
    )
    m.fit(table.values, Y, groups=composition_groups(table.values, table.components))
    m.basis_ = basis  # the units of --data, so that `predict` reads its --data the same way
    m.save(out)
    counts = ", ".join(f"{p}: {n}" for p, n in zip(prop, m.n_train_, strict=True))
    typer.echo(f"fitted {model} model on {len(table.values)} rows ({counts}); saved to {out}")


def predict_command(
    model: Path = typer.Option(..., "--model", help="Model file from `matloop design fit`."),
    data: Path = typer.Option(..., "--data", help="CSV with the model's component columns."),
    basis: str | None = typer.Option(
        None,
        "--basis",
        help="Composition units of --data: mol or wt (default: those of the data the model "
        "was fitted on).",
    ),
    normalise: bool = _NORM,
    out: Path = typer.Option(..., "--out", help="CSV with pred_NAME_mean / pred_NAME_std added."),
    force: bool = FORCE,
) -> None:
    """Predict properties (mean ± std) for compositions with a fitted model."""
    from matloop.compositions import read_composition_table
    from matloop.design.models import PropertyModel
    from matloop.errors import DataError
    from matloop.utils.files import atomic_path

    refuse_overwrites(force, {"--out": out}, {"--model": model, "--data": data})
    m = PropertyModel.load(model)
    basis = basis or getattr(m, "basis_", "mol")  # files written before basis_ were mol %
    frame = _read_csv(data)
    try:
        table = read_composition_table(
            frame, m.components, basis=basis, normalise_rows=normalise, source=str(data)
        )
    except DataError as exc:
        unknown = _unknown_components(frame, m)
        if not unknown:
            raise
        raise DataError(
            f"{data}: component column(s) {unknown} are not among the model's components "
            f"{list(m.components)}, so the model cannot predict these compositions ({exc})"
        ) from None
    mean, std = m.predict(table.values, return_std=True)
    for j, p in enumerate(m.properties):
        frame[f"pred_{p}_mean"] = mean[:, j]
        frame[f"pred_{p}_std"] = std[:, j]
    with atomic_path(out) as tmp:  # the input columns as they were read, predictions to 6 digits
        _six_digits(frame, [c for c in frame.columns if c.startswith("pred_")]).to_csv(
            tmp, index=False
        )
    typer.echo(f"predicted {len(frame)} rows → {out}")


def _unknown_components(frame, model) -> list[str]:
    """Columns of `frame` named like a chemical formula, with non-zero amounts, that are not
    among the model's components (nor its properties)."""
    import pandas as pd

    from matloop.compositions.core import _is_formula

    known = set(model.components) | set(model.properties_)
    return [
        c
        for c in frame.columns
        if c not in known
        and _is_formula(c)
        and pd.api.types.is_numeric_dtype(frame[c])
        and frame[c].fillna(0).abs().sum() > 0
    ]


def evaluate_command(
    data: Path = typer.Option(..., "--data", help="CSV with component columns and properties."),
    prop: list[str] = _PROP,
    split: str = typer.Option("group", "--split", help="random | group | family | time"),
    folds: int = typer.Option(5, "--folds", min=2),
    time_column: str | None = typer.Option(None, "--time-column", help="Order column for time."),
    components: str | None = _COMPS,
    basis: str = _BASIS,
    normalise: bool = _NORM,
    model: str = _MODEL,
    features: str = _FEAT,
    members: int | None = _MEMBERS,
    trees: int = _TREES,
    seed: int = typer.Option(0, "--seed"),
    json_out: Path | None = typer.Option(None, "--json", help="Write metrics as JSON."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Cross-validate a property model: MAE, RMSE, R², 95 % coverage, top-k recall."""
    import numpy as np

    from matloop.design.models import PropertyModel
    from matloop.design.validation import cross_validate
    from matloop.utils.files import atomic_write_text

    _check_counts(members=members, trees=trees)
    refuse_overwrites(force, {"--json": json_out}, {"--data": data})
    frame, table, Y = _load_table(data, prop, components, basis, normalise)
    times = _times(frame, time_column, data) if split == "time" else None

    def make():
        return PropertyModel(
            table.components,
            prop,
            kind=model,
            features=features,
            n_members=members,
            n_estimators=trees,
            seed=seed,
            progress=not quiet,
        )

    res = cross_validate(
        make,
        table.values,
        Y,
        table.components,
        prop,
        split=split,
        n_splits=folds,
        times=times,
        seed=seed,
        progress=None if quiet else lambda line: typer.echo(line, err=True),
    )
    typer.echo(f"{split} split, {res['n_splits']} folds, model {model}")
    typer.echo(f"{'property':<14}{'n':>7}{'MAE':>11}{'RMSE':>11}{'R2':>8}{'cov95':>8}{'topk':>7}")
    for p, m in res["properties"].items():
        typer.echo(
            f"{p:<14}{m['n']:>7}{m['mae']:>11.4g}{m['rmse']:>11.4g}{m['r2']:>8.3f}"
            f"{m['coverage95']:>8.3f}{m['topk_recall']:>7.2f}"
        )
    if json_out:
        clean = {k: v for k, v in res.items() if not isinstance(v, np.ndarray)}
        clean.update({"model": model, "features": features, "data": str(data)})
        atomic_write_text(json_out, json.dumps(clean, indent=2, default=float))


def _times(frame, column: str | None, data: Path):
    """The --time-column as numbers (e.g. a year or run number) or datetimes (date strings are
    parsed, not sorted as text: "10/1/2020" comes after "2/1/2020"); gaps are an error."""
    import pandas as pd

    from matloop.errors import DataError

    if not column or column not in frame.columns:
        raise DataError(f"--split time needs --time-column naming a column of {data}")
    values = frame[column]
    if not pd.api.types.is_numeric_dtype(values):
        try:
            values = pd.to_datetime(values)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{data}: --time-column {column!r} holds neither numbers nor dates ({exc})"
            ) from None
    gaps = [int(i) + 1 for i in values.index[values.isna()]]
    if gaps:
        raise DataError(f"{data}: --time-column {column!r} is empty in row(s) {gaps[:5]}")
    return values.to_numpy()


def inverse_command(
    model: Path = typer.Option(..., "--model", help="Model file from `matloop design fit`."),
    space: Path = typer.Option(..., "--space", help="space.yaml: allowed compositions."),
    target: list[str] = typer.Option(..., "--target", help="NAME=VALUE (repeat per property)."),
    tolerance: list[str] = typer.Option(
        [],
        "--tolerance",
        help="NAME=TOL: acceptable |property − target| (default: half the median predicted σ).",
    ),
    samples: int = typer.Option(20000, "--samples", min=100, help="Feasible compositions scored."),
    top: int = typer.Option(20, "--top", min=1, help="Rows in the ranked list."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", help="Ranked CSV of feasible compositions."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Inverse design: feasible compositions ranked by the chance to meet a target property set."""
    from matloop.design.inverse import inverse_design, parse_targets
    from matloop.design.models import PropertyModel
    from matloop.design.space import load_space
    from matloop.utils.files import atomic_path

    refuse_overwrites(force, {"--out": out}, {"--model": model, "--space": space})
    targets = parse_targets(target)
    tols = parse_targets(tolerance, "--tolerance")
    sp = load_space(space)
    m = PropertyModel.load(model)
    table = inverse_design(
        m,
        sp,
        targets,
        tolerances=tols,
        n_samples=samples,
        top=top,
        seed=seed,
        progress=not quiet,
    )
    with atomic_path(out) as tmp:  # compositions as rounded (Σ = total exactly)
        _six_digits(table, [c for c in table.columns if c not in sp.names]).to_csv(tmp, index=False)
    best = table.iloc[0]
    preds = ", ".join(
        f"{k} {best[f'pred_{k}_mean']:.4g} [{best[f'pred_{k}_lo95']:.4g}, "
        f"{best[f'pred_{k}_hi95']:.4g}]"
        for k in targets
    )
    typer.echo(
        f"scored {table.attrs['n_feasible_scored']} feasible compositions; best: {preds} "
        f"(P within tolerance {best['p_within_tolerance']:.2f})"
    )
    typer.echo(f"{len(table)} ranked composition(s) written to {out}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
    sub = typer.Typer(no_args_is_help=True, help=_HELP)
    sub.command("suggest")(suggest_command)
    sub.command("fit")(fit_command)
    sub.command("predict")(predict_command)
    sub.command("evaluate")(evaluate_command)
    sub.command("inverse")(inverse_command)
    app.add_typer(sub, name="design", help=_HELP)


def _six_digits(frame, columns: list[str]):
    """A copy of `frame` with the float `columns` rounded to 6 significant digits (model
    outputs); every other column is written as it was read."""
    import pandas as pd

    out = frame.copy()
    for c in columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].map(lambda v: float(f"{v:.6g}"))
    return out
