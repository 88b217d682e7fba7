"""Reference labelling: prepare → run → parse with a status, error handlers and validation."""

from __future__ import annotations

from matloop.labelling.base import (
    Attempt,
    Labeller,
    LabelResult,
    LabelStatus,
    LabelTimeout,
    ScfConvergenceError,
    ValidationLimits,
    validate_result,
)
from matloop.labelling.calculator import (
    DEFAULT_HANDLERS,
    CalculatorLabeller,
    handlers_for,
    make_labeller,
)

__all__ = [
    "Attempt",
    "CalculatorLabeller",
    "DEFAULT_HANDLERS",
    "LabelResult",
    "LabelStatus",
    "LabelTimeout",
    "Labeller",
    "ScfConvergenceError",
    "ValidationLimits",
    "handlers_for",
    "make_labeller",
    "validate_result",
]
