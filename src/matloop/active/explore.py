"""Exploration: MD walkers driven by the current model, snapshots with their uncertainty.

Walkers run through :func:`matloop.md.run_md` (Langevin NVT, or Berendsen NPT at a pressure) and
look at the model's σ (:mod:`matloop.calculators.uncertainty`, times the calibration scale) every
``sample_interval`` steps; a walker stops at the first snapshot whose σ passes its limit, so
exploration stays near the configurations the model can already describe.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from matloop.active.config import ExploreConfig
from matloop.active.explorers import sample_every
from matloop.calculators.uncertainty import predict_uncertainty
from matloop.errors import MatloopError


@dataclass
class ExploreResult:
    """Snapshots (copies without calculator) and per-snapshot σ (max atomic forces_std in eV/Å,
    or energy_std in eV/atom for models with only an energy variance), calibrated."""

    snapshots: list[Atoms] = field(default_factory=list)
    uncertainties: list[float] = field(default_factory=list)
    walkers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_uncertainty(self) -> float:
        return float(max(self.uncertainties)) if self.uncertainties else 0.0

    @property
    def mean_uncertainty(self) -> float:
        return float(np.mean(self.uncertainties)) if self.uncertainties else 0.0


def _min_distance(atoms: Atoms) -> float:
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2:
        return np.inf
    d = neighbor_list("d", atoms, 1.0)
    return float(d.min()) if len(d) else np.inf


@dataclass
class WalkerSpec:
    """One walker: target temperature (K), optional ramp start (K), pressure (GPa) and σ limit."""

    temperature: float
    steps: int
    limit: float
    pressure_gpa: float | None = None
    ramp_from: float | None = None
    scale: float = 1.0
    driver: Any = None  # calculator that moves the atoms (default: the model itself)


def run_walker(
    atoms: Atoms,
    model,
    spec: WalkerSpec,
    cfg: ExploreConfig,
    rng: np.random.Generator,
) -> tuple[list[Atoms], list[float], dict[str, Any]]:
    """Run one MD walker; return snapshots, their σ and a summary.

    The summary's ``ensemble`` is what the walker ran: ``npt`` at ``pressure_gpa`` (GPa) for a
    start periodic along a, b and c without vacuum, else ``nvt`` (``pressure_gpa`` None, even if
    one was asked for: a slab or cluster has no pressure to hold, and NPT would squeeze out the
    vacuum of one padded into a periodic cell). ``vacuum_axes`` lists the cell axes (0, 1, 2)
    of such a padded start (an empty gap wider than :func:`~matloop.md.runner.vacuum_gap_width`
    of the calculator that moves the atoms)."""
    from matloop.md import run_md
    from matloop.md.runner import vacuum_axes, vacuum_gap_width

    snaps: list[Atoms] = []
    uncs: list[float] = []
    state = {"stopped": "steps"}
    t_start = spec.ramp_from if spec.ramp_from is not None else spec.temperature

    def observe(step: int, live: Atoms) -> str | None:
        unc = predict_uncertainty(model, live, spec.scale)
        if not np.isfinite(unc.structure) or _min_distance(live) < 0.5:
            return "unphysical"
        snap = live.copy()
        snap.set_constraint()
        snap.calc = None
        snap.set_velocities(np.zeros((len(snap), 3)))
        target = t_start + (spec.temperature - t_start) * step / spec.steps
        snap.info.update(temperature=float(target), md_step=int(step), sigma=unc.structure)
        snaps.append(snap)
        uncs.append(unc.structure)
        return "uncertainty_limit" if unc.structure > spec.limit else None

    mover = spec.driver if spec.driver is not None else model
    padded: list[int] = []
    if spec.pressure_gpa is not None and atoms.pbc.all():
        padded = vacuum_axes(atoms, vacuum_gap_width(mover))
    npt = spec.pressure_gpa is not None and bool(atoms.pbc.all()) and not padded
    try:
        res = run_md(
            atoms,
            mover,
            ensemble="npt" if npt else "nvt",
            temperature_k=t_start,
            temperature_end_k=spec.temperature if spec.ramp_from is not None else None,
            pressure_gpa=spec.pressure_gpa or 0.0,
            timestep_fs=cfg.timestep_fs,
            steps=spec.steps,
            progress=False,
            seed=int(rng.integers(2**31)),
            barostat="berendsen",
            friction_per_fs=cfg.friction,
            tdamp_fs=100.0,
            pdamp_fs=500.0,
            log_interval=spec.steps,
            observe=observe,
            # a walker shorter than the interval records its last step, not nothing
            observe_interval=sample_every(spec.steps, cfg.sample_interval),
            max_force_ev_per_a=None,
        )
        state["stopped"] = res.extra["stopped"]
        done = res.steps
    except MatloopError as exc:  # an exploding walker stops; its earlier snapshots stay
        state["stopped"] = f"error: {str(exc)[:80]}"
        done = int(snaps[-1].info["md_step"]) if snaps else 0
    info = {
        "temperature": float(spec.temperature),
        "steps_done": int(done),
        "stopped": state["stopped"],
        "ensemble": "npt" if npt else "nvt",
        "pressure_gpa": spec.pressure_gpa if npt else None,
        "vacuum_axes": padded,
        "ramp_from": spec.ramp_from,
        "limit": float(spec.limit),
        "max_unc": float(max(uncs)) if uncs else 0.0,
    }
    return snaps, uncs, info


def walker_counts(walkers: list[dict[str, Any]]) -> str:
    """``"3 walkers (2 NPT, 1 NVT)"``: how many walkers ran and in which ensemble (a walker
    record without ``ensemble``, from a run before it was recorded, counts as NVT)."""
    n = len(walkers)
    npt = sum(1 for w in walkers if w.get("ensemble") == "npt")
    return f"{n} walker{'s' if n != 1 else ''} ({npt} NPT, {n - npt} NVT)"


def explore(
    starts: list[Atoms],
    model,
    cfg: ExploreConfig,
    *,
    seed: int,
    iteration: int,
    limit: float | None = None,
    scale: float = 1.0,
    ramp_from: float | None = None,
    driver: Any = None,
) -> ExploreResult:
    """Run `cfg.walkers` walkers cycling over temperatures × strains (× pressures).

    `limit` (σ units, calibrated) replaces ``cfg.uncertainty_limit`` (default: that of the
    model's σ kind, :meth:`ExploreConfig.fixed_limit`); `scale`
    is the calibration factor on the model's σ; `ramp_from` (K) starts each walker there and
    heats it to its target;
    `driver` (a calculator, e.g. a foundation model) moves the walkers instead of the model, whose
    σ still decides where they stop and what is selected.
    """
    from matloop.calculators.uncertainty import uncertainty_kind

    rng = np.random.default_rng([seed, iteration])
    if limit is None:
        limit = cfg.fixed_limit(uncertainty_kind(model))
    pressures: list[float | None] = list(cfg.pressures_gpa) if cfg.pressures_gpa else [None]
    combos = list(itertools.product(cfg.temperatures, cfg.strains, pressures))
    result = ExploreResult()
    for w in range(cfg.walkers):
        temperature, strain, pressure = combos[(w + iteration) % len(combos)]
        start = starts[int(rng.integers(len(starts)))].copy()
        if strain and start.pbc.all():
            start.set_cell(start.cell * (1.0 + strain), scale_atoms=True)
        spec = WalkerSpec(
            temperature=float(temperature),
            steps=cfg.steps,
            limit=float(limit),
            pressure_gpa=pressure,
            ramp_from=None if ramp_from is None or ramp_from >= temperature else float(ramp_from),
            scale=scale,
            driver=driver,
        )
        snaps, uncs, info = run_walker(start, model, spec, cfg, rng)
        info.update(walker=w, strain=float(strain))
        for s in snaps:
            s.info.update(walker=w, strain=float(strain), explorer="md")
        result.snapshots.extend(snaps)
        result.uncertainties.extend(uncs)
        result.walkers.append(info)
    if any(info["vacuum_axes"] for info in result.walkers):
        # one fixed text: shown once per run (Python's default filter, the CLI's dedup)
        warnings.warn(
            "explore.pressures_gpa: walkers started from a cell padded with vacuum (an empty gap "
            "along a periodic axis, e.g. a 'surface' start) run NVT at no pressure, the others "
            "NPT (a barostat would close the vacuum); each walker's 'ensemble' says which",
            stacklevel=2,
        )
    return result
