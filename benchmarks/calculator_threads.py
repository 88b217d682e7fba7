"""Torch threads of a loaded calculator: one force call of `ace` with 1 or 2 torch threads.

    python benchmarks/calculator_threads.py --json benchmarks/results/calculator_threads.json

`matloop.load()` calculators compute with matloop's thread count (``MATLOOP_NUM_THREADS`` or 1)
unless ``num_threads`` is given. This measures why: the median wall and CPU milliseconds of one
energy + forces call on fcc Cu (64 and 500 atoms; the default `AceParams` basis with a ridge fit
to a few EMT cells, as in ``ace_md_speed.py``) with 1 and 2 torch threads, on the quiet machine
and with a second process keeping one core busy (a pure-Python loop), one worker process per
measurement. The 1-minute load average is recorded before each.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from ace_md_speed import quick_ace_model  # noqa: E402

WORKER = """
import json, statistics, sys, time
import torch
sys.path.insert(0, {bench!r})
from ace_md_speed import make_cell
from matloop.calculators import load_calculator
n_atoms, threads = int(sys.argv[2]), int(sys.argv[3])
atoms = make_cell("Cu", n_atoms)
atoms.rattle(0.05, seed=0)
atoms.calc = load_calculator(sys.argv[1], num_threads=threads)
atoms.get_forces()
walls, cpus = [], []
start = time.perf_counter()
while time.perf_counter() - start < float(sys.argv[4]) or len(walls) < 5:
    atoms.positions += 1e-4
    w, c = time.perf_counter(), time.process_time()
    atoms.get_forces()
    walls.append(time.perf_counter() - w)
    cpus.append(time.process_time() - c)
wall, cpu = statistics.median(walls), statistics.median(cpus)
print(json.dumps({{"wall_ms": 1e3 * wall, "cpu_ms": 1e3 * cpu, "calls": len(walls)}}))
"""


def measure(model: Path, n_atoms: int, threads: int, seconds: float) -> dict:
    script = WORKER.format(bench=str(REPO / "benchmarks"))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [sys.executable, "-c", script, str(model), str(n_atoms), str(threads), str(seconds)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument("--sizes", default="64,500")
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "cu.pt"
        quick_ace_model("Cu", model)
        for busy in (False, True):
            hog = None
            if busy:  # one core kept busy by another process
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                time.sleep(1.0)
            try:
                for n_atoms in sizes:
                    for threads in (1, 2):
                        load = os.getloadavg()[0]
                        row = measure(model, n_atoms, threads, args.seconds)
                        row.update(atoms=n_atoms, threads=threads, core_busy=busy, load=load)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
            finally:
                if hog is not None:
                    hog.kill()
    payload = {"benchmark": "calculator_threads", "cpus": os.cpu_count(), "rows": rows}
    atomic_write_text(args.json, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
