"""Read trajectories (any ASE format) with clear errors, and their frame times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError, DataError


def read_trajectory(path: str | Path, index: str | slice = ":") -> list[Atoms]:
    """All frames of `path` (ASE .traj, extxyz, ...) as a list of Atoms."""
    from matloop.data.io import read_structures

    return read_structures(path, index=index, what="trajectory file")


def frame_times_ps(frames: list[Atoms], timestep_ps: float | None = None) -> np.ndarray:
    """Times of the frames in ps: from ``info['time_ps']`` (matloop md writes it) or `timestep_ps`.

    `timestep_ps` is the time between consecutive frames; it wins over stored times when given.
    """
    if timestep_ps is not None:
        if not timestep_ps > 0:
            raise ConfigError(f"time between frames must be > 0 ps, got {timestep_ps}")
        return np.arange(len(frames)) * float(timestep_ps)
    try:
        times = np.array([float(f.info["time_ps"]) for f in frames])
    except KeyError:
        raise ConfigError(
            "the trajectory frames carry no 'time_ps'; give the time between frames in ps "
            "(--dt, or timestep_ps in Python)"
        ) from None
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        raise DataError(
            "frame times are not increasing; give the time between frames in ps "
            "(--dt, or timestep_ps in Python)"
        )
    return times
