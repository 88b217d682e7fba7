"""MD throughput of every trained mlearn model family beside ASE EMT (Cu) and matscipy Kumagai (Si).

    nice -n 10 python benchmarks/family_md_speed.py \\
        --json benchmarks/results/family_md_speed.json \\
        [--families bpnn,painn,kernel,mace] [--elements Cu,Si] [--size 500] [--min-seconds 10]
    python benchmarks/family_md_speed.py --table benchmarks/results/family_md_speed.json

For each element it reads ``benchmarks/results/mlearn_<family>_<El>.json`` (written by
``benchmarks/mlearn.py``), loads the trained model named by its ``model_path`` with
``matloop.load`` and runs velocity-Verlet NVE (300 K, 1 fs) on a ~500-atom bulk cell (fcc Cu
5×5×5 = 500 atoms, diamond Si 4×4×4 = 512 atoms at the mlearn PBE lattice constants), one
subprocess per measurement with 1 torch/OpenMP thread, after two warm-up steps. The reference
calculator for the element runs in the same invocation. A family whose result JSON or model file
does not exist is reported as ``missing`` (re-run the script once it does); a model that fails to
load or to run is reported as ``error`` with the message. Reported: atom-steps per wall second and
per CPU second of the worker (the CPU figure is the one to compare on a loaded machine), and the
test MAE / training time from the mlearn JSON so that speed is seen beside accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LATTICE = {"Cu": ("fcc", 3.62, 4), "Si": ("diamond", 5.47, 8)}  # mlearn PBE lattice constants
REFERENCE = {"Cu": "emt", "Si": "kumagai"}
FAMILIES = ("bpnn", "painn", "kernel", "mace")


def cell(element: str, target: int):
    """Cubic bulk cell of `element` with about `target` atoms."""
    from ase.build import bulk

    structure, a, per_cell = LATTICE[element]
    k = max(1, round((target / per_cell) ** (1 / 3)))
    return bulk(element, structure, a=a, cubic=True).repeat(k)


def _calculator(spec: dict):
    kind = spec["calculator"]
    if kind == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if kind == "kumagai":
        from matloop.calculators import resolve_calculator

        return resolve_calculator("kumagai")
    import matloop

    return matloop.load(spec["model"], num_threads=spec["threads"])


def worker(spec: dict) -> dict:
    """NVE MD with one calculator; runs inside the subprocess."""
    import numpy as np
    from ase import units
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    t_load = time.perf_counter()
    calc = _calculator(spec)
    load_s = time.perf_counter() - t_load
    atoms = cell(spec["element"], spec["size"])
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    e0 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    t0 = time.perf_counter()
    dyn.run(2)  # warm-up: neighbour lists, lazy initialisation, first autograd graph
    warmup_s = time.perf_counter() - t0
    steps, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while True:
        dyn.run(1)
        steps += 1
        wall = time.perf_counter() - wall0
        if (wall >= spec["min_seconds"] and steps >= 3) or steps >= spec["max_steps"]:
            break
    cpu = time.process_time() - cpu0
    n = len(atoms)
    e1 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    return {
        "n_atoms": n,
        "steps": steps,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "load_s": round(load_s, 2),
        "warmup_s": round(warmup_s, 3),
        "atom_steps_per_s": n * steps / wall,
        "atom_steps_per_cpu_s": n * steps / cpu if cpu > 0 else None,
        "us_per_atom_step": 1e6 * wall / (n * steps),
        "energy_drift_mev_per_atom": 1000 * (e1 - e0) / n if math.isfinite(e1) else None,
        "temperature_k_end": float(atoms.get_temperature()),
    }


def run_worker(spec: dict, python: str, timeout: float) -> dict:
    """One measurement in a fresh 1-thread subprocess; {'status': 'error', ...} on failure."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MATLOOP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    cmd = [python, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"status": "error", "reason": " | ".join(tail)}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return {"status": "ok", **json.loads(line)}
    return {"status": "error", "reason": "no result from worker"}


def find_model(family: str, element: str, results_dir: Path) -> tuple[Path | None, dict, str]:
    """(model path or None, the mlearn result JSON or {}, reason when missing)."""
    path = results_dir / f"mlearn_{family}_{element}.json"
    if not path.exists():
        return None, {}, f"{path.name} not found (mlearn run not done yet)"
    data = json.loads(path.read_text())
    data = data.get("results", [data])[0]
    model = data.get("model_path")
    if not model:
        return None, data, f"{path.name} has no model_path"
    model_path = Path(model)
    if not model_path.is_absolute():
        model_path = REPO / model_path
    if not model_path.exists():
        return None, data, f"model file {model} not found"
    return model_path, data, ""


def _from_mlearn(data: dict) -> dict:
    keys = (
        "energy_mae_mev_per_atom",
        "force_mae_ev_per_a",
        "train_seconds",
        "train_cpu_seconds",
        "config",
    )
    return {f"mlearn_{k}": data[k] for k in keys if k in data}


def markdown(report: dict) -> str:
    """Markdown table of a family_md_speed JSON."""
    lines = [
        "| element | calculator | atoms | atom-steps per CPU s | atom-steps per wall s "
        "| ÷ reference (CPU) | test E / F MAE (meV/atom, eV/Å) | train wall s (CPU s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for element, rows in report["results"].items():
        ref = REFERENCE[element]
        for name, r in rows.items():
            if r.get("status") != "ok":
                lines.append(f"| {element} | {name} | {r.get('status')}: {r.get('reason')} |||||||")
                continue
            ratio = r.get(f"cpu_throughput_over_{ref}")
            mae = (
                f"{r['mlearn_energy_mae_mev_per_atom']:.2f} / {r['mlearn_force_mae_ev_per_a']:.3f}"
                if "mlearn_energy_mae_mev_per_atom" in r
                else ""
            )
            train = (
                f"{r['mlearn_train_seconds']:.0f} ({r.get('mlearn_train_cpu_seconds', 0):.0f})"
                if "mlearn_train_seconds" in r
                else ""
            )
            lines.append(
                f"| {element} | {name} | {r['n_atoms']} | {r['atom_steps_per_cpu_s']:,.0f} | "
                f"{r['atom_steps_per_s']:,.0f} | {'' if ratio is None else f'{ratio:.2f}×'} | "
                f"{mae} | {train} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write results here")
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--elements", default="Cu,Si")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="mlearn_<family>_<El>.json")
    p.add_argument("--size", type=int, default=500, help="approximate atoms per cell")
    p.add_argument("--min-seconds", type=float, default=10.0, help="timed MD per measurement")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--timeout", type=float, default=600.0, help="per measurement (s)")
    p.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="FAMILY=PATH",
        help="interpreter for one family's worker (e.g. a separate venv); repeatable",
    )
    p.add_argument("--table", type=Path, help="print a markdown table of this JSON and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(p)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    if args.json is None:
        p.error("--json is required")
    check_outputs([("--json", args.json)], force=args.force)

    pythons = dict(item.split("=", 1) for item in args.python)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    elements = [e.strip() for e in args.elements.split(",") if e.strip()]
    load_start = os.getloadavg()
    results: dict = {}
    for element in elements:
        base = {
            "element": element,
            "size": args.size,
            "threads": 1,
            "min_seconds": args.min_seconds,
            "max_steps": args.max_steps,
        }
        rows: dict = {}
        ref = REFERENCE[element]
        rows[ref] = run_worker({**base, "calculator": ref}, sys.executable, args.timeout)
        for family in families:
            model, data, reason = find_model(family, element, args.results_dir)
            if model is None:
                rows[family] = {"status": "missing", "reason": reason}
            else:
                spec = {**base, "calculator": "matloop", "model": str(model)}
                python = pythons.get(family, sys.executable)
                rows[family] = {
                    **run_worker(spec, python, args.timeout),
                    "model": str(model.relative_to(REPO) if model.is_relative_to(REPO) else model),
                    **_from_mlearn(data),
                }
            r = rows[family]
            if r["status"] == "ok" and rows[ref].get("status") == "ok":
                r[f"throughput_over_{ref}"] = r["atom_steps_per_s"] / rows[ref]["atom_steps_per_s"]
                r[f"cpu_throughput_over_{ref}"] = (
                    r["atom_steps_per_cpu_s"] / rows[ref]["atom_steps_per_cpu_s"]
                )
        for name, r in rows.items():
            if r["status"] == "ok":
                print(
                    f"{element} {name:8s} {r['n_atoms']} atoms: "
                    f"{r['atom_steps_per_s']:9.4g} atom-steps/s "
                    f"({r['atom_steps_per_cpu_s']:9.4g} per CPU s), {r['steps']} steps",
                    flush=True,
                )
            else:
                print(f"{element} {name:8s} {r['status']}: {r['reason']}", flush=True)
        results[element] = rows

    report = {
        "benchmark": "family_md_speed",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "threads": 1,
        "md": "velocity Verlet NVE, 300 K, 1 fs, 2 warm-up steps",
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "results": results,
    }
    atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
