"""On-the-fly learning during MD: labels used and test error after T ps (Si, Kumagai, ace).

Start: `--n-start` labels of rattled diamond Si (64 atoms; Gaussian 0.1 Å), an `ace` fit on them,
then NVT MD at `--temperature` with on-the-fly learning (:mod:`matloop.active.onthefly`: label
with Kumagai when the largest atomic force σ passes `--threshold`, refit, continue). The test
set is independent Kumagai MD at the same temperature. Reported: labels added, refits, test
force/energy MAE of the start model and of the final one, wall and CPU time, load.

    python benchmarks/al_onthefly.py --json benchmarks/results/al_onthefly.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--data-dir", type=Path, default=None, help="unused: data are generated")
    p.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs/al_onthefly"))
    p.add_argument("--n-start", type=int, default=10)
    p.add_argument("--temperature", type=float, default=1200.0)
    p.add_argument("--ps", type=float, default=10.0, help="MD length (ps)")
    p.add_argument("--timestep", type=float, default=2.0, help="fs")
    p.add_argument("--threshold", type=float, default=0.05, help="σ that triggers a label, eV/Å")
    p.add_argument("--n-test", type=int, default=15)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(p)
    args = p.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)
    from ase.build import bulk
    from ase.io import write

    import matloop
    from matloop.active.onthefly import OnTheFlyLearner, OnTheFlySettings
    from matloop.calculators import resolve_calculator
    from matloop.data import Dataset, label_with
    from matloop.evaluation import evaluate
    from matloop.md import run_md
    from matloop.training import TrainConfig, train
    from matloop.training.config import parse_config
    from matloop.utils.threads import configure_torch_threads

    configure_torch_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    wdir = args.work_dir
    wdir.mkdir(parents=True, exist_ok=True)
    si = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 2, 2)
    ref = resolve_calculator("kumagai")
    rng = np.random.default_rng(0)
    start = []
    for _ in range(args.n_start):
        a = si.copy()
        a.positions += rng.normal(0, 0.1, a.positions.shape)
        start.append(label_with(a, ref))
    write(wdir / "start_labels.xyz", start, format="extxyz")
    md = run_md(
        si,
        "kumagai",
        "nvt",
        temperature_k=args.temperature,
        timestep_fs=args.timestep,
        steps=100 + 25 * args.n_test,
        progress=False,
        seed=1000,
        keep_frames=True,
        traj_interval=25,
    )
    test = Dataset([label_with(f, ref) for f in md.frames[5:]], validate=False)
    cfg = parse_config({"model": {"family": "ace"}}, TrainConfig, "benchmark")
    model0 = train(Dataset(start), wdir / "model_start", config=cfg, progress=False).model_path
    before = evaluate(matloop.load(model0), test)
    write(wdir / "si64.xyz", si, format="extxyz")
    steps = int(round(args.ps * 1000 / args.timestep))
    settings = OnTheFlySettings(
        reference="kumagai",
        threshold=args.threshold,
        temperature_k=args.temperature,
        timestep_fs=args.timestep,
        steps=steps,
        check_interval=10,
    )
    t1, c1 = time.perf_counter(), time.process_time()
    state = OnTheFlyLearner(wdir / "otf", settings).run(str(model0), si, wdir / "start_labels.xyz")
    md_wall, md_cpu = time.perf_counter() - t1, time.process_time() - c1
    after = evaluate(matloop.load(state["model"]), test)
    out = {
        "benchmark": "al_onthefly",
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "n_test": len(test),
        "labels_start": args.n_start,
        "labels_added": len(state["events"]),
        "events": state["events"],
        "steps_done": state["step"],
        "max_sigma_seen_ev_per_a": state.get("max_sigma"),
        "test_before": {k: before[k] for k in ("energy_mae_mev_per_atom", "force_mae_ev_per_a")},
        "test_after": {k: after[k] for k in ("energy_mae_mev_per_atom", "force_mae_ev_per_a")},
        "md_wall_seconds": md_wall,
        "md_cpu_seconds": md_cpu,
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "loadavg_end": list(os.getloadavg()),
    }
    print(
        json.dumps(
            {
                k: out[k]
                for k in (
                    "labels_added",
                    "steps_done",
                    "test_before",
                    "test_after",
                    "md_wall_seconds",
                )
            },
            indent=1,
        )
    )
    if args.json:
        atomic_write_text(args.json, json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
