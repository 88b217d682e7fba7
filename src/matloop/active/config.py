"""Configuration of an active-learning run (pydantic; unknown keys are rejected).

Units: temperatures K, time fs, forces and force uncertainties eV/Å, energies eV/atom (targets in
meV/atom where the name says so), pressures GPa, strains dimensionless.

σ values (``select.threshold``, ``explore.uncertainty_limit``, ``stop.uncertainty_target``) are in
the unit of the model's σ (:mod:`matloop.calculators.uncertainty`): the largest atomic
``forces_std`` in eV/Å for committees and the ``ace`` posterior, or ``energy_std`` in eV/atom for
a model whose only σ is an energy variance (one ``kernel`` GP, ``committee: 1``). Left at null,
the threshold and the walker limit take the default of the model's kind (``SIGMA_DEFAULTS``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from matloop.active.explorers import (
    KelvinList,
    StrategyConfig,
    check_timestep_fs,
)
from matloop.execution.config import ExecutionConfig
from matloop.labelling.base import DEFAULT_TIMEOUT_S  # a hung calculation is stopped
from matloop.md.config import check_pressure_gpa  # shared with matloop md
from matloop.training.config import TrainConfig

if TYPE_CHECKING:
    from ase import Atoms

#: eV/Å: walkers stop at this max atomic forces_std when no other limit is configured
DEFAULT_WALKER_LIMIT = 1.0
#: eV/Å: a snapshot is a candidate above this max atomic forces_std (about the force accuracy
#: of a good potential and of converged DFT forces)
DEFAULT_THRESHOLD = 0.05
#: eV/atom: the same two for a model whose only σ is energy_std (one kernel GP): 1 meV/atom is
#: about the numerical precision of converged DFT energies (a label cannot teach the model more);
#: 50 meV/atom, the size of energy differences between phases, is a prediction with no meaning
DEFAULT_ENERGY_THRESHOLD = 0.001
DEFAULT_ENERGY_WALKER_LIMIT = 0.05

#: per σ kind (see ``uncertainty_kind``): name, unit, default selection threshold, walker limit
SIGMA_DEFAULTS: dict[str, tuple[str, str, float, float]] = {
    "forces": ("forces_std", "eV/Å", DEFAULT_THRESHOLD, DEFAULT_WALKER_LIMIT),
    "energy": ("energy_std", "eV/atom", DEFAULT_ENERGY_THRESHOLD, DEFAULT_ENERGY_WALKER_LIMIT),
}

#: friction × timestep above this: the Langevin integrator no longer holds the temperature
#: (measured: 1/fs at 2 fs gives 1300 K for 900 K) and blows up at 10/fs
MAX_FRICTION_TIMESTEP = 1.0


def sigma_defaults(kind: str | None) -> tuple[str, str, float, float]:
    """Name, unit, default threshold and default walker limit of σ of `kind` (``"forces"``,
    also when the kind is unknown, or ``"energy"``); see SIGMA_DEFAULTS."""
    return SIGMA_DEFAULTS.get(kind or "forces", SIGMA_DEFAULTS["forces"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceConfig(_Strict):
    """The reference labeller."""

    calculator: str = Field(
        description="built-in name (emt, sw, kumagai, pyscf, gpaw, espresso, vasp, tblite) or "
        "'module:function' (a Calculator class or a function annotated -> Calculator)"
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="calculator keyword args")
    timeout_s: float | None = Field(
        DEFAULT_TIMEOUT_S, gt=0, description="time limit per calculation (s); null: none"
    )
    max_retries: int = Field(3, ge=0, description="corrections tried before giving up")
    max_force: float = Field(50.0, gt=0, description="larger force components (eV/Å) are absurd")
    handlers: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="override the correction ladders {error_kind: [settings patch, ...]}"
    )
    compute_stress: bool | None = Field(None, description="default: for fully periodic cells")

    @model_validator(mode="after")
    def _ladders(self) -> ReferenceConfig:
        if self.max_retries == 0 and any((self.handlers or {}).values()):
            raise ValueError(
                "handlers are never tried with max_retries: 0 (no retry); raise max_retries or "
                "remove handlers"
            )
        return self


class InitialConfig(_Strict):
    """Starting structures and the first batch of labels."""

    structures: str = Field(description="file of starting structures (any ASE-readable format)")
    n_label: int = Field(10, ge=1, description="structures labelled before the first training")
    rattle: float = Field(
        0.05,
        ge=0,
        description="random displacement (Å) of the first batch (when strategy.starts is empty)",
    )


class ExploreConfig(_Strict):
    """MD exploration with the current committee (ASE Langevin)."""

    temperatures: KelvinList = Field(default_factory=lambda: [300.0], description="K")
    steps: int = Field(200, ge=1, description="MD steps per walker")
    timestep_fs: float = Field(2.0, description="fs (0.05–10)")
    friction: float = Field(
        0.02,
        gt=0,
        description="Langevin friction (1/fs; 0.02 /fs = 20 /ps); × timestep_fs ≤ 1; NVT walkers "
        "only (NPT walkers use Berendsen coupling)",
    )
    walkers: int = Field(4, ge=1, description="walkers per iteration (cycling temperatures)")
    sample_interval: int = Field(
        10,
        ge=1,
        description="steps between candidate snapshots; a walker of fewer steps records its last",
    )
    strains: list[float] = Field(
        default_factory=lambda: [0.0], description="isotropic linear strains applied to starts"
    )
    pressures_gpa: list[float] | None = Field(
        None,
        description="GPa (|p| ≤ 1000); if set, NPT (Berendsen) at these pressures instead of NVT "
        "for starts periodic along a, b and c without a vacuum gap (slabs, clusters: NVT)",
    )

    @field_validator("timestep_fs")
    @classmethod
    def _timestep(cls, v: float) -> float:
        return check_timestep_fs(v)

    @field_validator("strains")
    @classmethod
    def _strains(cls, v: list[float]) -> list[float]:
        bad = [e for e in v if not -0.5 < e < 0.5]
        if not v or bad:
            raise ValueError(f"strains must be linear strains in (-0.5, 0.5), got {bad or v}")
        return v

    @field_validator("pressures_gpa")
    @classmethod
    def _pressures(cls, v: list[float] | None) -> list[float] | None:
        import math

        if v is not None and (not v or not all(math.isfinite(p) for p in v)):
            raise ValueError("pressures_gpa must be a non-empty list of finite pressures (GPa)")
        for p in v or ():
            check_pressure_gpa(p, "pressures_gpa")
        return v

    uncertainty_limit: float | None = Field(
        None,
        gt=0,
        description="stop a walker when the model's σ exceeds this (its unit: max atomic "
        "forces_std in eV/Å, or energy_std in eV/atom for a model with only an energy σ), or "
        "at strategy.walker_stop_factor × the labelled median if that comes first; when "
        "neither is set 1.0 eV/Å (forces σ) or 0.05 eV/atom (energy σ)",
    )
    start_from_dataset: float = Field(
        0.5, ge=0, le=1, description="fraction of walkers started from labelled structures"
    )

    @model_validator(mode="after")
    def _md(self) -> ExploreConfig:
        if self.friction * self.timestep_fs > MAX_FRICTION_TIMESTEP:
            raise ValueError(
                f"explore.friction × timestep_fs = {self.friction * self.timestep_fs:g} exceeds "
                f"{MAX_FRICTION_TIMESTEP:g}: Langevin MD no longer holds the temperature (friction "
                "is in 1/fs: 0.02 /fs = 20 /ps)"
            )
        return self

    def fixed_limit(self, kind: str | None = "forces") -> float:
        """The walkers' fixed σ limit in the unit of σ of `kind` (``"forces"``: eV/Å,
        ``"energy"``: eV/atom): ``uncertainty_limit`` or the kind's default."""
        if self.uncertainty_limit is not None:
            return self.uncertainty_limit
        return sigma_defaults(kind)[3]


class SelectConfig(_Strict):
    """Which explored snapshots to label."""

    threshold: float | None = Field(
        None,
        ge=0,
        description="a snapshot is a candidate when the model's σ exceeds this, in the unit of "
        "that σ: max atomic forces_std in eV/Å (committees, ace; null: 0.05 eV/Å) or, for a "
        "model whose only σ is energy_std (one kernel GP), eV/atom (null: 0.001 eV/atom)",
    )
    max_per_iteration: int = Field(10, ge=1)
    diversity: Literal["fps", "none"] = Field(
        "fps",
        description="fps: farthest-point sampling in descriptor space; none: the most uncertain "
        "first (with strategy.selection: fps only; the other selections choose for diversity)",
    )
    descriptor: Literal["auto", "model", "simple"] = Field(
        "auto",
        description="space of the fps and sigma_fps distances (not used by dopt, vopt or "
        "diversity none); model: calc.get_descriptors averaged per structure; simple: RDF",
    )

    def threshold_for(self, kind: str | None) -> float:
        """The threshold in the unit of σ of `kind` (``"forces"``: eV/Å, ``"energy"``: eV/atom):
        the one given, or the kind's default."""
        if self.threshold is not None:
            return self.threshold
        return sigma_defaults(kind)[2]


class CommitteeConfig(_Strict):
    """The committee of potentials trained every iteration.

    ``train`` is a full :class:`~matloop.training.TrainConfig` written as overrides of its
    defaults; its ``model.family`` is this section's ``family`` (write it once, here).
    """

    family: str = "ace"
    committee: int | None = Field(
        None,
        ge=1,
        description="number of members; 1: one model with its own σ; default 1 for families "
        "with their own σ (ace, kernel), else 4",
    )
    bootstrap: bool = Field(
        True, description="each member trains on a bootstrap sample (committees of 2 or more)"
    )
    warm_start: bool = Field(
        True,
        description="start each member from its previous weights (committees of 2 or more; a "
        "single model is refitted from scratch, as the closed-form families always are)",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="training options (matloop.training.TrainConfig); model.family is `family`",
    )
    max_time_s: float | None = Field(None, gt=0, description="training time limit per member")

    @field_validator("family")
    @classmethod
    def _family(cls, v: str) -> str:
        from matloop.models import FAMILIES

        if v not in FAMILIES:
            valid = ", ".join(sorted(FAMILIES))
            raise ValueError(f"unknown model family {v!r}; available: {valid}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _family_into_train(cls, data: Any) -> Any:
        """The training config's model family is the committee's (one place to write it)."""
        if not isinstance(data, dict) or not isinstance(data.get("train", {}), dict):
            return data
        family = data.get("family", "ace")
        from matloop.models import FAMILIES

        if not isinstance(family, str) or family not in FAMILIES:  # reported by `family`
            return data
        train = dict(data.get("train") or {})
        model = train.get("model", {})
        if isinstance(model, dict):
            given = model.get("family", family)
            if given != family:
                raise ValueError(
                    f"train.model.family is {given!r} but family is {family!r}; "
                    "give the family once, as model.family"
                )
            train["model"] = {**model, "family": family}
        return {**data, "train": train}

    @model_validator(mode="after")
    def _default_committee(self) -> CommitteeConfig:
        """One model where the family has its own σ (the issue's "own uncertainty first")."""
        if self.committee is None:
            from matloop.models import FAMILIES

            self.committee = 1 if FAMILIES[self.family].own_variance else 4
        return self

    def train_config(self) -> TrainConfig:
        """The typed training configuration of every member (a copy: training may change it)."""
        return self.train.model_copy(deep=True)


class BudgetConfig(_Strict):
    max_labels: int = Field(200, ge=1, description="reference calculations, failures included")


class StopConfig(_Strict):
    max_iterations: int = Field(10, ge=1)
    uncertainty_target: float | None = Field(
        None,
        gt=0,
        description="stop when no explored snapshot's σ exceeds this (max atomic forces_std in "
        "eV/Å, or energy_std in eV/atom for a model with only an energy σ)",
    )
    test_force_mae_target: float | None = Field(None, gt=0, description="eV/Å")
    test_energy_mae_target_mev_per_atom: float | None = Field(None, gt=0)


class TestConfig(_Strict):
    __test__ = False  # not a pytest class
    data: str | None = Field(None, description="independent labelled set evaluated each iteration")


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
    model: CommitteeConfig = Field(default_factory=CommitteeConfig)
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

    @model_validator(mode="after")
    def _no_silent_override(self) -> ActiveLearningConfig:
        # a key that the others would leave without effect is refused, not ignored
        from matloop.active.select import selection_conflict

        st = self.strategy
        conflict = selection_conflict(
            st.selection,
            self.select.diversity,
            self.select.descriptor,
            family=self.model.family,
            members=self.model.committee or 1,
        )
        if conflict:
            raise ValueError(conflict)
        if st.walker_driver_until is not None and st.walker_driver is None:
            raise ValueError(
                "strategy.walker_driver_until needs strategy.walker_driver (the calculator "
                "that moves the walkers until that many labels)"
            )
        return self

    @model_validator(mode="after")
    def _test_targets(self) -> ActiveLearningConfig:
        # without a test set a test-error target would never stop the run
        for key in ("test_force_mae_target", "test_energy_mae_target_mev_per_atom"):
            if getattr(self.stop, key) is not None and not self.test.data:
                raise ValueError(f"stop.{key} needs test.data (the set its error is measured on)")
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
    from matloop.utils.config import load_config_file

    path = Path(path)
    cfg = load_config_file(path, ActiveLearningConfig)
    return cfg.resolve_paths(path.parent.resolve())


def check_inputs(cfg: ActiveLearningConfig) -> None:
    """Checks that need files or imports, before any work: the reference calculator and its
    keyword arguments, the model family's package, the starting structures and the test set
    (readable, labelled, and no element that the starting structures lack)."""
    from matloop.data import read_dataset
    from matloop.data.io import read_structures
    from matloop.errors import DataError
    from matloop.labelling.calculator import check_calculator_settings
    from matloop.models import get_family

    ref = cfg.reference
    check_calculator_settings(ref.calculator, ref.settings, ref.handlers)
    get_family(cfg.model.family)
    starts = read_structures(cfg.initial.structures, what="initial.structures file")
    elements = {s for a in starts for s in a.get_chemical_symbols()}
    _check_reference_elements(cfg, elements)
    if cfg.explore.pressures_gpa:
        _check_npt_starts(cfg, starts)
    if cfg.test.data:
        from matloop.errors import MatloopError

        try:
            test = read_dataset(cfg.test.data, require_forces=False)
        except MatloopError as exc:  # the same one line, naming the key it comes from
            raise type(exc)(f"test.data: {exc}") from None
        missing = sorted(set(test.elements) - elements)
        if missing:
            raise DataError(
                f"test.data {cfg.test.data} contains {', '.join(missing)}, which no starting "
                f"structure in {cfg.initial.structures} has; the models would never learn it"
            )


def _check_npt_starts(cfg: ActiveLearningConfig, starts: list[Atoms]) -> None:
    """NPT walkers need a start periodic along a, b and c: none is refused; a mix (a slab beside
    a bulk cell) is allowed, with a warning that the others' walkers run NVT."""
    from matloop.errors import ConfigError

    flat = [i for i, a in enumerate(starts) if not a.pbc.all()]
    if len(flat) == len(starts):
        raise ConfigError(
            f"explore.pressures_gpa needs a start periodic along a, b and c (NPT walkers), but "
            f"no structure in {cfg.initial.structures} is: remove pressures_gpa (NVT) or start "
            "from a bulk cell"
        )
    if flat:
        shown = ", ".join(str(i) for i in flat[:5]) + (", ..." if len(flat) > 5 else "")
        warnings.warn(
            f"explore.pressures_gpa: {len(flat)} of the {len(starts)} structures in "
            f"{cfg.initial.structures} (index {shown}) are not periodic along a, b and c; "
            "walkers started from them run NVT at no pressure, the others NPT",
            stacklevel=3,
        )


def _check_reference_elements(cfg: ActiveLearningConfig, elements: set[str]) -> None:
    """Refuse elements of the starting structures (and interstitials) that the reference
    calculator has no parameters for, before any label is spent on them."""
    from matloop.calculators.elements import supported_elements
    from matloop.errors import ConfigError

    supported = supported_elements(None, cfg.reference.calculator)
    if supported is None:
        return
    added = {g.element for g in cfg.strategy.starts if getattr(g, "element", None)}
    for where, wanted in (
        (f"initial.structures {cfg.initial.structures}", elements),
        ("strategy.starts (interstitial element)", added),
    ):
        missing = sorted(set(wanted) - supported)
        if missing:
            raise ConfigError(
                f"{where} contains {', '.join(missing)}, which the reference calculator "
                f"{cfg.reference.calculator!r} has no parameters for (it can label "
                f"{', '.join(sorted(supported))})"
            )


TEMPLATE = """\
# matloop active learning: `matloop al run THIS.yaml --dir RUN` (rerun the same command to resume)
seed: 0
reference:
  calculator: emt            # built-in (emt, sw, kumagai, pyscf, gpaw, espresso, vasp, tblite)
                             # or 'module:function': a Calculator class or a
                             # function annotated -> Calculator
  settings: {}               # keyword arguments of the calculator
  timeout_s: 3600            # time limit per calculation (s); null: no limit
  max_retries: 3             # corrections (more SCF steps, less mixing, smearing) then give up
  max_force: 50.0            # eV/Å; a label with a larger force component is quarantined
initial:
  structures: start.xyz      # starting structures (any ASE-readable file)
  n_label: 10                # labelled (rattled copies) before the first training
  rattle: 0.05               # Å (the rattled copies when strategy.starts is empty)
explore:
  temperatures: [300, 900]   # K, cycled over walkers
  steps: 200                 # MD steps per walker (ASE Langevin)
  timestep_fs: 2.0           # fs, 0.05–10
  friction: 0.02             # Langevin, 1/fs (0.02 /fs = 20 /ps)
  walkers: 4
  sample_interval: 10        # steps between candidate snapshots
  strains: [0.0]             # isotropic strains of the starting cells, e.g. [-0.02, 0, 0.02]
  pressures_gpa: null        # GPa, e.g. [0, 5]: NPT (Berendsen) instead of NVT
  # σ below is in the unit of the model's σ: max atomic forces_std in eV/Å (committees, ace)
  # or energy_std in eV/atom (a single kernel GP, which has only an energy variance)
  uncertainty_limit: null    # a walker also stops when σ passes this (with
                             # strategy.walker_stop_factor: whichever comes first);
                             # null: 1.0 eV/Å, or 0.05 eV/atom for an energy σ
select:
  threshold: null            # candidates need σ above this (unit: see explore above);
                             # null: 0.05 eV/Å, or 0.001 eV/atom for an energy σ
  max_per_iteration: 10
  diversity: fps             # farthest-point sampling in descriptor space; none: the most
                             # uncertain first (strategy.selection: fps only)
  descriptor: auto           # auto | model (calc.get_descriptors) | simple (radial histogram):
                             # the space of fps and sigma_fps (not of dopt, vopt)
model:
  family: ace
  committee: null            # members (different seeds and bootstrap subsets); null: 1 for
                             # families with their own σ (ace posterior, kernel GP), else 4
  bootstrap: true
  warm_start: true
  train: {}                  # TrainConfig overrides (see `matloop config template train`)
  max_time_s: null           # training time limit per member (s)
budget:
  max_labels: 200            # reference calculations, failed ones included
stop:
  max_iterations: 10
  uncertainty_target: null   # σ unit (eV/Å, or eV/atom for an energy σ)
  test_force_mae_target: null            # eV/Å
  test_energy_mae_target_mev_per_atom: null
test:
  data: null                 # independent labelled set, evaluated every iteration
execution:
  workers: 1                 # local processes for labelling
  scheduler: null            # 'local:N' (Dask LocalCluster) or a scheduler address (--scheduler)
  cluster: null              # 'slurm': start a dask-jobqueue SLURMCluster from the section below
  slurm:
    cores: 1                 # per job (--cpus-per-task)
    processes: 1             # Dask workers per job
    memory: 4GB              # per job (--mem)
    walltime: "01:00:00"     # per job (--time)
    queue: null              # partition
    account: null
    job_extra: []            # more #SBATCH options, e.g. ['--qos=normal']
    prologue: []             # shell lines before the worker starts (module load ...)
    jobs: 1                  # workers = jobs × processes
state:
  database: null             # default RUN/state.db (SQLite); postgresql://user@host/db allowed
strategy:                    # how the loop starts, explores and selects
  starts: []                 # generators of the first labels (empty: rattled copies), e.g.
                             # - {kind: foundation_md, model: chgnet, temperatures: [900]}
                             # - {kind: strain, max_strain: 0.04}
                             # - {kind: vacancy}  - {kind: random_packing}
  walker_stop_factor: null   # e.g. 5: walkers stop at 5 × the labelled structures' median σ
                             # (null: at explore.uncertainty_limit)
  ramp_from_k: null          # K: walkers heat from here to their temperature
  selection: fps             # fps | sigma_fps | dopt (D-optimal) | vopt (V-optimal: variance
                             # over explored) | auto (dopt for one ace model, else sigma_fps)
  select_within_limit: false # true: pick only snapshots within the walkers' σ limit
  calibrate: true            # scale σ on the labels in hand every iteration
"""


def template() -> str:
    """YAML text of a commented configuration template (for `matloop config template al`)."""
    return TEMPLATE
