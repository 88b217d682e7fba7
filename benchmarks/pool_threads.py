"""Pool suggestion time against torch's thread count, quiet and beside a busy core.

    python benchmarks/pool_threads.py [--repeats 5] [--json benchmarks/results/pool_threads.json]

A process-parameter pool (temperature 500-800 °C, time 0.5-6 h; 80 rows) with two objectives
(yield: max, cost: min), 10 rows observed; one ``suggest_from_pool`` call (qLogNEHVI, batch 2,
seed 0) is timed with ``MATLOOP_NUM_THREADS`` = 1 and 2, first on a quiet machine and then
while a second process keeps one core busy. Median wall and CPU seconds; machine load recorded.
No data from ``--data-dir`` is needed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

import numpy as np


def _pool(n: int = 80, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    temperature = rng.uniform(500, 800, n).round(1)
    hours = rng.uniform(0.5, 6, n).round(2)
    yield_ = 90 - ((temperature - 640) / 60) ** 2 * 20 - (hours - 3) ** 2 * 4
    return pd.DataFrame({"temperature": temperature, "time": hours, "yield": yield_}).assign(
        cost=lambda d: d["temperature"] * 0.01 + d["time"]
    )


def _busy(stop) -> None:
    while not stop.is_set():
        pass


def time_suggestion(threads: int, repeats: int) -> dict:
    from matloop.design.objectives import parse_objective
    from matloop.design.pool import suggest_from_pool

    os.environ["MATLOOP_NUM_THREADS"] = str(threads)
    pool = _pool()
    objectives = [parse_objective("yield:max"), parse_objective("cost:min")]
    observed, candidates = pool.sample(10, random_state=0), pool.drop(columns=["yield", "cost"])
    walls, cpus = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        suggest_from_pool(observed, candidates, objectives, batch=2, seed=0)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    time_suggestion(1, 1)  # imports and first-call costs out of the way
    rows = []
    for busy in (False, True):
        stop = mp.Event()
        worker = mp.Process(target=_busy, args=(stop,)) if busy else None
        if worker:
            worker.start()
        try:
            for threads in (1, 2):
                load = os.getloadavg()[0]
                row = {"busy_core": busy, "threads": threads, "load_before": load}
                row.update(time_suggestion(threads, args.repeats))
                rows.append(row)
                print(json.dumps(row))
        finally:
            if worker:
                stop.set()
                worker.join()
    result = {"repeats": args.repeats, "cpu_count": os.cpu_count(), "rows": rows}
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
