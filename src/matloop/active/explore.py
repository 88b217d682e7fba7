"""Exploration: MD walkers driven by the committee, snapshots with their uncertainty."""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms

from matloop.active.config import ExploreConfig


@dataclass
class ExploreResult:
    """Snapshots (copies without calculator) and per-snapshot max atomic forces_std (eV/Å)."""

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


def run_walker(
    atoms: Atoms, committee, *, temperature: float, steps: int, cfg: ExploreConfig,
    rng: np.random.Generator, pressure_gpa: float | None = None,
) -> tuple[list[Atoms], list[float], dict[str, Any]]:
    """Run one MD walker; return snapshots, their uncertainties and a summary."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = atoms.copy()
    atoms.calc = committee
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        if pressure_gpa is not None and atoms.pbc.all():
            from ase.md.nptberendsen import NPTBerendsen

            dyn = NPTBerendsen(
                atoms, cfg.timestep_fs * units.fs, temperature_K=temperature,
                pressure_au=pressure_gpa * units.GPa, taut=100 * units.fs,
                taup=500 * units.fs, compressibility_au=1.0 / (100 * units.GPa),
            )
        else:
            dyn = Langevin(
                atoms, cfg.timestep_fs * units.fs, temperature_K=temperature,
                friction=cfg.friction / units.fs, rng=rng,
            )
    snaps: list[Atoms] = []
    uncs: list[float] = []
    stopped = "steps"
    done = 0
    while done < steps:
        n = min(cfg.sample_interval, steps - done)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dyn.run(n)
        except Exception as exc:  # noqa: BLE001 - an exploding walker just stops
            stopped = f"error: {type(exc).__name__}"
            break
        done += n
        unc_atoms = committee.get_property("forces_std", atoms)
        unc = float(np.max(unc_atoms)) if len(unc_atoms) else 0.0
        if not np.isfinite(unc) or _min_distance(atoms) < 0.5:
            stopped = "unphysical"
            break
        snap = atoms.copy()
        snap.calc = None
        snap.set_velocities(np.zeros((len(snap), 3)))
        snap.info.update(temperature=float(temperature), md_step=int(done),
                         energy_std=float(committee.get_property("energy_std", atoms)))
        snaps.append(snap)
        uncs.append(unc)
        if unc > cfg.uncertainty_limit:
            stopped = "uncertainty_limit"
            break
    info = {"temperature": float(temperature), "steps_done": int(done), "stopped": stopped,
            "pressure_gpa": pressure_gpa, "max_unc": float(max(uncs)) if uncs else 0.0}
    return snaps, uncs, info


def explore(
    starts: list[Atoms], committee, cfg: ExploreConfig, *, seed: int, iteration: int,
) -> ExploreResult:
    """Run `cfg.walkers` walkers cycling over temperatures × strains (× pressures)."""
    rng = np.random.default_rng([seed, iteration])
    pressures: list[float | None] = list(cfg.pressures_gpa) if cfg.pressures_gpa else [None]
    combos = list(itertools.product(cfg.temperatures, cfg.strains, pressures))
    result = ExploreResult()
    for w in range(cfg.walkers):
        temperature, strain, pressure = combos[(w + iteration) % len(combos)]
        start = starts[int(rng.integers(len(starts)))].copy()
        if strain and start.pbc.all():
            start.set_cell(start.cell * (1.0 + strain), scale_atoms=True)
        snaps, uncs, info = run_walker(
            start, committee, temperature=temperature, steps=cfg.steps, cfg=cfg, rng=rng,
            pressure_gpa=pressure,
        )
        info.update(walker=w, strain=float(strain))
        for s in snaps:
            s.info.update(walker=w, strain=float(strain))
        result.snapshots.extend(snaps)
        result.uncertainties.extend(uncs)
        result.walkers.append(info)
    return result
