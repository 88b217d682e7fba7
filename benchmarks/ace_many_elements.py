"""Size, fit time, memory and accuracy of `ace` on a five-element alloy against its degree.

    python benchmarks/ace_many_elements.py [--degrees default,6,7,8] [--frames 120] \
        [--json benchmarks/results/ace_many_elements.json]

The data: fcc CuNiPdAgAu cells of 32 atoms with random occupancy, volume scaled by 0.97-1.04
and rattled by 0.02-0.12 Å, labelled with ASE's EMT (energy, forces, stress); `--frames` for
training (``matloop train`` splits off its own validation part), a third of that as the test
set, from other seeds. Each degree is one ``matloop train --config`` (``model.params.max_degree``;
``default`` sets none) and one ``matloop evaluate --json`` in a subprocess: wall and CPU seconds
(user + system of the child), its peak resident memory (polled every 0.2 s), the validation
errors it prints and the test errors. No data from ``--data-dir`` is needed; the machine load
(1-min average) is recorded before and after each fit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

ELEMENTS = ["Cu", "Ni", "Pd", "Ag", "Au"]


def alloy_frames(n_frames: int, seed: int) -> list:
    """EMT-labelled 32-atom fcc cells of the five elements at random."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from matloop.data import label_with

    calc = EMT()
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.85, cubic=True).repeat((2, 2, 2))
        atoms.symbols = list(rng.choice(ELEMENTS, len(atoms)))
        atoms.set_cell(atoms.cell * rng.uniform(0.97, 1.04), scale_atoms=True)
        atoms.rattle(rng.uniform(0.02, 0.12), seed=int(rng.integers(1_000_000_000)))
        frames.append(label_with(atoms, calc))
    return frames


def n_coefficients(max_degree: float | None) -> int:
    from matloop.models.ace.family import AcePotential
    from matloop.models.params import AceParams

    return AcePotential(ELEMENTS, params=AceParams(max_degree=max_degree)).n_coefficients


def run_measured(argv: list[str]) -> dict:
    """Run `argv`; wall and CPU seconds, peak RSS (MB, process and children) and stdout."""
    start = time.perf_counter()
    proc = psutil.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, cpu = 0.0, 0.0
    while proc.poll() is None:
        try:
            family = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in family) / 1e6)
            times = proc.cpu_times()
            cpu = times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
        time.sleep(0.2)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out[-2000:]}")
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu, "peak_rss_mb": peak, "out": out}


def validation_errors(text: str) -> dict:
    """The `valid` row of `matloop train`'s table: E MAE/RMSE (meV/atom), F MAE/RMSE (eV/Å)."""
    row = next(line for line in text.splitlines() if line.startswith("valid"))
    values = [float(v) for v in row.split()[1:5]]
    keys = ("energy_mae_mev_atom", "energy_rmse_mev_atom", "forces_mae_ev_a", "forces_rmse_ev_a")
    return dict(zip(keys, values, strict=True))


def measure(degree: str, work: Path, train: Path, test: Path) -> dict:
    max_degree = None if degree == "default" else float(degree)
    params = {} if max_degree is None else {"max_degree": max_degree}
    config = work / f"ace_{degree}.yaml"
    config.write_text(yaml.safe_dump({"model": {"family": "ace", "params": params}}))
    out = work / f"run_{degree}"
    matloop = [sys.executable, "-m", "matloop"]
    load_before = os.getloadavg()[0]
    fit = run_measured(
        [*matloop, "train", "--train", str(train), "--out", str(out)]
        + ["--config", str(config), "-q"]
    )
    load_after = os.getloadavg()[0]
    metrics = work / f"test_{degree}.json"
    run_measured([*matloop, "evaluate", str(out), str(test), "--json", str(metrics), "-q"])
    test_metrics = json.loads(metrics.read_text())
    row = {
        "max_degree": degree,
        "n_coefficients": n_coefficients(max_degree),
        "fit_wall_s": round(fit["wall_s"], 1),
        "fit_cpu_s": round(fit["cpu_s"], 1),
        "fit_peak_rss_mb": round(fit["peak_rss_mb"]),
        "load_before": load_before,
        "load_after": load_after,
        "valid": validation_errors(fit["out"]),
        "test": test_metrics,
    }
    print(json.dumps({k: v for k, v in row.items() if k != "test"}), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degrees", default="default,6,7,8")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/ace_many_elements.json")
    )
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    from ase.io import write

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write(work / "train.xyz", alloy_frames(args.frames, seed=1))
        write(work / "test.xyz", alloy_frames(max(1, args.frames // 3), seed=2))
        rows = [
            measure(d, work, work / "train.xyz", work / "test.xyz") for d in args.degrees.split(",")
        ]
    result = {
        "elements": ELEMENTS,
        "frames_train": args.frames,
        "atoms_per_frame": 32,
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    atomic_write_text(args.json, json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
