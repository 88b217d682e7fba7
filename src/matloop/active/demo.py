"""`matloop demo`: a small active-learning loop on EMT Cu, ending with the HTML report.

Everything is built in code: a 32-atom fcc Cu start, an independent high-temperature EMT test
set, and a config tuned to finish in a few minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

DEMO_CONFIG: dict[str, Any] = {
    "seed": 0,
    "reference": {"calculator": "emt"},
    "initial": {"structures": "start.xyz", "n_label": 8, "rattle": 0.08},
    "explore": {
        "temperatures": [400.0, 900.0, 1400.0],
        "steps": 60,
        "timestep_fs": 4.0,
        "walkers": 3,
        "sample_interval": 4,
        "strains": [-0.02, 0.0, 0.02],
        "uncertainty_limit": 0.5,
    },
    "select": {"threshold": 0.02, "max_per_iteration": 8},
    "model": {
        "family": "bpnn",
        "committee": 3,
        "train": {
            "model": {
                "params": {
                    "descriptor": {
                        "cutoff": 4.5,
                        "n_radial": 8,
                        "n_angular_eta": 1,
                        "zetas": [1.0, 4.0],
                    },
                    "hidden": [16, 16],
                }
            },
            "training": {
                "max_epochs": 150,
                "early_stopping_patience": 30,
                "batch_size": 4,
                "learning_rate": 0.005,
            },
        },
        # an epoch budget keeps results independent of machine load; the cap is a safety net
        "max_time_s": 40.0,
    },
    "budget": {"max_labels": 48},
    "stop": {"max_iterations": 4, "test_force_mae_target": 0.015},
    "test": {"data": "test.xyz"},
}


def demo_structures(seed: int = 0, n_test: int = 20) -> tuple[Any, list[Any]]:
    """The fcc Cu start (32 atoms) and an EMT test set from 1200 K Langevin MD."""
    import warnings

    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from matloop.data import label_with

    start = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    rng = np.random.default_rng(seed + 12345)
    md = start.copy()
    md.calc = EMT()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MaxwellBoltzmannDistribution(md, temperature_K=1200, rng=rng)
        dyn = Langevin(md, 4 * units.fs, temperature_K=1200, friction=0.02 / units.fs, rng=rng)
        dyn.run(100)
        test = []
        for _ in range(n_test):
            dyn.run(15)
            test.append(label_with(md, EMT(), config_type="test_1200K"))
    return start, test


def write_demo_inputs(run_dir: str | Path) -> Path:
    """Write start.xyz, test.xyz and demo.yaml into `run_dir`; return the config path."""
    from ase.io import write

    from matloop.utils.files import atomic_path, atomic_write_text

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    start, test = demo_structures()
    for name, frames in (("start.xyz", [start]), ("test.xyz", test)):
        if not (run_dir / name).exists():
            with atomic_path(run_dir / name) as tmp:
                write(tmp, frames, format="extxyz")
    cfg_path = run_dir / "demo.yaml"
    atomic_write_text(
        cfg_path, "# written by `matloop demo`\n" + yaml.safe_dump(DEMO_CONFIG, sort_keys=False)
    )
    return cfg_path


def run_demo(run_dir: str | Path = "matloop-demo", *, progress: bool = True) -> dict:
    """Run (or resume) the EMT Cu demo in `run_dir`; return the report dict."""
    from matloop.active.config import load_config
    from matloop.active.loop import run_active_learning

    cfg_path = write_demo_inputs(run_dir)
    return run_active_learning(load_config(cfg_path), run_dir, progress=progress)
