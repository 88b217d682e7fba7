"""Objectives of a design: ``NAME:max``, ``NAME:min``, ``NAME:target=VALUE`` and outcome limits
``NAME:within=LO,HI`` (a property that must stay inside limits, not optimised)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from matloop.errors import ConfigError, DataError


@dataclass(frozen=True)
class Objective:
    """One property and what to do with it (`kind` ∈ max, min, target, within)."""

    name: str
    kind: str
    target: float | None = None
    low: float | None = None
    high: float | None = None

    @property
    def optimised(self) -> bool:
        return self.kind != "within"

    def utility(self, y):
        """Map property values to 'larger is better' (works on numpy arrays and torch tensors)."""
        if self.kind == "max":
            return y
        if self.kind == "min":
            return -y
        if self.kind == "target":
            return -abs(y - self.target)
        raise ValueError(f"{self.name}: 'within' objectives are constraints, not utilities")

    def __str__(self) -> str:
        if self.kind == "target":
            return f"{self.name}:target={self.target:g}"
        if self.kind == "within":
            return f"{self.name}:within={self.low:g},{self.high:g}"
        return f"{self.name}:{self.kind}"


def parse_objective(spec: str) -> Objective:
    """Parse ``"nd:max"``, ``"Tg:min"``, ``"nd:target=1.75"`` or ``"Tg:within=700,850"``."""
    text = spec.strip()
    if ":" not in text:
        raise ConfigError(
            f"objective {spec!r}: expected NAME:max, NAME:min, NAME:target=VALUE or "
            "NAME:within=LO,HI"
        )
    name, what = text.rsplit(":", 1)
    name, what = name.strip(), what.strip().lower().replace(" ", "")
    if not name:
        raise ConfigError(f"objective {spec!r}: empty property name")
    if what in ("max", "maximise", "maximize"):
        return Objective(name, "max")
    if what in ("min", "minimise", "minimize"):
        return Objective(name, "min")
    if what.startswith("target="):
        try:
            value = float(what.split("=", 1)[1])
        except ValueError as exc:
            raise ConfigError(f"objective {spec!r}: target value is not a number") from exc
        if not np.isfinite(value):
            raise ConfigError(f"objective {spec!r}: the target must be a finite number")
        return Objective(name, "target", target=value)
    if what.startswith("within="):
        try:
            lo, hi = (float(v) for v in what.split("=", 1)[1].split(","))
        except ValueError as exc:
            raise ConfigError(f"objective {spec!r}: write within=LO,HI with numbers") from exc
        if np.isnan(lo) or np.isnan(hi):
            raise ConfigError(f"objective {spec!r}: LO and HI must be numbers, not nan")
        if hi <= lo:
            raise ConfigError(f"objective {spec!r}: need LO < HI")
        return Objective(name, "within", low=lo, high=hi)
    raise ConfigError(
        f"objective {spec!r}: unknown direction {what!r} (use max, min, target=VALUE or "
        "within=LO,HI)"
    )


def objective_values(
    frame, objectives: list[Objective], source: str = "data", what: str = "objectives"
) -> np.ndarray:
    """Observed values (rows × objectives, NaN where missing); missing columns are an error that
    calls the columns `what` ("objectives", or "properties" where the user named properties)."""
    cols = list(frame.columns)
    missing = [o.name for o in objectives if o.name not in cols]
    if missing:
        close = {m: difflib.get_close_matches(m, cols, n=1, cutoff=0.5) for m in missing}
        hint = "".join(f" ({m!r}: did you mean {c[0]!r}?)" for m, c in close.items() if c)
        raise DataError(f"{source}: no column for the {what} {missing}{hint}; columns are {cols}")
    out = np.empty((len(frame), len(objectives)))
    for j, o in enumerate(objectives):
        try:
            out[:, j] = np.asarray(frame[o.name], dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: column {o.name!r} is not numeric: {exc}") from exc
    # NaN (an empty cell) means "not measured"; an infinite value is a broken measurement
    inf = np.argwhere(np.isinf(out))
    if inf.size:
        r, j = inf[0]
        raise DataError(
            f"{source}: row {r + 1} has an infinite value of {objectives[j].name!r} "
            f"({out[r, j]:g}); leave the cell empty if it was not measured"
        )
    return out


def unmodelled_columns(data, inputs, objectives: list[Objective]) -> list[str]:
    """Numeric columns of the table `data` that are neither `inputs` nor objectives (e.g. a
    process temperature left out of the design): the model does not see them."""
    import pandas as pd

    used = set(inputs) | {o.name for o in objectives}
    return [c for c in data.columns if c not in used and pd.api.types.is_numeric_dtype(data[c])]


def pareto_mask(utilities: np.ndarray) -> np.ndarray:
    """Boolean mask of non-dominated rows (all columns 'larger is better'; NaN rows excluded)."""
    u = np.asarray(utilities, dtype=float)
    ok = np.all(np.isfinite(u), axis=1)
    mask = np.zeros(len(u), dtype=bool)
    idx = np.flatnonzero(ok)
    for i in idx:
        others = u[idx]
        dominated = np.any(np.all(others >= u[i], axis=1) & np.any(others > u[i], axis=1))
        mask[i] = not dominated
    return mask
