"""Molecular dynamics with ASE integrators on any ASE calculator.

Ensembles: ``nve`` (velocity Verlet), ``nvt`` (Langevin, or Nosé–Hoover chain) and ``npt``
(isotropic Martyna–Tobias–Klein with Nosé–Hoover chains, the integrator that samples the right
ensemble; Berendsen is available for quick equilibration). Units: time in fs/ps at the edges,
energies eV, pressure GPa in the log, everything else ASE units.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from matloop.calculators.elements import check_elements
from matloop.errors import ConfigError, DataError, MatloopError, UnknownElementError
from matloop.md.config import NPT, NVE, NVT, ensemble_settings
from matloop.units import EV_PER_A3_TO_GPA, EV_TO_MEV
from matloop.utils.files import atomic_path

Ensemble = Literal["nve", "nvt", "npt"]

LOG_COLUMNS = (
    "time_ps",
    "temperature_K",
    "epot_eV",
    "ekin_eV",
    "etot_eV",
    "pressure_GPa",
    "volume_A3",
)


@dataclass
class MDResult:
    """What an MD run produced. Arrays are per logged row (every `log_interval` steps)."""

    ensemble: str
    n_atoms: int
    steps: int
    timestep_fs: float
    time_ps: np.ndarray
    temperature_k: np.ndarray
    epot_ev: np.ndarray
    ekin_ev: np.ndarray
    etot_ev: np.ndarray
    pressure_gpa: np.ndarray
    volume_a3: np.ndarray
    seconds: float
    atoms: Atoms
    max_force_ev_per_a: float
    traj_path: Path | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    frames: list[Atoms] = field(default_factory=list)

    @property
    def drift_mev_per_atom_per_ps(self) -> float:
        """Slope of the total energy per atom against time (linear least squares), meV/atom/ps."""
        return energy_drift(self.time_ps, self.etot_ev, self.n_atoms)

    @property
    def atom_steps_per_s(self) -> float:
        """Throughput: atoms × steps per wall-clock second (including logging)."""
        return self.n_atoms * self.steps / self.seconds if self.seconds > 0 else math.inf

    @property
    def mean_temperature_k(self) -> float:
        half = len(self.temperature_k) // 2
        return float(np.mean(self.temperature_k[half:]))

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (units in the key names)."""
        drift = self.drift_mev_per_atom_per_ps if self.ensemble == "nve" else None
        fluct = float(np.ptp(self.etot_ev) / self.n_atoms * EV_TO_MEV)
        return {
            "ensemble": self.ensemble,
            "n_atoms": self.n_atoms,
            "steps": self.steps,
            "timestep_fs": self.timestep_fs,
            "duration_ps": float(self.steps * self.timestep_fs / 1000.0),
            "nve_drift_mev_per_atom_per_ps": drift,
            "etot_range_mev_per_atom": fluct,
            "mean_temperature_k_second_half": self.mean_temperature_k,
            "final_temperature_k": float(self.temperature_k[-1]),
            "mean_pressure_gpa_second_half": _nanmean_half(self.pressure_gpa),
            "final_volume_a3": float(self.volume_a3[-1]),
            "max_force_ev_per_a": self.max_force_ev_per_a,
            "seconds": self.seconds,
            "atom_steps_per_s": self.atom_steps_per_s,
            **self.extra,
        }


def _nanmean_half(values: np.ndarray) -> float | None:
    half = values[len(values) // 2 :]
    if half.size == 0 or np.all(np.isnan(half)):
        return None
    return float(np.nanmean(half))


def energy_drift(time_ps: np.ndarray, etot_ev: np.ndarray, n_atoms: int) -> float:
    """Linear-fit slope of total energy per atom vs time, in meV/atom/ps."""
    t = np.asarray(time_ps, dtype=float)
    e = np.asarray(etot_ev, dtype=float) / n_atoms
    if t.size < 2 or np.ptp(t) == 0:
        return float("nan")
    slope = np.polyfit(t, e, 1)[0]
    return float(slope * EV_TO_MEV)


def read_structure(path: str | Path, index: int | str = -1) -> Atoms:
    """Read one structure (the last frame by default) with clear :class:`DataError` messages."""
    from matloop.data.io import read_structures

    frames = read_structures(path, index=index, what="structure file")
    atoms = frames[-1]
    if len(atoms) == 0:
        raise DataError(f"structure in {path} has no atoms")
    return atoms


def _validate(settings: NVE | NVT | NPT, timestep_fs: float, steps: int, atoms: Atoms) -> None:
    """Checks that need more than the ensemble's own settings (run length, the structure)."""
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps <= 0:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    if not (timestep_fs > 0 and math.isfinite(timestep_fs)):
        raise ConfigError(f"timestep must be a positive number of fs, got {timestep_fs!r}")
    if timestep_fs > 10:
        warnings.warn(
            f"timestep {timestep_fs} fs is very long for atomistic MD (typical: 0.5–2 fs)",
            stacklevel=3,
        )
    if len(atoms) == 0:
        raise DataError("the structure has no atoms")
    if isinstance(settings, NPT) and not all(atoms.pbc):
        raise ConfigError("NPT needs a periodic cell in all three directions")


#: Å: the empty gap taken for vacuum when the calculator states no cutoff (wider than the spacing
#: of lattice planes in bulk crystals, and than the cutoff of most potentials)
VACUUM_GAP_A = 6.0


def vacuum_gap_width(calculator: Any) -> float:
    """Å: a gap wider than this is vacuum for `calculator`: its ``cutoff`` (nothing interacts
    across such a gap) when it states one below :data:`VACUUM_GAP_A`, else that default."""
    cutoff = getattr(calculator, "cutoff", None)
    try:
        cutoff = float(cutoff) if cutoff is not None else None
    except (TypeError, ValueError):  # e.g. a calculator's own non-numeric attribute
        cutoff = None
    if cutoff is None or not (math.isfinite(cutoff) and cutoff > 0):
        return VACUUM_GAP_A
    return min(cutoff, VACUUM_GAP_A)


def vacuum_axes(atoms: Atoms, width: float = VACUUM_GAP_A) -> list[int]:
    """Periodic cell axes along which the atoms leave an empty layer wider than `width` (Å).

    A slab padded with vacuum in a cell periodic along a, b and c has one: the largest gap
    between the atoms' fractional coordinates along the axis (wrapping round), times the
    spacing of the lattice planes normal to it (1/|b_i|, b the reciprocal cell without 2π),
    is its thickness.
    """
    if len(atoms) == 0 or abs(atoms.cell.volume) < 1e-9:
        return []
    frac = atoms.cell.scaled_positions(atoms.positions) % 1.0
    spacing = 1.0 / np.linalg.norm(atoms.cell.reciprocal(), axis=1)  # Å between lattice planes
    axes = []
    for i in np.flatnonzero(atoms.pbc):
        f = np.sort(frac[:, i])
        gap = max(float(np.diff(f).max(initial=0.0)), float(1.0 - f[-1] + f[0]))
        if gap * spacing[i] > width:
            axes.append(int(i))
    return axes


def _warn_npt_vacuum(atoms: Atoms, calculator: Any) -> None:
    """NPT on a cell with vacuum along a periodic axis squeezes the vacuum out: said, not refused
    (compressing a slab into a bulk may be what the user wants)."""
    width = vacuum_gap_width(calculator)
    axes = vacuum_axes(atoms, width)
    if axes:
        names = ", ".join("abc"[i] for i in axes)
        warnings.warn(
            f"NPT on {atoms.get_chemical_formula()}, whose cell has an empty gap wider than "
            f"{width:g} Å along {names} (a slab or cluster padded with vacuum): the barostat "
            "will close it; use NVT to keep the vacuum",
            stacklevel=3,
        )


def _check_seed(seed: int | None) -> None:
    """A seed numpy accepts: None or an integer ≥ 0."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be an integer ≥ 0, got {seed!r}")


def _check_ramp(settings: NVE | NVT | NPT, temperature_end_k: float | None) -> None:
    """A temperature ramp needs a final T > 0 K and a thermostat whose target can move
    (Langevin NVT, Berendsen NPT); otherwise the ramp would be silently ignored."""
    if temperature_end_k is None:
        return
    if not (temperature_end_k > 0 and math.isfinite(temperature_end_k)):
        raise ConfigError(f"the final temperature must be > 0 K, got {temperature_end_k!r}")
    if isinstance(settings, NVE):
        raise ConfigError("a temperature ramp needs a thermostat; NVE has none")
    kind = settings.thermostat if isinstance(settings, NVT) else settings.barostat
    if kind not in ("langevin", "berendsen"):
        raise ConfigError(
            f"a temperature ramp works with Langevin NVT or Berendsen NPT, not {kind!r} "
            "(its target temperature is fixed)"
        )


def _first_evaluation(atoms: Atoms, calc_name: str) -> np.ndarray:
    """Evaluate energy/forces once so element and setup errors surface with a clear message."""
    try:
        atoms.get_potential_energy()
        forces = atoms.get_forces()
    except MatloopError:
        raise
    except NotImplementedError as exc:  # e.g. ASE EMT: "No EMT-potential for Si"
        elements = ", ".join(sorted(set(atoms.get_chemical_symbols())))
        raise UnknownElementError(
            f"calculator {calc_name} cannot handle this structure (elements {elements}): {exc}"
        ) from exc
    except KeyError as exc:
        raise UnknownElementError(
            f"calculator {calc_name} has no parameters for {exc} in this structure"
        ) from exc
    if not np.all(np.isfinite(forces)):
        raise MatloopError(
            f"calculator {calc_name} returned non-finite forces on the start structure"
        )
    return forces


def _has_stress(calc: Any, atoms: Atoms) -> bool:
    return bool(all(atoms.pbc) and "stress" in getattr(calc, "implemented_properties", ()))


def _pressure_gpa(atoms: Atoms, with_stress: bool) -> float:
    if not with_stress:
        return float("nan")
    stress = atoms.get_stress(include_ideal_gas=True)
    return float(-np.mean(stress[:3]) * EV_PER_A3_TO_GPA)


def _thermalize(atoms: Atoms, temperature_k: float, rng: np.random.Generator) -> None:
    """Maxwell–Boltzmann momenta at `temperature_k` (K) with `rng`, less the centre-of-mass
    motion, rescaled so the kinetic temperature (over :func:`_kinetic_dof`) is exactly that
    (as LAMMPS' ``velocity create``; one draw of a small cell can be off by 25 %)."""
    from ase.md import velocitydistribution as vd

    if temperature_k <= 0:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    if hasattr(vd, "thermalize_momenta"):  # ASE ≥ 3.29
        vd.thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)
    else:  # pragma: no cover - older ASE
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_k, rng=rng)
    if len(atoms) > 1:  # the drift goes; the rescale below sets the temperature exactly
        vd.Stationary(atoms, preserve_temperature=False)
        if not any(atoms.pbc):
            vd.ZeroRotation(atoms)
    ekin = float(atoms.get_kinetic_energy())
    if ekin > 0:
        target = 0.5 * _kinetic_dof(atoms) * units.kB * temperature_k
        atoms.set_momenta(atoms.get_momenta() * math.sqrt(target / ekin))


def _com_dof(atoms: Atoms) -> int:
    """3 when the centre-of-mass momentum is conserved and ASE's count still holds it (more than
    one atom, no FixCom, no atom pinned in space), else 0."""
    from ase.constraints import FixCom

    if len(atoms) < 2 or _pins_positions(atoms):
        return 0
    return 0 if any(isinstance(c, FixCom) for c in atoms.constraints) else 3


def _kinetic_dof(atoms: Atoms) -> int:
    """Degrees of freedom of the temperature: ASE's count (3N less what constraints remove),
    less 3 for a conserved centre-of-mass momentum (as LAMMPS' ``compute temp``)."""
    return max(int(atoms.get_number_of_degrees_of_freedom()) - _com_dof(atoms), 1)


def _target_scale(atoms: Atoms, settings: NVE | NVT | NPT) -> float:
    """Factor on the temperature handed to ASE so that its thermostat, which counts 3N (or its
    own constraint) degrees of freedom, gives the kinetic energy (3N − 3)/2 k_B T.

    Langevin carries FixCom, so ASE's count is already right; NVE has no target."""
    if isinstance(settings, NVE) or getattr(settings, "thermostat", None) == "langevin":
        return 1.0
    ase_dof = 3 * len(atoms)
    if getattr(settings, "barostat", None) == "berendsen":  # scales to atoms.get_temperature()
        ase_dof = int(atoms.get_number_of_degrees_of_freedom())
    return (ase_dof - _com_dof(atoms)) / ase_dof


def _make_dynamics(
    atoms: Atoms,
    settings: NVE | NVT | NPT,
    timestep_fs: float,
    rng: np.random.Generator,
    target_scale: float = 1.0,
):
    """The ASE integrator for `settings` (temperatures in K, pressure in GPa, times in fs);
    the target temperature handed to ASE is `target_scale` × the requested one."""
    dt = timestep_fs * units.fs
    if isinstance(settings, NVE):
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    tdamp = (settings.tdamp_fs or 100 * timestep_fs) * units.fs
    temperature_k = settings.temperature_k * target_scale
    if isinstance(settings, NVT):
        if settings.thermostat == "nose-hoover":
            from ase.md.nose_hoover_chain import NoseHooverChainNVT

            return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_k, tdamp=tdamp)
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        # fixcm=True is deprecated (wrong distribution); ASE recommends FixCom instead. Atoms
        # pinned in space already anchor the cell, and FixCom would shift them with the rest.
        if not _pins_positions(atoms):
            atoms.set_constraint(list(atoms.constraints) + [FixCom()])
        friction = settings.friction_per_fs / units.fs
        return Langevin(
            atoms, timestep=dt, temperature_K=temperature_k, friction=friction, fixcm=False, rng=rng
        )
    pdamp = (settings.pdamp_fs or 1000 * timestep_fs) * units.fs
    pressure_au = settings.pressure_gpa * units.GPa
    if settings.barostat == "berendsen":
        from ase.md.nptberendsen import NPTBerendsen

        return NPTBerendsen(
            atoms,
            timestep=dt,
            temperature_K=temperature_k,
            pressure_au=pressure_au,
            taut=tdamp,
            taup=pdamp,
            compressibility_au=1.0 / (100.0 * units.GPa),
        )
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    if atoms.constraints:
        raise ConfigError("the MTK NPT integrator does not support constraints; remove them")
    return IsotropicMTKNPT(
        atoms,
        timestep=dt,
        temperature_K=temperature_k,
        pressure_au=pressure_au,
        tdamp=tdamp,
        pdamp=pdamp,
    )


# Trajectory suffixes and the ASE format frames are appended in, one at a time. Others are
# refused: single-frame formats (.vasp) or whole-file ones (.json, .cif) written frame by frame
# give a file that does not read back, and read-only ones (.dcd) fail mid-run.
TRAJ_FORMATS = {".traj": "traj", ".xyz": "extxyz", ".extxyz": "extxyz", ".pdb": "proteindatabank"}


def default_traj_interval(steps: int) -> int:
    """Steps between trajectory frames when none is given: about 200 frames a run."""
    return max(1, int(steps) // 200)


def check_traj_path(path: str | Path | None, option: str | None = None) -> None:
    """Raise ConfigError unless `path` (or None) is a trajectory format :func:`run_md` writes
    (`option`: the CLI option of a single structure written in the same formats)."""
    if path is None:
        return
    suffix = Path(path).suffix.lower()
    if suffix not in TRAJ_FORMATS:
        what = "an MD trajectory" if option is None else f"the {option} structure"
        raise ConfigError(
            f"cannot write {what} to {Path(path).name}: use "
            f"{', '.join(TRAJ_FORMATS)} (convert afterwards with ase.io)"
        )


def write_structure(path: str | Path, atoms: Atoms) -> None:
    """Write `atoms` (positions, cell, momenta; no calculator results, so the file is never
    mistaken for reference labels) atomically to `path` in a :data:`TRAJ_FORMATS` format."""
    from ase.io import write

    with atomic_path(path) as tmp:
        write(tmp, atoms.copy(), format=TRAJ_FORMATS[Path(path).suffix.lower()])


def _pins_positions(atoms: Atoms) -> bool:
    """Whether a constraint holds some atoms (or directions) fixed in space (FixAtoms, ...)."""
    from ase.constraints import FixAtoms, FixCartesian, FixedLine, FixedPlane

    pinned = (FixAtoms, FixCartesian, FixedLine, FixedPlane)
    return any(isinstance(c, pinned) for c in atoms.constraints)


class _TrajWriter:
    """Append frames to an ASE .traj, an extxyz or a multi-model PDB file."""

    def __init__(self, path: Path, suffix: str):
        self.path = path
        self._traj = None
        self._fd = None
        self._format = TRAJ_FORMATS[suffix.lower()]
        if self._format == "traj":
            from ase.io.trajectory import Trajectory

            self._traj = Trajectory(str(path), "w")
        else:
            self._fd = open(path, "w")  # noqa: SIM115 - closed in close()

    def write(self, atoms: Atoms, constraints: list) -> None:
        """Write `atoms` as a frame carrying `constraints` (the user's, not the integrator's)."""
        live = atoms.constraints
        atoms.set_constraint(constraints)
        try:
            if self._traj is not None:
                self._traj.write(atoms)
            else:
                from ase.io import write

                write(self._fd, atoms, format=self._format)
        finally:
            atoms.set_constraint(live)

    def close(self) -> None:
        if self._traj is not None:
            self._traj.close()
        if self._fd is not None:
            self._fd.close()


Observer = Callable[[int, Atoms], "str | None"]


class MDInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_md`, raised after the log and trajectory up to the last logged
    step were written (a KeyboardInterrupt, so callers that stop on Ctrl-C still stop)."""

    def __init__(self, step: int, steps: int, outputs: list[str | Path | None]) -> None:
        self.step = step
        written = [str(p) for p in outputs if p is not None]
        kept = f"; {' and '.join(written)} hold the run up to there" if written else ""
        super().__init__(f"MD interrupted (Ctrl-C) after step {self.step} of {steps}{kept}")


def _set_target_temperature(dyn: Any, temperature_k: float) -> None:
    """Move a thermostat's target (Langevin, Berendsen); other integrators keep theirs."""
    if hasattr(dyn, "set_temperature"):
        dyn.set_temperature(temperature_K=temperature_k)


@contextlib.contextmanager
def _maybe_atomic(path: str | Path | None) -> Iterator[Path | None]:
    if path is None:
        yield None
        return
    with atomic_path(path) as tmp:
        yield tmp


def run_md(
    atoms: Atoms,
    calculator: BaseCalculator | str,
    ensemble: Ensemble | NVE | NVT | NPT = "nve",
    temperature_k: float = 300.0,
    pressure_gpa: float = 0.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    traj: str | Path | None = None,
    log: str | Path | None = None,
    progress: bool = True,
    seed: int | None = 0,
    *,
    log_interval: int | None = None,
    traj_interval: int | None = None,
    initial_temperature_k: float | None = None,
    keep_velocities: bool = False,
    thermostat: str = "langevin",
    barostat: str = "mtk",
    friction_per_fs: float = 0.01,
    tdamp_fs: float | None = None,
    pdamp_fs: float | None = None,
    max_force_ev_per_a: float | None = 1000.0,
    keep_frames: bool = False,
    observe: Observer | None = None,
    observe_interval: int | None = None,
    temperature_end_k: float | None = None,
) -> MDResult:
    """Run MD of a copy of `atoms` with `calculator` and return the log and the final structure.

    `ensemble` is a name (with the flat settings below) or typed settings from
    :mod:`matloop.md.config` (:class:`NVE`, :class:`NVT`, :class:`NPT`), which then replace
    `temperature_k`, `pressure_gpa`, `thermostat`, `barostat`, `friction_per_fs` and the damping
    times. `calculator` is an ASE calculator or a name for
    :func:`matloop.calculators.resolve_calculator` (``emt``, ``sw``, ``module:function``, a
    model file). Velocities are drawn from a Maxwell–Boltzmann distribution at
    `initial_temperature_k` (default `temperature_k`) with `seed` and rescaled to exactly that
    temperature, unless `keep_velocities` and the structure already has momenta. Note that NVE
    started from a perfect crystal at T settles near T/2 (equipartition). Temperatures count
    3N − 3 degrees of freedom while the centre-of-mass momentum is zero and conserved (as
    LAMMPS' ``compute temp``; ASE counts 3N unless a constraint says otherwise): every
    thermostat targets E_kin = (3N − 3)/2 k_B T.

    `log` (text table, columns :data:`LOG_COLUMNS`) and `traj` (``.traj`` or ``.xyz``; each frame
    carries ``info["time_ps"]``) are written atomically at the end. The log always ends with the
    last step; the trajectory holds the steps on its `traj_interval` grid only (evenly spaced,
    as ASE and LAMMPS dumps; ``result.atoms`` is the final state). The run stops with a
    :class:`MatloopError` if energies become non-finite or a force exceeds `max_force_ev_per_a`
    (an exploding simulation).

    `observe(step, atoms)` is called every `observe_interval` steps (default: the log interval)
    on the live structure; a returned string stops the run there, and becomes
    ``result.extra["stopped"]`` (``"steps"`` when the run went to the end). With
    `temperature_end_k`, the thermostat target goes linearly from `temperature_k` to it (NVT and
    Berendsen NPT), updated at every observation or log row.
    """
    name = calculator if isinstance(calculator, str) else type(calculator).__name__
    if isinstance(calculator, str):
        from matloop.calculators import resolve_calculator

        calculator = resolve_calculator(calculator)
    if not isinstance(atoms, Atoms):
        raise ConfigError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    if isinstance(ensemble, NVE | NVT | NPT):
        settings = ensemble
        temperature_k = settings.temperature_k
        pressure_gpa = getattr(settings, "pressure_gpa", 0.0)
    else:
        settings = ensemble_settings(
            ensemble,
            temperature_k,
            pressure_gpa=pressure_gpa,
            thermostat=thermostat,
            barostat=barostat,
            friction_per_fs=friction_per_fs,
            tdamp_fs=tdamp_fs,
            pdamp_fs=pdamp_fs,
        )
    ens = settings.ensemble
    _validate(settings, timestep_fs, steps, atoms)
    check_traj_path(traj)
    _check_seed(seed)
    _check_ramp(settings, temperature_end_k)
    t0 = initial_temperature_k
    if t0 is not None and not (t0 >= 0 and math.isfinite(t0)):
        raise ConfigError(f"the initial temperature must be ≥ 0 K, got {t0!r}")
    steps = int(steps)
    if log_interval is None:
        log_interval = max(1, steps // 1000)
    if traj_interval is None:
        traj_interval = default_traj_interval(steps)
    if observe_interval is None:
        observe_interval = log_interval
    if log_interval <= 0 or traj_interval <= 0 or observe_interval <= 0:
        raise ConfigError("log_interval, traj_interval and observe_interval must be positive")

    atoms = atoms.copy()
    atoms.calc = calculator
    check_elements(atoms, calculator, name if isinstance(name, str) else None)
    with_stress = _has_stress(calculator, atoms)
    own_constraints = list(atoms.constraints)  # NVT adds FixCom; outputs get only these
    if ens == "npt" and not with_stress:
        raise ConfigError(f"NPT needs stresses; calculator {name} does not provide them")
    if ens == "npt":
        _warn_npt_vacuum(atoms, calculator)

    rng = np.random.default_rng(seed)
    has_momenta = bool(np.any(atoms.get_momenta() != 0))
    if not (keep_velocities and has_momenta):
        t0 = temperature_k if initial_temperature_k is None else initial_temperature_k
        _thermalize(atoms, t0, rng)
    forces0 = _first_evaluation(atoms, str(name))
    max_force = float(np.max(np.linalg.norm(forces0, axis=1)))

    target_scale = _target_scale(atoms, settings)
    dyn = _make_dynamics(atoms, settings, timestep_fs, rng, target_scale)
    n = len(atoms)
    dof = _kinetic_dof(atoms)  # after Langevin's FixCom
    rows: list[tuple[float, ...]] = []
    kept: list[Atoms] = []
    stopped = "steps"
    interrupted = False

    def keep(step: int) -> None:
        if keep_frames:
            frame = atoms.copy()
            frame.set_constraint()
            frame.info["time_ps"] = step * timestep_fs / 1000.0
            kept.append(frame)

    def record(step: int) -> tuple[float, ...]:
        epot = float(atoms.get_potential_energy())
        ekin = float(atoms.get_kinetic_energy())
        temp = 2.0 * ekin / (dof * units.kB)
        row = (
            step * timestep_fs / 1000.0,
            temp,
            epot,
            ekin,
            epot + ekin,
            _pressure_gpa(atoms, with_stress),
            float(atoms.get_volume()) if all(atoms.pbc) else float("nan"),
        )
        rows.append(row)
        return row

    from tqdm.auto import tqdm

    start = time.perf_counter()
    with (
        _maybe_atomic(traj) as traj_tmp,
        _maybe_atomic(log) as log_tmp,
    ):
        writer = _TrajWriter(traj_tmp, Path(traj).suffix) if traj_tmp is not None else None
        try:
            record(0)
            keep(0)
            if writer is not None:
                atoms.info["time_ps"] = 0.0
                writer.write(atoms, own_constraints)
            bar = tqdm(total=steps, disable=not progress, unit="step", desc=f"MD {ens.upper()}")
            done = 0
            while done < steps:
                chunk = min(log_interval - done % log_interval, steps - done)
                if writer is not None or keep_frames:
                    chunk = min(chunk, traj_interval - done % traj_interval)
                if observe is not None or temperature_end_k is not None:
                    chunk = min(chunk, observe_interval - done % observe_interval)
                if temperature_end_k is not None:
                    target = temperature_k + (temperature_end_k - temperature_k) * done / steps
                    _set_target_temperature(dyn, target * target_scale)
                try:
                    dyn.run(chunk)
                except KeyboardInterrupt:  # keep the steps already logged, then re-raise
                    interrupted = True
                    break
                done += chunk
                bar.update(chunk)
                forces = atoms.get_forces()
                fmax = float(np.max(np.linalg.norm(forces, axis=1)))
                max_force = max(max_force, fmax)
                if done % log_interval == 0 or done == steps:
                    row = record(done)
                    if not all(math.isfinite(x) for x in row[:5]):
                        raise MatloopError(
                            f"MD became unstable at step {done} (t = {row[0]:.3f} ps): "
                            "non-finite energy; try a shorter timestep"
                        )
                    bar.set_postfix(T=f"{row[1]:.0f}K", refresh=False)
                if max_force_ev_per_a is not None and fmax > max_force_ev_per_a:
                    raise MatloopError(
                        f"MD became unstable at step {done}: a force of {fmax:.3g} eV/Å exceeds "
                        f"{max_force_ev_per_a:g} eV/Å; try a shorter timestep or check the model"
                    )
                if done % traj_interval == 0:
                    keep(done)
                if writer is not None and done % traj_interval == 0:
                    atoms.info["time_ps"] = done * timestep_fs / 1000.0
                    writer.write(atoms, own_constraints)
                if observe is not None and done % observe_interval == 0:
                    why = observe(done, atoms)
                    if why:
                        stopped = str(why)
                        if rows[-1][0] != done * timestep_fs / 1000.0:
                            record(done)
                        break
            bar.close()
        finally:
            if writer is not None:
                writer.close()
        seconds = time.perf_counter() - start
        data = np.array(rows, dtype=float)
        if log_tmp is not None:
            header = (
                f"matloop md: ensemble={ens} n_atoms={n} timestep_fs={timestep_fs} "
                f"steps={steps} temperature_K={temperature_k}"
                + (f" pressure_GPa={pressure_gpa}" if ens == "npt" else "")
                + "\n"
                + " ".join(LOG_COLUMNS)
            )
            np.savetxt(log_tmp, data, header=header, fmt="%.10g")

    if interrupted:
        raise MDInterrupted(done, steps, [traj, log])
    atoms.info.pop("time_ps", None)
    atoms.set_constraint(own_constraints)
    extra: dict[str, Any] = {"seed": seed, "stopped": stopped}
    if temperature_end_k is not None:
        extra["temperature_end_k"] = temperature_end_k
    if ens == "nvt":
        extra["thermostat"] = thermostat
    if ens == "npt":
        extra["barostat"] = barostat
        extra["pressure_gpa_target"] = pressure_gpa
    return MDResult(
        ensemble=ens,
        n_atoms=n,
        steps=done,
        timestep_fs=float(timestep_fs),
        time_ps=data[:, 0],
        temperature_k=data[:, 1],
        epot_ev=data[:, 2],
        ekin_ev=data[:, 3],
        etot_ev=data[:, 4],
        pressure_gpa=data[:, 5],
        volume_a3=data[:, 6],
        seconds=seconds,
        atoms=atoms,
        max_force_ev_per_a=max_force,
        traj_path=Path(traj) if traj is not None else None,
        log_path=Path(log) if log is not None else None,
        extra=extra,
        frames=kept,
    )


def read_md_log(path: str | Path) -> dict[str, np.ndarray]:
    """Read a log written by :func:`run_md` into {column: array}."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"MD log not found: {p}")
    try:
        data = np.loadtxt(p, ndmin=2)
    except ValueError as exc:
        raise DataError(f"cannot read MD log {p}: {exc}") from exc
    if data.shape[1] != len(LOG_COLUMNS):
        raise DataError(f"MD log {p} has {data.shape[1]} columns, expected {len(LOG_COLUMNS)}")
    return {col: data[:, i] for i, col in enumerate(LOG_COLUMNS)}
