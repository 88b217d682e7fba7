"""`matloop demo`: a small active-learning loop on EMT Cu, ending with the HTML report.

Everything is built in code: a 32-atom fcc Cu start, an independent high-temperature EMT test
set, and a config tuned to finish in about 15 s on 2 cores: one ``ace`` model with its
posterior σ, strained / vacancy / rattled starts, walkers heating from 600 K to 1200 K that stop
at 5 × the labelled structures' median σ, and D-optimal batches of two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEMO_CONFIG: dict[str, Any] = {
    "seed": 0,
    "reference": {"calculator": "emt"},
    "initial": {"structures": "start.xyz", "n_label": 3},
    "explore": {
        "temperatures": [1200.0],
        "steps": 60,
        "timestep_fs": 4.0,
        "walkers": 3,
        "sample_interval": 5,
    },
    "select": {"threshold": 0.0, "max_per_iteration": 2},
    # one linear ACE model with its Bayesian posterior σ (fits in about a second)
    "model": {
        "family": "ace",
        "committee": 1,
        # a small basis (order 3, degree 12, l ≤ 4) keeps the demo fast
        "train": {
            "model": {
                "params": {
                    "correlation_order": 3,
                    "max_degree": 12.0,
                    "max_l": 4,
                    "degree_drop_per_order": 0.0,
                }
            }
        },
    },
    "budget": {"max_labels": 24},
    "stop": {"max_iterations": 4, "test_force_mae_target": 0.002},
    "test": {"data": "test.xyz"},
    "strategy": {
        "starts": [{"kind": "strain"}, {"kind": "vacancy"}, {"kind": "rattle", "rattle": 0.1}],
        "walker_stop_factor": 5.0,
        "ramp_from_k": 600.0,
        "selection": "auto",
    },
}


def demo_structures(seed: int = 0, n_test: int = 20) -> tuple[Any, list[Any]]:
    """The fcc Cu start (32 atoms) and an EMT test set from 1200 K Langevin MD."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from matloop.data import label_with
    from matloop.md import run_md

    start = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    steps = 100 + 15 * n_test
    md = run_md(
        start,
        EMT(),
        "nvt",
        temperature_k=1200.0,
        timestep_fs=4.0,
        steps=steps,
        progress=False,
        seed=seed + 12345,
        friction_per_fs=0.02,
        keep_frames=True,
        traj_interval=15,
        log_interval=steps,
    )
    frames = [f for f in md.frames if f.info["time_ps"] * 250 > 100][:n_test]
    test = []
    for frame in frames:
        frame.info.pop("time_ps", None)
        test.append(label_with(frame, EMT(), config_type="test_1200K"))
    return start, test


CONFIG_NAME = "demo.yaml"
INPUT_NAMES = ("start.xyz", "test.xyz")


def demo_config_text() -> str:
    """The text of the demo's config file, ``demo.yaml`` (the same on every run)."""
    return "# written by `matloop demo`\n" + yaml.safe_dump(DEMO_CONFIG, sort_keys=False)


def is_demo_run(run_dir: str | Path) -> bool:
    """True if `run_dir` holds the ``demo.yaml`` this version of the demo writes, unchanged (a
    demo run to resume); False for a user's own demo.yaml or an edited one."""
    path = Path(run_dir) / CONFIG_NAME
    try:
        return path.is_file() and path.read_text() == demo_config_text()
    except (OSError, UnicodeDecodeError):
        return False


def check_demo_dir(run_dir: str | Path, force: bool = False) -> None:
    """The demo starts in a new or empty `run_dir`, or resumes one holding its own demo.yaml;
    any other directory (a user's files, a demo.yaml that is not the demo's) only with `force`,
    else one ConfigError line: nothing the user did not ask to overwrite is overwritten."""
    from matloop.errors import ConfigError
    from matloop.utils.lock import LOCK_NAME

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--dir {run_dir} exists and is not a directory")
    if force or not run_dir.is_dir() or is_demo_run(run_dir):
        return
    if (run_dir / CONFIG_NAME).exists():
        raise ConfigError(
            f"{run_dir / CONFIG_NAME} is not the demo's own config (edited, yours, or from "
            "another matloop version) and would be overwritten; move it, use another --dir, or "
            "--force to replace it"
        )
    if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise ConfigError(
            f"--dir {run_dir} already exists and holds no demo run (no demo.yaml); use --force to "
            "run the demo in it (overwriting its reports), or another --dir"
        )


def write_demo_inputs(run_dir: str | Path) -> Path:
    """Write start.xyz, test.xyz and demo.yaml into `run_dir`; return the config path.

    A demo run (its own demo.yaml, see :func:`is_demo_run`) keeps the inputs it started with;
    otherwise all three are written anew, replacing files of those names (so a start.xyz left
    there by someone else never becomes the demo's start)."""
    from ase.io import write

    from matloop.utils.files import atomic_path, atomic_write_text

    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_NAME
    resume = is_demo_run(run_dir)
    if resume and all((run_dir / name).is_file() for name in INPUT_NAMES):
        return cfg_path  # nothing to write: the structures are not made again
    run_dir.mkdir(parents=True, exist_ok=True)
    start, test = demo_structures()
    for name, frames in zip(INPUT_NAMES, ([start], test), strict=True):
        if not (resume and (run_dir / name).exists()):
            with atomic_path(run_dir / name) as tmp:
                write(tmp, frames, format="extxyz")
    if not resume:
        atomic_write_text(cfg_path, demo_config_text())
    return cfg_path


def run_demo(
    run_dir: str | Path = "matloop-demo", *, progress: bool = True, force: bool = False
) -> dict:
    """Run (or resume) the EMT Cu demo in `run_dir`; return the report dict.

    `run_dir` must be new, empty or an earlier demo run (:func:`check_demo_dir`) unless `force`.
    """
    from matloop.active.config import load_config
    from matloop.active.loop import run_active_learning

    check_demo_dir(run_dir, force)
    cfg_path = write_demo_inputs(run_dir)
    return run_active_learning(load_config(cfg_path), run_dir, progress=progress)
