"""Training configuration (pydantic; unknown keys are rejected with the list of valid ones)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from matloop.errors import ConfigError


class LossWeights(BaseModel):
    """Loss = energy·MSE(E/atom, eV²) + forces·MSE(F, (eV/Å)²) + stress·MSE(σ, (eV/Å³)²)."""

    model_config = ConfigDict(extra="forbid")

    energy: float = Field(1.0, ge=0.0)
    forces: float = Field(0.02, ge=0.0)
    stress: float = Field(0.0, ge=0.0, description="stress MSE is in (eV/Å³)²; try 10–1000")


class ModelConfig(BaseModel):
    """Which family and its hyper-parameters (see `matloop models`)."""

    model_config = ConfigDict(extra="forbid")

    family: str = Field("ace", description="model family (`matloop models`)")
    params: dict[str, Any] = Field(default_factory=dict, description="family hyper-parameters")

    @model_validator(mode="after")
    def _check_params(self) -> ModelConfig:
        from matloop.models import get_family

        cls = get_family(self.family)
        try:
            cls.Params.model_validate(self.params)
        except ValidationError as exc:
            message = format_validation_error(exc, cls.Params, f"model.params ({self.family})")
            raise ValueError(message) from None
        return self

    def family_params(self):
        from matloop.models import get_family

        return get_family(self.family).Params.model_validate(self.params)


class TrainingParams(BaseModel):
    """Optimisation settings."""

    model_config = ConfigDict(extra="forbid")

    max_epochs: int = Field(3000, ge=1)
    batch_size: int = Field(4, ge=1, description="structures per optimiser step")
    learning_rate: float = Field(3e-3, gt=0)
    min_learning_rate: float = Field(1e-5, gt=0)
    lr_schedule: Literal["plateau", "budget"] = Field(
        "plateau",
        description="plateau: multiply by lr_factor after lr_patience epochs without improvement; "
        "budget: decay exponentially from learning_rate to min_learning_rate over max_time",
    )
    lr_factor: float = Field(0.5, gt=0, lt=1, description="learning-rate decay on plateau")
    lr_patience: int = Field(25, ge=1, description="epochs without improvement before decay")
    early_stopping_patience: int = Field(120, ge=1, description="epochs without improvement")
    weight_decay: float = Field(0.0, ge=0)
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    max_time: float | None = Field(None, gt=0, description="wall-clock budget (s)")
    dtype: Literal["float32", "float64"] = "float32"
    num_threads: int | None = Field(None, ge=1, description="torch threads; default: cores ≤ 4")
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints")
    seed: int = 0
    loss: LossWeights = Field(default_factory=LossWeights)


class TrainConfig(BaseModel):
    """Everything `matloop train` needs besides the data."""

    model_config = ConfigDict(extra="forbid")

    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingParams = Field(default_factory=TrainingParams)
    reference_energies: dict[str, float] | Literal["fit"] = Field(
        "fit", description="E0 per element (eV) or 'fit' (least squares on the training set)"
    )


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at `loc` (following nested pydantic models)."""
    current: Any = model
    for part in loc[:-1]:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return sorted(getattr(current, "model_fields", {}))


def format_validation_error(exc: ValidationError, root: type[BaseModel], source: str) -> str:
    """One line per problem; unknown keys list the valid ones."""
    parts = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        where = ".".join(str(x) for x in loc) or "<root>"
        if err.get("type") == "extra_forbidden":
            valid = _valid_keys(root, loc)
            hint = f" (valid keys here: {', '.join(valid)})" if valid else ""
            parts.append(f"unknown key '{where}'{hint}")
        else:
            parts.append(f"{where}: {err.get('msg')}")
    return f"{source}: " + "; ".join(parts)


def parse_config(data: Any, root: type[BaseModel], source: str) -> BaseModel:
    """Validate `data` as `root`, turning pydantic errors into one clear ConfigError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return root.model_validate(data)
    except ValidationError as exc:
        # a nested family params error: report the family's valid keys
        raise ConfigError(format_validation_error(exc, root, source)) from None
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_yaml(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from None


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a training YAML file."""
    return parse_config(load_yaml(path), TrainConfig, str(path))


def train_config_template(family: str = "ace") -> str:
    """A commented YAML template with every default filled in, for model family `family`."""
    from matloop.models import get_family

    params = get_family(family).Params().model_dump(mode="json")
    config = TrainConfig(model=ModelConfig(family=family, params=params))
    header = (
        "# matloop training configuration (units: eV, Å; loss weights per MSE term)\n"
        "# validate with: matloop config validate FILE\n"
    )
    return header + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
