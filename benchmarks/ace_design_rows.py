"""Cost of `ace`'s design rows: the closed-form fit and the posterior σ of forces, one thread.

    python benchmarks/ace_design_rows.py [--json benchmarks/results/ace_design_rows.json] \
        [--repeats 5]

Design rows are the energy, force and virial rows that are linear in the coefficients: the fit
streams them into its normal equations, and ``forces_std`` (active learning, validation) needs
the force rows of every structure it is asked about. Measured with the default `AceParams`
basis (808 coefficients for one element, 3,006 for two):

* ``rows``: ``design_rows`` (forces and virial) of one rattled fcc cell (Cu 32 and 108 atoms,
  CuNi 108 atoms), ms (the minimum over `repeats`);
* ``train``: ``matloop.training.train`` with every default on 40 rattled or strained 32-atom
  EMT Cu cells: wall and CPU seconds;
* ``sigma``: ``forces_std`` and ``energy_std`` of the trained model through its ASE calculator
  (Cu 32, 108 and 256 atoms), ms per call, beside the same calculator's energy and forces.

Run it from two checkouts (it imports matloop from the checkout it lies in) to compare code
versions; the machine load (1-min average) is recorded before and after. BLAS, torch and
matloop run on one thread (the environment variables are set unless given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MATLOOP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread everywhere, before numpy or torch load


def _best_ms(fn, repeats: int) -> float:
    fn()  # warm-up: caches of the basis, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def _cell(repeat: int, alloy: bool = False, seed: int = 1):
    import numpy as np
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    if alloy:
        atoms.symbols[np.random.default_rng(seed).permutation(len(atoms))[::2]] = "Ni"
    return atoms


def _emt_cells(n: int, seed: int):
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from matloop.data import Dataset, label_with

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", 3.61 * (1 + rng.uniform(-0.03, 0.03)), cubic=True) * 2
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        if k % 2:
            strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
            atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        out.append(label_with(atoms, EMT()))
    return Dataset(out, source="emt-cu")


def measure_rows(repeats: int) -> dict:
    import torch

    from matloop.models.ace.family import AcePotential

    out = {}
    for name, elements, atoms in (
        ("Cu 32", ["Cu"], _cell(2)),
        ("Cu 108", ["Cu"], _cell(3)),
        ("CuNi 108", ["Cu", "Ni"], _cell(3, alloy=True)),
    ):
        model = AcePotential(elements)
        graph = model.graph(atoms).to(torch.float64)
        ms = _best_ms(lambda m=model, g=graph: m.basis.design_rows(g), repeats)
        out[name] = {"coefficients": model.basis.n_coefficients, "rows_ms": round(ms, 1)}
        print(f"rows {name}: {ms:.1f} ms ({model.basis.n_coefficients} coefficients)", flush=True)
    return out


def measure_train_and_sigma(repeats: int) -> dict:
    from matloop.calculators import load_calculator
    from matloop.training import train

    data = _emt_cells(40, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        result = train(data, Path(tmp) / "run", progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"train: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        calc = load_calculator(result.model_path)
        sigma = {}
        for repeat in (2, 3, 4):
            atoms = _cell(repeat, seed=repeat)

            def ask(names, a=atoms):
                calc.reset()
                calc.calculate(a, names, [])

            row = {
                "energy_forces_ms": round(_best_ms(lambda: ask(["energy", "forces"]), repeats), 1),
                "sigma_ms": round(_best_ms(lambda: ask(["forces_std", "energy_std"]), repeats), 1),
            }
            sigma[f"Cu {len(atoms)}"] = row
            print(f"sigma Cu {len(atoms)}: {row}", flush=True)
    return {"train": {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}, "sigma": sigma}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)
    import torch

    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    report = {
        "repo": str(REPO),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "rows": measure_rows(args.repeats),
        **measure_train_and_sigma(args.repeats),
        "load_after": os.getloadavg()[0],
    }
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
