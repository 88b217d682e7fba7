"""Reading numeric columns from CSV files with messages that name the file, line and column."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from matloop.errors import DataError


def read_columns(
    path: str | os.PathLike, columns: list[str] | tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Read the named numeric columns of a CSV file (header row first) as float64 arrays.

    Raises :class:`DataError` naming the file, line and column for a missing file header, a missing
    column, an empty table, a non-numeric or non-finite value.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file", str(path))
    columns = list(dict.fromkeys(columns))  # a name asked for twice is read once
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text CSV file ({exc.reason})") from exc
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DataError(f"{path}: empty file (expected a header row with {', '.join(columns)})")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}; "
            f"the file has {', '.join(repr(h) for h in header)}"
        )
    repeated = [c for c in columns if header.count(c) > 1]
    if repeated:  # which of the two is meant cannot be told
        raise DataError(
            f"{path}: the header names column(s) {', '.join(repr(c) for c in repeated)} "
            "more than once"
        )
    index = {c: header.index(c) for c in columns}
    out: dict[str, list[float]] = {c: [] for c in columns}
    # csv line numbers: blank lines were dropped, so recompute from the original text
    line_numbers = [i + 1 for i, line in enumerate(text.splitlines()) if line.strip()]
    for row_no, row in enumerate(rows[1:], start=1):
        line = line_numbers[row_no] if row_no < len(line_numbers) else row_no + 1
        for c in columns:
            j = index[c]
            raw = row[j].strip() if j < len(row) else ""
            if raw == "":
                raise DataError(f"{path}, line {line}, column {c!r}: empty value")
            try:
                value = float(raw)
            except ValueError:
                raise DataError(
                    f"{path}, line {line}, column {c!r}: {raw!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise DataError(f"{path}, line {line}, column {c!r}: {raw!r} is not finite")
            out[c].append(value)
    if not out[columns[0]]:
        raise DataError(f"{path}: no data rows after the header")
    return {c: np.asarray(v, dtype=float) for c, v in out.items()}


def write_columns(path: str | os.PathLike, data: dict[str, np.ndarray | list]) -> None:
    """Write equal-length columns to a CSV file atomically (full float precision)."""
    from matloop.utils.files import atomic_path

    names = list(data)
    n = len(data[names[0]]) if names else 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(names)
        for i in range(n):
            writer.writerow([_fmt(data[c][i]) for c in names])


def _fmt(value) -> str:
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


FORMAT = "matloop-surrogate"
FORMAT_VERSION = 2  # 2: JSON + arrays (.npz, no pickle); 1 was a joblib pickle and is refused


def save_surrogate(
    model, path: str | os.PathLike, x_columns=None, y_column=None, **metadata
) -> None:
    """Save a fitted surrogate as plain data (JSON metadata + arrays, no pickle), atomically."""
    import sklearn

    from matloop._version import __version__
    from matloop.utils.safe_io import ESTIMATOR_KEY, estimator_to_array, save_bundle

    meta = {
        "matloop_version": __version__,
        "sklearn_version": sklearn.__version__,
        "x_columns": list(x_columns) if x_columns is not None else None,
        "y_column": y_column,
        "metadata": metadata,
    }
    arrays = {ESTIMATOR_KEY: estimator_to_array(model)}
    save_bundle(path, FORMAT, FORMAT_VERSION, meta, arrays)


def load_surrogate(path: str | os.PathLike, with_info: bool = False):
    """Load a surrogate written by :func:`save_surrogate`; :class:`ModelFileError` if unusable.

    Nothing in the file is unpickled: other formats (joblib, pickle) are refused. With
    ``with_info=True`` returns ``(model, info)`` where info holds the columns and versions.
    """
    import warnings

    import sklearn

    from matloop.errors import ModelFileError
    from matloop.utils.safe_io import ESTIMATOR_KEY, estimator_from_array, load_bundle

    info, arrays = load_bundle(path, FORMAT, FORMAT_VERSION, "surrogate model")
    if ESTIMATOR_KEY not in arrays:
        raise ModelFileError(f"{path}: the surrogate file holds no model")
    model = estimator_from_array(arrays[ESTIMATOR_KEY], str(path))
    if info.get("sklearn_version") != sklearn.__version__:
        warnings.warn(
            f"{path} was written with scikit-learn {info.get('sklearn_version')}, "
            f"this is {sklearn.__version__}; predictions may differ",
            UserWarning,
            stacklevel=2,
        )
    return (model, info) if with_info else model
