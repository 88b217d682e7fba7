"""What float32 prediction costs a fitted `ace` model in accuracy, and float64 in time.

    python benchmarks/ace_precision.py --data-dir ../shared/data [--element Ni] \
        [--json benchmarks/results/ace_precision.json]

Fits the default ``ace`` on mlearn ``ELEMENT/train.xyz`` with ``matloop train`` (float64 solve,
the default float32 model), then predicts ``test.xyz`` with the same model cast to float32 and
to float64: test energy MAE (meV/atom) and force MAE (eV/Å) for each, the float32 − float64
differences per structure (mean and max |ΔE| per atom, max |ΔF|), and the median time of one
energy + forces call on the first test structure (20 calls after 5 warm-up calls, one thread).
The machine load (1-min average) is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def fit(train: Path, out: Path) -> float:
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "matloop", "train", "--train", str(train), "--out", str(out)]
    subprocess.run([*cmd, "--seed", "0", "-q"], check=True)
    return time.perf_counter() - t


def predictions(calc, frames) -> list[tuple[float, np.ndarray]]:
    out = []
    for atoms in frames:
        work = atoms.copy()
        work.calc = calc
        out.append((work.get_potential_energy(), work.get_forces()))
    return out


def errors(preds, frames) -> tuple[list[float], np.ndarray]:
    """|ΔE| per atom (eV) per structure and all |ΔF| components (eV/Å) against the labels."""
    pairs = list(zip(preds, frames, strict=True))
    e_err = [abs(e - a.get_potential_energy()) / len(a) for (e, _), a in pairs]
    f_err = np.concatenate([np.abs(f - a.get_forces()).ravel() for (_, f), a in pairs])
    return e_err, f_err


def call_ms(calc, atoms, calls: int = 20) -> float:
    times = []
    for k in range(calls + 5):
        work = atoms.copy()
        work.rattle(0.01, seed=k)
        work.calc = calc
        t = time.perf_counter()
        work.get_forces()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times[5:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--element", default="Ni")
    parser.add_argument("--json", type=Path, default=None)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    import torch
    from ase.io import read

    import matloop

    torch.set_num_threads(1)
    root = args.data_dir / "mlearn" / args.element
    test = read(root / "test.xyz", ":")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        fit_s = fit(root / "train.xyz", Path(tmp) / "run")
        result = {"element": args.element, "fit_wall_s": round(fit_s, 1), "dtypes": {}}
        preds = {}
        for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
            calc = matloop.load(Path(tmp) / "run")
            calc.model.to(dtype)
            preds[name] = predictions(calc, test)
            e_err, f_err = errors(preds[name], test)
            result["dtypes"][name] = {
                "energy_mae_mev_per_atom": 1000 * float(np.mean(e_err)),
                "force_mae_ev_per_a": float(np.mean(f_err)),
                "ms_per_energy_forces_call": call_ms(calc, test[0]),
                "atoms_in_timed_structure": len(test[0]),
            }
    pairs = list(zip(preds["float32"], preds["float64"], test, strict=True))
    de = [abs(a[0] - b[0]) / len(s) for a, b, s in pairs]
    df = [float(np.abs(a[1] - b[1]).max()) for a, b, _ in pairs]
    result["float32_minus_float64"] = {
        "mean_abs_energy_mev_per_atom": 1000 * float(np.mean(de)),
        "max_abs_energy_mev_per_atom": 1000 * float(np.max(de)),
        "max_abs_force_ev_per_a": float(np.max(df)),
    }
    result.update(load_before=load_before, load_after=os.getloadavg()[0], cpu_count=os.cpu_count())
    print(json.dumps(result, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
