"""Analysis of structures and trajectories: RDF, coordination, MSD/diffusion, EOS, plots."""

from __future__ import annotations

from matloop.analysis.dynamics import (
    Diffusion,
    diffusion_coefficient,
    diffusion_from_trajectory,
    mean_squared_displacement,
    msd_fft,
    unwrapped_positions,
)
from matloop.analysis.eos import EOSCurve, equation_of_state
from matloop.analysis.structure import (
    RDF,
    compute_rdf,
    coordination_numbers,
    first_minimum_position,
    first_peak_position,
)
from matloop.analysis.trajectory import frame_times_ps, read_trajectory

__all__ = [
    "RDF",
    "Diffusion",
    "EOSCurve",
    "compute_rdf",
    "coordination_numbers",
    "diffusion_coefficient",
    "diffusion_from_trajectory",
    "equation_of_state",
    "first_minimum_position",
    "first_peak_position",
    "frame_times_ps",
    "mean_squared_displacement",
    "msd_fft",
    "read_trajectory",
    "unwrapped_positions",
]
