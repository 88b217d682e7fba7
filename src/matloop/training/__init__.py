"""Training of potentials: configuration, loss, optimisation, checkpoints.

The configuration classes import without torch; :func:`train` and :class:`TrainResult` (torch)
are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from matloop.training.config import (
    LossWeights,
    ModelConfig,
    TrainConfig,
    TrainingParams,
    load_train_config,
    train_config_template,
)

if TYPE_CHECKING:
    from matloop.training.trainer import TrainResult, train


def __getattr__(name: str) -> Any:
    if name in ("TrainResult", "train"):
        from matloop.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LossWeights",
    "ModelConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingParams",
    "load_train_config",
    "train",
    "train_config_template",
]
