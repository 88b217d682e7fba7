"""Configuration of an active-learning run (pydantic; unknown keys are rejected).

Units: temperatures K, time fs, forces and force uncertainties eV/Å, energies eV/atom (targets in
meV/atom where the name says so), pressures GPa, strains dimensionless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from matloop.active.explorers import StrategyConfig
from matloop.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceConfig(_Strict):
    """The reference labeller."""

    calculator: str = Field(
        description="built-in name (emt, sw, kumagai, pyscf, gpaw, espresso, vasp, tblite) or "
        "'module:function' returning an ASE calculator"
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="calculator keyword args")
    timeout_s: float | None = Field(None, gt=0, description="time limit per calculation (s)")
    max_retries: int = Field(3, ge=0, description="corrections tried before giving up")
    max_force: float = Field(50.0, gt=0, description="larger force components (eV/Å) are absurd")
    handlers: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="override the correction ladders {error_kind: [settings patch, ...]}"
    )
    compute_stress: bool | None = Field(None, description="default: for fully periodic cells")


class InitialConfig(_Strict):
    """Starting structures and the first batch of labels."""

    structures: str = Field(description="file of starting structures (any ASE-readable format)")
    n_label: int = Field(10, ge=1, description="structures labelled before the first training")
    rattle: float = Field(0.05, ge=0, description="random displacement (Å) of the first batch")


class ExploreConfig(_Strict):
    """MD exploration with the current committee (ASE Langevin)."""

    temperatures: list[float] = Field(default_factory=lambda: [300.0], description="K")
    steps: int = Field(200, ge=1, description="MD steps per walker")
    timestep_fs: float = Field(2.0, gt=0)
    friction: float = Field(0.02, gt=0, description="Langevin friction (1/fs)")
    walkers: int = Field(4, ge=1, description="walkers per iteration (cycling temperatures)")
    sample_interval: int = Field(10, ge=1, description="steps between candidate snapshots")
    strains: list[float] = Field(
        default_factory=lambda: [0.0], description="isotropic linear strains applied to starts"
    )
    pressures_gpa: list[float] | None = Field(
        None, description="if set, NPT (Berendsen) at these pressures instead of NVT"
    )
    uncertainty_limit: float = Field(
        1.0, gt=0, description="stop a walker when max atomic forces_std exceeds this (eV/Å)"
    )
    start_from_dataset: float = Field(
        0.5, ge=0, le=1, description="fraction of walkers started from labelled structures"
    )


class SelectConfig(_Strict):
    """Which explored snapshots to label."""

    threshold: float = Field(0.05, ge=0, description="min max-atomic forces_std (eV/Å)")
    max_per_iteration: int = Field(10, ge=1)
    diversity: Literal["fps", "none"] = "fps"
    descriptor: Literal["auto", "model", "simple"] = Field(
        "auto", description="model: calc.get_descriptors averaged per structure; simple: RDF"
    )


class ModelConfig(_Strict):
    """The committee of potentials trained every iteration."""

    family: str = "ace"
    committee: int = Field(
        4, ge=1, description="number of members; 1: one model with its own σ (ace, kernel)"
    )
    bootstrap: bool = True
    warm_start: bool = Field(True, description="start each member from its previous weights")
    train: dict[str, Any] = Field(
        default_factory=dict, description="overrides of matloop.training.TrainConfig"
    )
    max_time_s: float | None = Field(None, gt=0, description="training time limit per member")


class BudgetConfig(_Strict):
    max_labels: int = Field(200, ge=1, description="reference calculations, failures included")


class StopConfig(_Strict):
    max_iterations: int = Field(10, ge=1)
    uncertainty_target: float | None = Field(
        None, gt=0, description="stop when no explored snapshot exceeds this forces_std (eV/Å)"
    )
    test_force_mae_target: float | None = Field(None, gt=0, description="eV/Å")
    test_energy_mae_target_mev_per_atom: float | None = Field(None, gt=0)


class TestConfig(_Strict):
    __test__ = False  # not a pytest class
    data: str | None = Field(None, description="independent labelled set evaluated each iteration")


class ExecutionConfig(_Strict):
    workers: int = Field(1, ge=1, description="local worker processes for labelling")
    scheduler: str | None = Field(None, description="Dask scheduler address (or --scheduler)")
    connect_timeout_s: float = Field(10.0, gt=0)


class StateConfig(_Strict):
    database: str | None = Field(
        None, description="ASE database; default DIR/state.db (SQLite); postgresql://... allowed"
    )


class ActiveLearningConfig(_Strict):
    """An active-learning run: explore → select → label → retrain → stop."""

    seed: int = 0
    reference: ReferenceConfig
    initial: InitialConfig
    explore: ExploreConfig = Field(default_factory=ExploreConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    test: TestConfig = Field(default_factory=TestConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)

    @field_validator("seed")
    @classmethod
    def _seed(cls, v: int) -> int:
        if v < 0:
            raise ValueError("seed must be >= 0")
        return v

    @model_validator(mode="after")
    def _budget(self) -> ActiveLearningConfig:
        if self.initial.n_label > self.budget.max_labels:
            raise ValueError(
                f"initial.n_label ({self.initial.n_label}) exceeds budget.max_labels "
                f"({self.budget.max_labels})"
            )
        return self

    def resolve_paths(self, base: Path) -> ActiveLearningConfig:
        """Return a copy whose relative file paths are relative to `base` (the config's folder)."""
        data = self.model_dump()
        for section, key in (("initial", "structures"), ("test", "data")):
            value = data[section][key]
            if value and not Path(value).is_absolute() and "://" not in value:
                data[section][key] = str((base / value).resolve())
        return ActiveLearningConfig.model_validate(data)


def load_config(path: str | Path) -> ActiveLearningConfig:
    """Read and validate a YAML config; relative paths are taken from the file's folder."""
    from pydantic import ValidationError

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        cfg = ActiveLearningConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {format_validation_error(exc)}") from exc
    return cfg.resolve_paths(path.parent.resolve())


def format_validation_error(exc: Any) -> str:
    """One line per pydantic error; for unknown keys, list the valid ones."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "<root>"
        msg = err.get("msg", "")
        if err.get("type") == "extra_forbidden":
            valid = _valid_keys(err.get("loc", ())[:-1])
            msg = f"unknown key (valid keys: {', '.join(valid)})" if valid else "unknown key"
        parts.append(f"{loc}: {msg}")
    return "invalid configuration: " + "; ".join(parts)


def _valid_keys(loc: tuple) -> list[str]:
    model: Any = ActiveLearningConfig
    for part in loc:
        field = model.model_fields.get(str(part)) if isinstance(model, type) else None
        if field is None:
            return []
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
    return list(model.model_fields)


TEMPLATE = """\
# matloop active learning: `matloop al run THIS.yaml --dir RUN` (rerun the same command to resume)
seed: 0
reference:
  calculator: emt            # built-in (emt, sw, kumagai, pyscf, gpaw, espresso, vasp, tblite)
                             # or 'module:function' returning an ASE calculator
  settings: {}               # keyword arguments of the calculator
  timeout_s: null            # time limit per calculation (s)
  max_retries: 3             # corrections (more SCF steps, less mixing, smearing) then give up
  max_force: 50.0            # eV/Å; a label with a larger force component is quarantined
initial:
  structures: start.xyz      # starting structures (any ASE-readable file)
  n_label: 10                # labelled (rattled copies) before the first training
  rattle: 0.05               # Å
explore:
  temperatures: [300, 900]   # K, cycled over walkers
  steps: 200                 # MD steps per walker (ASE Langevin)
  timestep_fs: 2.0
  walkers: 4
  sample_interval: 10        # steps between candidate snapshots
  strains: [0.0]             # isotropic strains of the starting cells, e.g. [-0.02, 0, 0.02]
  pressures_gpa: null        # e.g. [0, 5]: NPT (Berendsen) instead of NVT
  uncertainty_limit: 1.0     # eV/Å: a walker stops when max atomic forces_std exceeds this
select:
  threshold: 0.05            # eV/Å: candidates need max atomic forces_std above this
  max_per_iteration: 10
  diversity: fps             # farthest-point sampling in descriptor space (or: none)
  descriptor: auto           # auto | model (calc.get_descriptors) | simple (radial histogram)
model:
  family: ace
  committee: 4               # members (different seeds and bootstrap subsets);
                             # 1: one model with its own σ (ace posterior, kernel GP variance)
  bootstrap: true
  warm_start: true
  train: {}                  # TrainConfig overrides (see `matloop config template train`)
  max_time_s: null           # training time limit per member (s)
budget:
  max_labels: 200            # reference calculations, failed ones included
stop:
  max_iterations: 10
  uncertainty_target: null   # eV/Å
  test_force_mae_target: null            # eV/Å
  test_energy_mae_target_mev_per_atom: null
test:
  data: null                 # independent labelled set, evaluated every iteration
execution:
  workers: 1                 # local processes for labelling
  scheduler: null            # Dask scheduler address (same as --scheduler)
state:
  database: null             # default RUN/state.db (SQLite); postgresql://user@host/db allowed
strategy:                    # how the loop starts, explores and selects
  starts: []                 # generators of the first labels (empty: rattled copies), e.g.
                             # - {kind: foundation_md, model: chgnet, temperatures: [900]}
                             # - {kind: strain, max_strain: 0.04}
                             # - {kind: vacancy}  - {kind: random_packing}
  walker_stop_factor: null   # e.g. 3: walkers stop at 3 × the labelled structures' median σ
  ramp_from_k: null          # K: walkers heat from here to their temperature
  selection: fps             # fps | sigma_fps | dopt (D-optimal, linear models) | auto
  calibrate: true            # scale σ on the labels in hand every iteration
"""


def template() -> str:
    """YAML text of a commented configuration template (for `matloop config template al`)."""
    return TEMPLATE
