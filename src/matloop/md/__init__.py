"""Molecular dynamics on any ASE calculator (ASE integrators): NVE, NVT, NPT, with drift."""

from __future__ import annotations

from matloop.calculators.elements import check_elements, supported_elements
from matloop.md.config import ENSEMBLES, NPT, NVE, NVT, EnsembleSettings, ensemble_settings
from matloop.md.runner import (
    LOG_COLUMNS,
    MDResult,
    energy_drift,
    read_md_log,
    read_structure,
    run_md,
)

__all__ = [
    "ENSEMBLES",
    "NPT",
    "NVE",
    "NVT",
    "EnsembleSettings",
    "ensemble_settings",
    "LOG_COLUMNS",
    "MDResult",
    "check_elements",
    "energy_drift",
    "read_md_log",
    "read_structure",
    "run_md",
    "supported_elements",
]
