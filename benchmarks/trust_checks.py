"""Measure the trust guarantees: two concurrent `matloop al run` on one directory, and planted
code-execution payloads for every loader. Writes benchmarks/results/trust.json.

    python benchmarks/trust_checks.py [--out benchmarks/results/trust.json]

Needs no data set (EMT Cu is built in); --data-dir is accepted for symmetry with the other
benchmarks and ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "MATLOOP_NUM_THREADS": "1"}


def _al_inputs(tmp: Path) -> Path:
    from ase.build import bulk
    from ase.io import write

    write(tmp / "start.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    descriptor = {"cutoff": 4.0, "n_radial": 4, "n_angular_eta": 1, "zetas": [1.0]}
    cfg = {
        "seed": 1,
        "reference": {"calculator": "emt"},
        "initial": {"structures": "start.xyz", "n_label": 6, "rattle": 0.08},
        "explore": {"temperatures": [600.0], "steps": 6, "timestep_fs": 4.0, "walkers": 2,
                    "sample_interval": 3},
        "select": {"threshold": 0.0, "max_per_iteration": 3},
        "model": {"committee": 2, "train": {
            "model": {"params": {"descriptor": descriptor, "hidden": [8]}},
            "training": {"max_epochs": 3, "batch_size": 4, "num_threads": 1}}},
        "budget": {"max_labels": 20},
        "stop": {"max_iterations": 1},
    }  # fmt: skip
    path = tmp / "al.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def concurrency(delay_s: float) -> dict:
    """Start two `al run` on one directory `delay_s` apart; count rows in the database."""
    from ase.io import read

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = _al_inputs(tmp)
        cmd = [sys.executable, "-m", "matloop", "al", "run", str(config), "--dir", "run", "-q"]
        procs = []
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    cmd, cwd=tmp, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
            )
            time.sleep(delay_s)
        errs = [p.communicate(timeout=900)[1] for p in procs]
        codes = [p.returncode for p in procs]
        con = sqlite3.connect(tmp / "run" / "state.db")
        rows = [json.loads(r[0]) for r in con.execute("SELECT key_value_pairs FROM systems")]
        con.close()
        kinds = Counter(r["kind"] for r in rows)
        keys = Counter((r["kind"], r["key"]) for r in rows)
        frames = len(read(tmp / "run" / "dataset.xyz", ":"))
        refused = [err.strip() for err in errs if "in use by another" in err]
    return {
        "delay_s": delay_s,
        "exit_codes": sorted(codes),
        "refusal": refused[0] if refused else None,
        "labels": kinds["label"],
        "selections": kinds["selection"],
        "dataset_frames": frames,
        "duplicated_rows": sum(n - 1 for n in keys.values() if n > 1),
    }


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def code_execution() -> dict:
    """Plant pickle/joblib/torch payloads for every loader; count executions (marker files)."""
    import joblib
    import torch

    import matloop
    from matloop.design.models import PropertyModel
    from matloop.errors import ModelFileError
    from matloop.surrogate import load_surrogate
    from matloop.training.trainer import load_checkpoint

    loaders = {
        "surrogate (load_surrogate)": load_surrogate,
        "design (PropertyModel.load)": PropertyModel.load,
        "trainer checkpoint (load_checkpoint)": load_checkpoint,
        "model (matloop.load)": matloop.load,
    }
    tried = refused = executed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for how in ("pickle", "joblib", "torch"):
            for name, loader in loaders.items():
                marker = Path(tmp) / f"PWNED-{how}-{len(name)}"
                path = Path(tmp) / f"{how}.bin"
                payload = {"model": _Payload(str(marker))}
                if how == "pickle":
                    path.write_bytes(pickle.dumps(payload))
                elif how == "joblib":
                    joblib.dump(payload, path)
                else:
                    torch.save(payload, path)
                tried += 1
                try:
                    loader(path)
                except ModelFileError:
                    refused += 1
                executed += marker.exists()
    return {"payloads": tried, "refused": refused, "executed": executed,
            "loaders": list(loaders)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results/trust.json")
    parser.add_argument("--data-dir", default=None, help="ignored (no data needed)")
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--out", args.out)], force=args.force)
    load_before = os.getloadavg()
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    result = {
        "code_execution": code_execution(),
        "concurrency": [concurrency(0.0), concurrency(0.5)],
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cpu_s_driver": round(time.process_time() - cpu0, 1),
        "wall_s": round(time.perf_counter() - wall0, 1),
        "cpu_count": os.cpu_count(),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
