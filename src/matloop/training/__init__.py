"""Training of potentials: configuration, loss, optimisation, checkpoints."""

from matloop.training.config import (
    LossWeights,
    ModelConfig,
    TrainConfig,
    TrainingParams,
    load_train_config,
    train_config_template,
)
from matloop.training.trainer import TrainResult, train

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
