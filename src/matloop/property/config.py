"""YAML configuration of ``matloop property fit`` (pydantic, unknown keys rejected)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CGCNNConfig(_Strict):
    """Crystal-graph network and its training (deep ensemble × MC dropout)."""

    atom_dim: int = Field(64, ge=4)
    n_conv: int = Field(3, ge=1)
    hidden_dim: int = Field(128, ge=4)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    cutoff: float = Field(6.0, gt=0.0, description="neighbour cutoff, Å")
    max_neighbors: int = Field(12, ge=1)
    gaussian_step: float = Field(0.2, gt=0.0, description="Gaussian centre spacing, Å")
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(30, ge=1, description="epochs without validation gain before stopping")
    max_time_s: float | None = Field(None, gt=0.0, description="wall-time limit per member, s")
    n_members: int = Field(3, ge=1, description="deep-ensemble size")
    mc_samples: int = Field(8, ge=0, description="MC-dropout passes per member (0: off)")


class GBTConfig(_Strict):
    """Histogram gradient boosting on composition + structure descriptors."""

    max_iter: int = Field(500, ge=1)
    learning_rate: float = Field(0.05, gt=0.0)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(10, ge=1)
    l2_regularization: float = Field(0.0, ge=0.0)
    uncertainty: Literal["quantile", "ensemble"] = "quantile"
    n_members: int = Field(5, ge=1, description="bootstrap members (ensemble, classification)")
    cutoff: float = Field(6.0, gt=0.0, description="neighbour cutoff of the descriptors, Å")


class PropertyConfig(_Strict):
    """Everything ``matloop property fit`` needs besides the data file."""

    targets: list[str] = Field(default_factory=list, description="property names (info keys)")
    task: Literal["regression", "classification"] = "regression"
    model: Literal["auto", "cgcnn", "gbt"] = Field(
        "auto", description="auto: fit gbt and cgcnn, keep the better on validation"
    )
    split: Literal["random", "composition", "prototype", "column"] = "random"
    split_column: str | None = Field(None, description="id/time column for split: column")
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    class_weight: Literal["balanced", "none"] = "balanced"
    ood_k: int = Field(5, ge=1, description="neighbours in the k-NN OOD score")
    ood_quantile: float = Field(0.95, gt=0.0, lt=1.0, description="validation quantile = flag")
    seed: int = 0
    cgcnn: CGCNNConfig = Field(default_factory=CGCNNConfig)
    gbt: GBTConfig = Field(default_factory=GBTConfig)


def load_config(path: str | os.PathLike | None) -> PropertyConfig:
    """Read and validate a YAML config (None: defaults)."""
    if path is None:
        return PropertyConfig()
    from matloop.utils.config import load_config_file

    return load_config_file(path, PropertyConfig)


def template() -> str:
    """A YAML config with every option at its default."""
    import yaml

    text = yaml.safe_dump(PropertyConfig().model_dump(), sort_keys=False)
    return "# matloop property fit --config FILE; unknown keys are rejected\n" + text
