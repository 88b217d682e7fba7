"""Multi-objective suggestion time against the number of observations (100, 700, 5,000).

Run from the repository root (one process, ``nice``)::

    nice -n 10 python benchmarks/design_speed.py --json benchmarks/results/design_speed.json

A soda-lime-like space (SiO2, Na2O, CaO, Al2O3 in mol %, Σ = 100, Na2O + CaO ≤ 30) with two
synthetic, smooth, noisy properties (nd to maximise, Tg to minimise, K) at n feasible random
compositions; one ``matloop.design.bo.suggest`` call (qLogNEHVI, q = 1, default effort) is timed
per n. Above 1,000 rows the GP hyper-parameters are fitted on 1,000 of them and the posterior
conditions on all; the NEHVI baseline keeps the observed Pareto layers (≤ 256 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SPACE = {
    "total": 100,
    "components": {"SiO2": [50, 80], "Na2O": [5, 25], "CaO": [0, 15], "Al2O3": [0, 5]},
    "linear_constraints": [{"coefficients": {"Na2O": 1, "CaO": 1}, "le": 30}],
}


def table(n: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    while len(rows) < n:
        x = np.array(
            [rng.uniform(50, 80), rng.uniform(5, 25), rng.uniform(0, 15), rng.uniform(0, 5)]
        )
        x[0] += 100 - x.sum()  # SiO2 takes the balance
        if 50 <= x[0] <= 80 and x[1] + x[2] <= 30:
            rows.append(x)
    X = np.array(rows)
    f = X / 100
    nd = 1.46 + 0.25 * f[:, 1] + 0.35 * f[:, 2] + 0.1 * f[:, 3] + rng.normal(0, 0.003, n)
    tg = 900 * f[:, 0] ** 2 - 700 * f[:, 1] + 250 * f[:, 2] + 400 + rng.normal(0, 8, n)
    df = pd.DataFrame(X, columns=list(SPACE["components"]))
    df["nd"], df["Tg"] = nd, tg
    return df


def main(argv=None) -> int:
    from _output import add_force, atomic_write_text, check_outputs

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 700, 5000])
    ap.add_argument("--json", default=None)
    add_force(ap)
    args = ap.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)
    import torch

    from matloop.design.bo import suggest
    from matloop.design.objectives import parse_objective
    from matloop.design.space import Space

    torch.set_num_threads(1)
    space = Space.model_validate(SPACE)
    objs = [parse_objective("nd:max"), parse_objective("Tg:min")]
    res = {"benchmark": "multi-objective suggestion time (qLogNEHVI, q=1)", "rows": []}
    for n in args.sizes:
        df = table(n, seed=n)
        t0, c0 = time.time(), time.process_time()
        out = suggest(df, space, objs, batch=1, seed=0)
        row = {
            "n_observations": n,
            "wall_s": time.time() - t0,
            "cpu_s": time.process_time() - c0,
            "loadavg": os.getloadavg(),
            "acquisition": out.acquisition,
            "pareto_observed": out.pareto_observed,
        }
        res["rows"].append(row)
        print(row, flush=True)
        if args.json:  # after every size, so a cut run keeps the sizes it finished
            atomic_write_text(args.json, json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
