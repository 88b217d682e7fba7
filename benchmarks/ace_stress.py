"""Does the default ``ace`` fit gain from the training stresses? ``fit.stress_search`` on/off.

    python benchmarks/ace_stress.py --data-dir ../shared/data [--elements Mo Si Ge Li Cu Ni] \
        [--json benchmarks/results/ace_stress.json]

For each mlearn element: ``matloop train --train ELEMENT/train.xyz`` (default ``ace``, seed 0,
its own 10 % validation split) once with ``fit.stress_search: false`` (energies and forces
only, the behaviour before the option) and once with the default (stress rows tried at loss
weight 1 and 0.1, the fit with the lowest validation loss kept, stress MSE counted with weight
0.01), then ``matloop evaluate`` on ``ELEMENT/test.xyz``. Records the validation errors the fit
reports, which stress weight it kept, the test energy / force / stress MAE from the evaluate
JSON, the wall time of each fit and the machine load (1-min average) around it. The choice is
made on the validation split only; the test set is read by ``evaluate`` alone.
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

ELEMENTS = ["Mo", "Si", "Ge", "Li", "Cu", "Ni"]


def matloop(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "matloop", *args, "-q"], check=True)


def fit_facts(model_dir: Path) -> dict:
    """Validation errors and the stress search report that `fit_ace` stored in the model."""
    import torch

    metadata = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True)
    fit = metadata["metadata"]["fit"]
    return {
        "valid_errors": fit["valid_errors"],
        "stress_search": fit.get("stress_search"),
        "n_coefficients": fit["n_coefficients"],
    }


def test_metrics(path: Path) -> dict:
    overall = json.loads(path.read_text())
    keys = ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "stress_mae_gpa", "stress_rmse_gpa")
    return {k: overall.get(k) for k in keys}


def run_one(root: Path, work: Path, search: bool) -> dict:
    config = work / f"search_{search}.yaml"
    fit = f"    fit:\n      stress_search: {str(search).lower()}\n"
    config.write_text(f"model:\n  family: ace\n  params:\n{fit}")
    out = work / f"model_{search}"
    load = os.getloadavg()[0]
    t = time.perf_counter()
    train = ["train", "--train", str(root / "train.xyz"), "--config", str(config)]
    matloop(*train, "--out", str(out), "--seed", "0")
    wall = time.perf_counter() - t
    metrics = work / f"test_{search}.json"
    matloop("evaluate", str(out), str(root / "test.xyz"), "--json", str(metrics))
    return {
        "search": search,
        "fit_wall_s": round(wall, 1),
        "load_before": load,
        "load_after": os.getloadavg()[0],
        **fit_facts(out),
        "test": test_metrics(metrics),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--elements", nargs="+", default=ELEMENTS)
    parser.add_argument("--json", type=Path, default=None)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    results = {}
    for element in args.elements:
        root = args.data_dir / "mlearn" / element
        with tempfile.TemporaryDirectory() as tmp:
            runs = [run_one(root, Path(tmp), search) for search in (False, True)]
        results[element] = runs
        for r in runs:
            kept = (r["stress_search"] or {}).get("stress_weight")
            print(element, "search" if r["search"] else "off", kept, r["valid_errors"], r["test"])
    text = json.dumps({"elements": results, "cpu_count": os.cpu_count()}, indent=1)
    if args.json is None:
        print(text)
    else:
        atomic_write_text(args.json, text)


if __name__ == "__main__":
    main()
