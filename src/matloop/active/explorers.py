"""Pluggable pieces of an active-learning strategy: starting-set generators and their configs.

Each generator is a pydantic section with a ``kind`` and a ``generate(starts, n, rng)`` method
that returns `n` unlabelled structures (``info["explorer"]`` says which generator made them).
The ``strategy`` section of the loop's config lists them under ``starts`` with weights: the
``initial.n_label`` first labels are shared among them in proportion to ``weight``.

Units: Å, K, fs, GPa; strains are dimensionless linear strains.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Literal

import numpy as np
from ase import Atoms
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check_kelvin(values: list[float], key: str = "temperatures") -> list[float]:
    """`values` if they are temperatures in K (≥ 1 K, < 10⁶ K); else a ValueError (one line,
    from the validator ``matloop md`` shares)."""
    from matloop.md.config import check_temperature_k

    if not values:
        raise ValueError("give at least one temperature (K)")
    return [check_temperature_k(t, key) for t in values]


#: temperatures in K (at least one, each ≥ 1 K): the type of every ``temperatures`` key
KelvinList = Annotated[list[float], AfterValidator(check_kelvin)]

#: fs: the longest MD timestep accepted; beyond it atoms move too far per step (a walker blows
#: up at its first snapshot) even for heavy elements (typical 0.5–2 fs; 5 fs for heavy metals)
MAX_TIMESTEP_FS = 10.0
#: fs: the shortest; below it a timestep was given in ps (0.002 ps = 2 fs) and walkers barely move
MIN_TIMESTEP_FS = 0.05


def check_timestep_fs(value: float) -> float:
    """`value` if it is a plausible MD timestep in fs; else a ValueError (one line)."""
    import math

    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"the timestep must be a positive number of fs, got {value}")
    if value > MAX_TIMESTEP_FS:
        raise ValueError(
            f"timestep {value:g} fs is longer than {MAX_TIMESTEP_FS:g} fs: atoms move too far per "
            "step and the MD blows up (typical: 0.5–2 fs)"
        )
    if value < MIN_TIMESTEP_FS:
        raise ValueError(
            f"timestep {value:g} fs is shorter than {MIN_TIMESTEP_FS:g} fs: the timestep is in fs "
            f"({value:g} ps would be {value * 1000:g} fs)"
        )
    return value


def sample_every(steps: int, interval: int) -> int:
    """Steps between snapshots: `interval`, or `steps` when the run is shorter (it then records
    its last step instead of nothing)."""
    return max(1, min(int(interval), int(steps)))


def _pick(starts: list[Atoms], rng: np.random.Generator) -> Atoms:
    atoms = starts[int(rng.integers(len(starts)))].copy()
    atoms.calc = None
    return atoms


def _min_distance(atoms: Atoms) -> float:
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 6.0)
    return float(d.min()) if len(d) else 2.0


def _rattle(atoms: Atoms, amount: float, rng: np.random.Generator) -> None:
    if amount > 0:
        atoms.positions += rng.normal(0.0, amount, atoms.positions.shape)


class RattleStarts(_Strict):
    """Copies of the starting structures with Gaussian displacements (the classic start)."""

    kind: Literal["rattle"] = "rattle"
    weight: float = Field(1.0, gt=0)
    rattle: float = Field(0.05, ge=0, description="displacement std (Å)")

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        out = []
        for i in range(n):
            atoms = starts[i % len(starts)].copy()
            atoms.calc = None
            _rattle(atoms, self.rattle, rng)
            out.append(atoms)
        return out


class StrainStarts(_Strict):
    """Cells under random strain (isotropic and shear up to `max_strain`), lightly rattled."""

    kind: Literal["strain"] = "strain"
    weight: float = Field(1.0, gt=0)
    max_strain: float = Field(0.04, gt=0, lt=0.5, description="largest strain component")
    rattle: float = Field(0.03, ge=0, description="Å")

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        out = []
        for _ in range(n):
            atoms = _pick(starts, rng)
            if atoms.pbc.all():
                eps = rng.uniform(-self.max_strain, self.max_strain, (3, 3))
                eps = 0.5 * (eps + eps.T)
                atoms.set_cell(atoms.cell @ (np.eye(3) + eps), scale_atoms=True)
            _rattle(atoms, self.rattle, rng)
            out.append(atoms)
        return out


class VacancyStarts(_Strict):
    """Starting structures with `n_vacancies` random atoms removed, lightly rattled."""

    kind: Literal["vacancy"] = "vacancy"
    weight: float = Field(1.0, gt=0)
    n_vacancies: int = Field(1, ge=1)
    rattle: float = Field(0.05, ge=0, description="Å")

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        out = []
        for _ in range(n):
            atoms = _pick(starts, rng)
            k = min(self.n_vacancies, len(atoms) - 1)
            del atoms[sorted(rng.choice(len(atoms), k, replace=False).tolist())]
            _rattle(atoms, self.rattle, rng)
            out.append(atoms)
        return out


class InterstitialStarts(_Strict):
    """Starting structures with `n_interstitials` extra atoms, each at the most open of
    `trials` random points of the cell (farthest from every atom), lightly rattled."""

    kind: Literal["interstitial"] = "interstitial"
    weight: float = Field(1.0, gt=0)
    n_interstitials: int = Field(1, ge=1)
    element: str | None = Field(None, description="default: the start's most common element")
    trials: int = Field(200, ge=1, description="random points tried per interstitial")
    rattle: float = Field(0.03, ge=0, description="Å")

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        from ase.geometry import get_distances

        out = []
        for _ in range(n):
            atoms = _pick(starts, rng)
            symbols = atoms.get_chemical_symbols()
            element = self.element or max(set(symbols), key=symbols.count)
            for _ in range(self.n_interstitials):
                points = rng.random((self.trials, 3)) @ atoms.cell.array
                _, d = get_distances(points, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                atoms += Atoms(element, positions=[points[int(np.argmax(d.min(1)))]])
            _rattle(atoms, self.rattle, rng)
            out.append(atoms)
        return out


class SurfaceStarts(_Strict):
    """Slabs: a starting cell opened by `vacuum` Å along one cell axis (random among `axes`),
    so the lattice planes normal to it become two free surfaces; lightly rattled."""

    kind: Literal["surface"] = "surface"
    weight: float = Field(1.0, gt=0)
    vacuum: float = Field(8.0, gt=0, description="Å of vacuum added along the axis")
    axes: list[Literal[0, 1, 2]] = Field(default_factory=lambda: [2], min_length=1)
    rattle: float = Field(0.03, ge=0, description="Å")

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        out = []
        for _ in range(n):
            atoms = _pick(starts, rng)
            axis = int(self.axes[int(rng.integers(len(self.axes)))])
            atoms.wrap()
            cell = atoms.cell.array.copy()
            length = np.linalg.norm(cell[axis])
            cell[axis] *= (length + self.vacuum) / length
            atoms.set_cell(cell, scale_atoms=False)
            atoms.translate(0.5 * self.vacuum * cell[axis] / np.linalg.norm(cell[axis]))
            _rattle(atoms, self.rattle, rng)
            out.append(atoms)
        return out


class NEBStarts(_Strict):
    """Images along a reaction path between given end points (two structure files with the same
    atoms in the same order): linear (``idpp``: image-dependent pair potential) interpolation,
    then `steps` of a nudged-elastic-band relaxation with a cheap `calculator` (a foundation
    model, or any calculator name); the `n` images taken evenly along the band."""

    kind: Literal["neb"] = "neb"
    weight: float = Field(1.0, gt=0)
    initial: str = Field(..., description="structure file of the first end point")
    final: str = Field(..., description="structure file of the last end point")
    images: int = Field(7, ge=1, description="images between the end points")
    interpolation: Literal["linear", "idpp"] = "idpp"
    calculator: str | None = Field("chgnet", description="None: the interpolated band as is")
    steps: int = Field(100, ge=0, description="FIRE steps of the band relaxation")
    fmax: float = Field(0.1, gt=0, description="eV/Å")
    climb: bool = True

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        band = self.band()
        inner = band[1:-1]
        picks = np.unique(np.linspace(0, len(inner) - 1, min(n, len(inner))).round().astype(int))
        out = [inner[i].copy() for i in picks]
        for atoms in out:
            atoms.calc = None
        return out

    def band(self) -> list[Atoms]:
        """The end points and the (relaxed) images between them."""
        from ase.io import read
        from ase.mep import NEB
        from ase.optimize import FIRE

        from matloop.errors import ConfigError

        first, last = (read(path) for path in (self.initial, self.final))
        if first.get_chemical_symbols() != last.get_chemical_symbols():
            raise ConfigError("neb: the end points must hold the same atoms in the same order")
        band = [first] + [first.copy() for _ in range(self.images)] + [last]
        neb = NEB(band, climb=self.climb, allow_shared_calculator=True)
        neb.interpolate(method=self.interpolation, mic=bool(first.pbc.any()))
        if self.calculator is not None and self.steps > 0:
            from matloop.calculators import resolve_calculator

            calc = resolve_calculator(self.calculator)
            for image in band:
                image.calc = calc
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Only FixAtoms")
                FIRE(neb, logfile=None).run(fmax=self.fmax, steps=self.steps)
        return band


class RandomPackingStarts(_Strict):
    """Random positions in a starting cell (its composition and density) with a minimum
    interatomic distance: disordered, liquid-like structures."""

    kind: Literal["random_packing"] = "random_packing"
    weight: float = Field(1.0, gt=0)
    min_distance: float | None = Field(
        None, gt=0, description="Å; default 0.7 × the start's nearest-neighbour distance"
    )
    max_tries: int = Field(2000, ge=1, description="random draws per atom before giving up")

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        return [self._pack(_pick(starts, rng), rng) for _ in range(n)]

    def _pack(self, atoms: Atoms, rng: np.random.Generator) -> Atoms:
        from ase.geometry import get_distances

        from matloop.errors import ConfigError

        dmin = self.min_distance or 0.7 * _min_distance(atoms)
        placed = np.zeros((0, 3))
        for _ in range(len(atoms)):
            for _ in range(self.max_tries):
                trial = rng.random(3) @ atoms.cell.array
                if len(placed) == 0:
                    break
                _, d = get_distances(trial, placed, cell=atoms.cell, pbc=atoms.pbc)
                if d.min() >= dmin:
                    break
            else:
                raise ConfigError(
                    f"random_packing: cannot place {len(atoms)} atoms {dmin:.2f} Å "
                    "apart in the starting cell; lower min_distance"
                )
            placed = np.vstack([placed, trial])
        atoms.positions = placed
        return atoms


class FoundationMDStarts(_Strict):
    """Snapshots of short MD with a cheap model (a foundation model such as ``chgnet``, or any
    calculator name) at the target temperatures; the `n` kept are the most diverse."""

    kind: Literal["foundation_md"] = "foundation_md"
    weight: float = Field(1.0, gt=0)
    model: str = Field("chgnet", description="calculator name or model file")
    temperatures: KelvinList = Field(default_factory=lambda: [300.0], description="K")
    steps: int = Field(200, ge=1, description="MD steps per temperature")
    timestep_fs: Annotated[float, AfterValidator(check_timestep_fs)] = Field(
        2.0, description=f"fs ({MIN_TIMESTEP_FS:g}–{MAX_TIMESTEP_FS:g})"
    )
    sample_interval: int = Field(
        10, ge=1, description="steps between candidate snapshots (at most `steps`)"
    )

    def generate(self, starts: list[Atoms], n: int, rng: np.random.Generator) -> list[Atoms]:
        from matloop.active.select import farthest_point_sampling, simple_descriptor
        from matloop.calculators import resolve_calculator

        calc = resolve_calculator(self.model)
        pool: list[Atoms] = []
        for temperature in self.temperatures:
            with warnings.catch_warnings():
                # CHGNet's pymatgen conversion warns at every step about ASE's FixCom
                warnings.filterwarnings("ignore", message="Only FixAtoms")
                res = self._md(_pick(starts, rng), calc, temperature, rng)
            for frame in res.frames[1:]:
                frame.calc = None
                frame.set_velocities(np.zeros((len(frame), 3)))
                frame.info.pop("time_ps", None)
                frame.info["temperature"] = float(temperature)
                pool.append(frame)
        elements = sorted({s for a in pool for s in a.symbols})  # starts may differ in them
        desc = np.array([simple_descriptor(a, elements=elements) for a in pool])
        first = int(rng.integers(len(pool)))
        return [pool[i] for i in farthest_point_sampling(desc, n, first=first)]

    def _md(self, atoms: Atoms, calc, temperature: float, rng: np.random.Generator):
        from matloop.md import run_md

        return run_md(
            atoms,
            calc,
            ensemble="nvt",
            temperature_k=temperature,
            timestep_fs=self.timestep_fs,
            steps=self.steps,
            progress=False,
            seed=int(rng.integers(2**31)),
            keep_frames=True,
            traj_interval=sample_every(self.steps, self.sample_interval),
            log_interval=self.steps,
        )


StartGenerator = Annotated[
    RattleStarts
    | StrainStarts
    | VacancyStarts
    | InterstitialStarts
    | SurfaceStarts
    | RandomPackingStarts
    | FoundationMDStarts
    | NEBStarts,
    Field(discriminator="kind"),
]


class StrategyConfig(_Strict):
    """How the loop starts, explores and selects (beyond the plain ``explore`` walkers).

    ``starts``: generators of the first ``initial.n_label`` structures (empty: rattled copies,
    ``initial.rattle``). ``walker_stop_factor``: a walker stops when the calibrated σ of a
    snapshot exceeds this many times the median calibrated σ of the labelled structures (or at
    ``explore.uncertainty_limit`` if that is set and lower). ``ramp_from_k``: walkers heat linearly
    from this temperature to their target. ``selection``: ``fps`` (uncertain, then
    farthest-point in descriptor space; the classic), ``sigma_fps`` (σ × distance to the chosen
    and labelled structures), ``dopt`` (greedy D-optimal information gain in the model's
    per-atom feature space), ``vopt`` (greedy V-optimal: the largest drop of the posterior
    variance summed over the explored snapshots' atoms), ``auto`` (``dopt`` for one model with
    linear features, e.g. one ``ace``; else ``sigma_fps``). ``calibrate``: fit a factor on σ from
    the labels in hand every iteration. ``select_within_limit``: choose only among snapshots whose σ
    is within the walkers' limit (an upper trust level): the snapshot that stopped a walker is
    already off the distribution the model is used on (all snapshots when none is within).
    ``walker_driver``: a calculator name or model file (e.g. ``chgnet``) that moves the walkers
    while the current model's σ decides where they stop and what is chosen: physical
    trajectories before the model has enough labels to run stable MD of its own;
    ``walker_driver_until``: the model drives itself from this many labels on.
    """

    starts: list[StartGenerator] = Field(default_factory=list)
    walker_stop_factor: float | None = Field(None, gt=1.0)
    ramp_from_k: float | None = Field(None, gt=0, description="K")
    selection: Literal["fps", "sigma_fps", "dopt", "vopt", "auto"] = "fps"
    calibrate: bool = True
    select_within_limit: bool = False
    walker_driver: str | None = None
    walker_driver_until: int | None = Field(None, ge=1, description="labels")

    @field_validator("ramp_from_k")
    @classmethod
    def _ramp(cls, v: float | None) -> float | None:
        return v if v is None else check_kelvin([v], "ramp_from_k")[0]


def initial_structures(
    generators: list, starts: list[Atoms], n: int, rng: np.random.Generator
) -> list[Atoms]:
    """`n` structures shared among `generators` in proportion to their weights."""
    weights = np.array([g.weight for g in generators], dtype=float)
    share = weights / weights.sum() * n
    counts = np.floor(share).astype(int)
    for k in np.argsort(-(share - counts))[: n - counts.sum()]:
        counts[k] += 1
    out: list[Atoms] = []
    for gen, count in zip(generators, counts, strict=True):
        if count == 0:
            continue
        for atoms in gen.generate(starts, int(count), rng):
            atoms.info["explorer"] = gen.kind
            out.append(atoms)
    return out
