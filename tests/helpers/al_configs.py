"""A small active-learning configuration on EMT copper for loop tests (real EMT, tiny ACE)."""

from __future__ import annotations

from pathlib import Path

import yaml
from ase.build import bulk
from ase.io import write

ACE_TINY = {"model": {"params": {"correlation_order": 2, "max_degree": 6.0, "max_l": 2}}}


def tiny_al_config(tmp_path: Path, atoms=None, **over) -> Path:
    """Write start.xyz (`atoms`, default 4 Cu atoms) and al.yaml in `tmp_path`; each keyword
    updates one section of the configuration. Returns the YAML path."""
    if atoms is None:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    write(tmp_path / "start.xyz", atoms)
    cfg = {
        "seed": 0,
        "reference": {"calculator": "emt"},
        "initial": {"structures": "start.xyz", "n_label": 4, "rattle": 0.08},
        "explore": {
            "temperatures": [900.0],
            "steps": 10,
            "timestep_fs": 4.0,
            "walkers": 2,
            "sample_interval": 5,
        },
        "select": {"threshold": 0.0, "max_per_iteration": 3},
        "model": {"family": "ace", "committee": 1, "train": ACE_TINY},
        "budget": {"max_labels": 7},
        "stop": {"max_iterations": 3},
    }
    for k, v in over.items():
        cfg.setdefault(k, {}).update(v)
    path = tmp_path / "al.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
