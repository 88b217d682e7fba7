"""Calculators with an uncertainty for active-learning and MD tests (real potentials only)."""

from __future__ import annotations

from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from matloop.calculators.committee import CommitteeCalculator


def emt_lj_committee() -> CommitteeCalculator:
    """Two models that disagree (EMT and Lennard-Jones): σ grows with displacement."""
    return CommitteeCalculator([EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0)])
