"""One conversion of results to JSON-able data, used by every report and log writer."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """`obj` with numpy values as Python numbers/lists, NaN/±inf as ``None``, paths as text.

    Dict keys become strings; pydantic models are dumped; anything else that JSON cannot hold
    (a calculator, a function) becomes its ``repr`` so that a log never fails to write.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return to_jsonable(obj.model_dump(mode="json"))
    return repr(obj)
