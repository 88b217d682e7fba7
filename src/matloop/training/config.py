"""Training configuration (pydantic; unknown keys are rejected with the list of valid ones)."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    create_model,
    model_validator,
)

from matloop.errors import ConfigError
from matloop.models import FAMILIES, check_family
from matloop.utils.config import format_validation_error as format_validation_error
from matloop.utils.config import load_config_file
from matloop.utils.config import load_yaml as load_yaml
from matloop.utils.config import parse_config as parse_config


class LossWeights(BaseModel):
    """Loss = energy·MSE(E/atom, eV²) + forces·MSE(F, (eV/Å)²) + stress·MSE(σ, (eV/Å³)²).

    Left out of a :class:`TrainConfig`, ``forces`` is the family's default (``ace`` 0.005, the
    others 0.02; ``FamilySpec.force_weight``).
    """

    model_config = ConfigDict(extra="forbid")

    energy: float = Field(1.0, ge=0.0)
    forces: float = Field(
        0.02, ge=0.0, description="default by family when left out: ace 0.005, others 0.02"
    )
    stress: float = Field(0.0, ge=0.0, description="stress MSE is in (eV/Å³)²; try 10–1000")


DEFAULT_FAMILY = "ace"


class ModelConfig(BaseModel):
    """Which family and its typed hyper-parameters (see `matloop models`).

    One subclass per registered family (:data:`FAMILY_CONFIGS`), chosen by ``family``: in a
    :class:`TrainConfig` the choice is a discriminated union, so a misspelled parameter is
    reported with that family's valid keys. ``ModelConfig(family="painn", params={...})`` builds
    the family's subclass.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    family: str = Field(DEFAULT_FAMILY, description="model family (`matloop models`)")
    params: BaseModel = Field(description="family hyper-parameters")

    def __new__(cls, /, **data: Any) -> ModelConfig:
        if cls is ModelConfig:  # the family's subclass, as in a config file
            cls = FAMILY_CONFIGS[check_family(data.get("family", DEFAULT_FAMILY)).name]
        return super().__new__(cls)

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> ModelConfig:
        if cls is ModelConfig:  # the family's subclass
            return TypeAdapter(FamilyChoice).validate_python(obj, **kwargs)
        return super().model_validate(obj, **kwargs)

    def family_params(self) -> BaseModel:
        """A copy of the family's parameters (the model may fill in data-derived values)."""
        return self.params.model_copy(deep=True)


def _checked_family(family: Any) -> str:
    if not isinstance(family, str):
        raise ValueError(f"model family must be a name, got {family!r}")
    try:
        return check_family(family).name
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _family_config(name: str, params: type[BaseModel]) -> type[ModelConfig]:
    return create_model(
        f"{name.capitalize()}ModelConfig",
        __base__=ModelConfig,
        __doc__=f"The {name} family and its parameters.",
        family=(Literal[name], name),  # type: ignore[valid-type]
        params=(params, Field(default_factory=params, description=f"{name} hyper-parameters")),
    )


def _with_family(data: Any) -> Any:
    """Fill in the default family and check it before the union picks the subclass."""
    if isinstance(data, dict):
        data = {"family": DEFAULT_FAMILY, **data}
        _checked_family(data["family"])
    return data


#: family name → its :class:`ModelConfig` subclass (``params`` typed as the family's ``Params``)
FAMILY_CONFIGS: dict[str, type[ModelConfig]] = {
    name: _family_config(name, spec.params) for name, spec in FAMILIES.items()
}
globals().update({cls.__name__: cls for cls in FAMILY_CONFIGS.values()})  # picklable by name

#: the model section of a training config: one :class:`ModelConfig` subclass per family
FamilyChoice = Annotated[
    Union[tuple(FAMILY_CONFIGS.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="family"),
    BeforeValidator(_with_family),
]


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
    num_threads: int | None = Field(
        None, ge=1, description="torch threads; default: MATLOOP_NUM_THREADS or 1"
    )
    checkpoint_every: int = Field(10, ge=1, description="epochs between checkpoints")
    seed: int = 0
    loss: LossWeights = Field(default_factory=LossWeights)


class TrainConfig(BaseModel):
    """Everything `matloop train` needs besides the data."""

    model_config = ConfigDict(extra="forbid")

    model: FamilyChoice = Field(default_factory=lambda: FAMILY_CONFIGS[DEFAULT_FAMILY]())
    training: TrainingParams = Field(default_factory=TrainingParams)
    reference_energies: dict[str, float] | Literal["fit"] = Field(
        "fit", description="E0 per element (eV) or 'fit' (least squares on the training set)"
    )

    @model_validator(mode="after")
    def _family_force_weight(self) -> TrainConfig:
        loss = self.training.loss
        if "forces" not in loss.model_fields_set:
            # written past pydantic's bookkeeping so that it stays "left out": a copy validated
            # for another family (revalidated) takes that family's default instead
            loss.__dict__["forces"] = FAMILIES[self.model.family].force_weight
        return self

    def revalidated(self) -> TrainConfig:
        """This configuration checked again after attribute assignments (which bypass the
        checks), with a left-out force weight resolved for the family it has now."""
        data = self.model_dump()
        if "forces" not in self.training.loss.model_fields_set:
            del data["training"]["loss"]["forces"]
        return parse_config(data, TrainConfig, "training config")


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Read and validate a training YAML file."""
    return load_config_file(path, TrainConfig)


def train_config_template(family: str = "ace") -> str:
    """A commented YAML template with every default filled in, for model family `family`."""
    config = TrainConfig(model=ModelConfig(family=family))
    header = (
        "# matloop training configuration (units: eV, Å; loss weights per MSE term)\n"
        "# validate with: matloop config validate FILE\n"
    )
    return header + yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
