"""Calculators with an uncertainty for active-learning and MD tests (real potentials only)."""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

from matloop.calculators.committee import CommitteeCalculator


def emt_lj_committee() -> CommitteeCalculator:
    """Two models that disagree (EMT and Lennard-Jones): σ grows with displacement."""
    return CommitteeCalculator([EMT(), LennardJones(sigma=2.3, epsilon=0.4, rc=5.0)])


def tiny_ace_start(tmp_path: Path) -> tuple[Atoms, Path, str]:
    """An on-the-fly start: two rattled 8-atom fcc Cu cells labelled with EMT, written to
    ``tmp_path/labels.xyz``, and a tiny `ace` fitted on them: (the unrattled cell, the labels
    file, the model path)."""
    from ase.build import bulk
    from ase.io import write

    from helpers.al_configs import ACE_TINY
    from matloop.data import Dataset, label_with
    from matloop.training import TrainConfig, train
    from matloop.training.config import parse_config

    cu = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    labels = []
    for seed in range(2):
        a = cu.copy()
        a.rattle(0.05, seed=seed)
        labels.append(label_with(a, EMT()))
    path = tmp_path / "labels.xyz"
    write(path, labels)
    cfg = parse_config({"model": {"family": "ace", **ACE_TINY["model"]}}, TrainConfig, "test")
    model = train(Dataset(labels), tmp_path / "ace", config=cfg, progress=False).model_path
    return cu, path, str(model)
