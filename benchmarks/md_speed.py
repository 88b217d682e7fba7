"""MD speed and scale: atom-steps per second of matloop's potential beside ASE EMT (Cu), matscipy
Kumagai (Si) and a small MACE model, on Cu and Si cells from ~100 to ~100,000 atoms.

    python benchmarks/md_speed.py --json benchmarks/results/md_speed.json \
        [--data-dir ../shared/data/mlearn] [--sizes 100,1000,10000,100000] \
        [--model-cu run/model.pt --model-si run_si/model.pt] [--train-time 300] \
        [--mace-python /path/to/venv/bin/python] [--plot benchmarks/results/md_speed.png]

Every measurement runs in its own subprocess (clean peak memory, fixed thread count):
velocity-Verlet NVE at 300 K, 1 fs, steps until `--min-seconds` have passed. Peak memory is
the worker's peak resident set size (ru_maxrss, includes the Python/torch baseline, reported
separately). Accuracy (energy/force MAE on the mlearn test set) is measured in the same run so
that speed is compared at known accuracy. matloop models are trained with matloop's training API
on the mlearn training set within `--train-time` seconds unless given; MACE is trained with
mace-torch's `mace_run_train` (small: 16 channels, L=0, correlation 2) if `--mace-python` has it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mlearn"
LATTICE = {"Cu": ("fcc", 3.62, 4), "Si": ("diamond", 5.47, 8)}  # mlearn PBE lattice constants


# ---------------------------------------------------------------------------------- worker side


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cell(element: str, target: int):
    from ase.build import bulk

    structure, a, per_cell = LATTICE[element]
    k = max(1, round((target / per_cell) ** (1 / 3)))
    return bulk(element, structure, a=a, cubic=True).repeat(k)


def _make_calc(spec: dict):
    kind = spec["calculator"]
    if kind == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if kind == "kumagai":
        from matloop.calculators import resolve_calculator

        return resolve_calculator("kumagai")
    if kind == "matloop":
        import matloop

        return matloop.load(spec["model"], num_threads=spec["threads"])
    if kind == "mace":
        import torch
        from mace.calculators import MACECalculator

        torch.set_num_threads(spec["threads"])
        return MACECalculator(model_paths=spec["model"], device="cpu", default_dtype="float32")
    raise ValueError(kind)


def worker_speed(spec: dict) -> dict:
    """Time velocity-Verlet steps of one calculator on one cell."""
    import numpy as np
    from ase import units
    from ase.md.velocitydistribution import Stationary, thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    calc = _make_calc(spec)
    atoms = _cell(spec["element"], spec["size"])
    rss_base = _peak_rss_mb()
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    t0 = time.perf_counter()
    dyn.run(1)  # first step: two force calls, neighbour lists, lazy initialisation
    first = time.perf_counter() - t0
    steps = 0
    t0 = time.perf_counter()
    while True:
        dyn.run(1)
        steps += 1
        elapsed = time.perf_counter() - t0
        if (elapsed >= spec["min_seconds"] and steps >= 2) or steps >= spec["max_steps"]:
            break
    n = len(atoms)
    etot = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    return {
        "element": spec["element"],
        "calculator": spec["calculator"],
        "n_atoms": n,
        "steps": steps,
        "seconds": elapsed,
        "first_step_s": first,
        "s_per_step": elapsed / steps,
        "atom_steps_per_s": n * steps / elapsed,
        "us_per_atom_step": 1e6 * elapsed / (n * steps),
        "peak_rss_mb": _peak_rss_mb(),
        "baseline_rss_mb": rss_base,
        "temperature_k_end": float(atoms.get_temperature()),
        "finite": bool(math.isfinite(etot)),
    }


def worker_accuracy(spec: dict) -> dict:
    """Energy (per atom; also with the mean offset removed) and force MAE on the test set."""
    import numpy as np

    from matloop.data import read_dataset
    from matloop.evaluation import metrics_from_predictions, predict

    calc = _make_calc(spec)
    test = read_dataset(spec["test_file"])
    t0 = time.perf_counter()
    pred = predict(calc, test)
    m = metrics_from_predictions(pred)
    de = pred.energy_pred - pred.energy_ref
    m["energy_mae_shifted_mev_per_atom"] = float(1000 * np.abs(de - de.mean()).mean())
    m["seconds"] = time.perf_counter() - t0
    return m


def worker_profile(spec: dict) -> dict:
    """Where a matloop force call goes: neighbour graph, forward, backward, calculator overhead;
    plus the top functions of a cProfile of full calculator calls."""
    import cProfile
    import io
    import pstats

    import torch

    calc = _make_calc(spec)
    atoms = _cell(spec["element"], spec["size"])
    if len(atoms) > spec.get("max_profile_atoms", 5000):
        return {
            "element": spec["element"],
            "n_atoms": len(atoms),
            "error": "skipped: larger than max_profile_atoms",
        }
    model = calc.model
    periodic = bool(atoms.pbc.all())

    def best(fn, repeat=3):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
            if times[-1] > 5.0:  # slow calls: one measurement is enough
                break
        return min(times)

    graph = model.graph(atoms)
    t_graph = best(lambda: model.graph(atoms))
    with torch.no_grad():
        t_descr = best(lambda: model.descriptors(graph))
    t_energy = best(lambda: model.predict(graph, forces=False, stress=False))
    t_forces = best(lambda: model.predict(graph, forces=True, stress=False))
    t_full = best(lambda: model.predict(graph, forces=True, stress=periodic))

    def call():
        atoms.rattle(1e-4, seed=1)
        atoms.calc = calc
        atoms.get_forces()

    t_calc = best(call)
    prof = cProfile.Profile()
    prof.enable()
    call()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(15)
    return {
        "element": spec["element"],
        "n_atoms": len(atoms),
        "n_edges": int(graph.centers.numel()),
        "n_triplets": None if graph.triplet_first is None else int(graph.triplet_first.numel()),
        "graph_s": t_graph,
        "descriptor_forward_s": t_descr,
        "energy_s": t_energy,
        "energy_forces_s": t_forces,
        "energy_forces_stress_s": t_full,
        "calculator_call_s": t_calc,
        "cprofile_top": buf.getvalue().splitlines()[:45],
    }


# ---------------------------------------------------------------------------------- driver side


def _run_worker(mode: str, spec: dict, python: str, timeout: float, threads: int) -> dict:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "MATLOOP_NUM_THREADS": str(threads),
        "PYTHONWARNINGS": "ignore",
    }
    cmd = [python, str(Path(__file__).resolve()), f"--{mode}", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail)}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": "no result from worker"}


def _train_matloop(
    element: str,
    data_dir: Path,
    work: Path,
    seconds: float,
    threads: int,
    config_path=None,
    params: dict | None = None,
) -> Path:
    from matloop.data import read_dataset
    from matloop.training import TrainConfig, train
    from matloop.training.config import load_train_config

    train_ds = read_dataset(data_dir / element / "train.xyz")
    base = load_train_config(config_path) if config_path else TrainConfig()
    data = base.model_dump()
    data["training"].update({"max_time": seconds, "num_threads": threads})
    if params:
        data["model"]["params"] = {**data["model"].get("params", {}), **params}
    config = TrainConfig.model_validate(data)
    print(f"training matloop {element} for {seconds:.0f} s ...", flush=True)
    result = train(
        train_ds,
        work / f"matloop_{element}",
        config=config,
        max_time=seconds,
        progress=False,
        seed=0,
    )
    return Path(result.model_path)


def _train_mace(
    element: str, data_dir: Path, work: Path, python: str, epochs: int, threads: int, timeout: float
) -> tuple[Path | None, str]:
    from ase.io import read, write

    out = work / f"mace_{element}"
    out.mkdir(parents=True, exist_ok=True)
    frames = read(data_dir / element / "train.xyz", ":")
    conv = []
    for a in frames:
        b = a.copy()
        b.calc = None
        b.info = {
            "REF_energy": a.get_potential_energy(),
            "config_type": a.info.get("config_type", "default"),
        }
        b.arrays["REF_forces"] = a.get_forces()
        conv.append(b)
    train_file = out / "train_mace.xyz"
    write(train_file, conv, format="extxyz")
    cmd = [
        python,
        "-m",
        "mace.cli.run_train",
        "--name",
        f"mace_{element}",
        "--train_file",
        str(train_file),
        "--valid_fraction",
        "0.1",
        "--E0s",
        "average",
        "--model",
        "MACE",
        "--num_channels",
        "16",
        "--max_L",
        "0",
        "--correlation",
        "2",
        "--r_max",
        "5.0",
        "--num_interactions",
        "2",
        "--batch_size",
        "10",
        "--max_num_epochs",
        str(epochs),
        "--device",
        "cpu",
        "--default_dtype",
        "float32",
        "--seed",
        "0",
        "--energy_key",
        "REF_energy",
        "--forces_key",
        "REF_forces",
        "--eval_interval",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    print(f"training MACE {element} for {epochs} epochs ...", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=out, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return None, f"MACE training timed out after {timeout:.0f} s"
    models = sorted(out.glob(f"mace_{element}*.model"))
    models = [m for m in models if "compiled" not in m.name] or models
    if proc.returncode != 0 or not models:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, "MACE training failed: " + " | ".join(tail)
    return models[0], f"trained {epochs} epochs in {time.perf_counter() - t0:.0f} s"


def _has_module(python: str, module: str) -> bool:
    proc = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=120)
    return proc.returncode == 0


def _plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    styles = {"matloop": "o-", "emt": "s--", "kumagai": "^--", "mace": "d-."}
    keys = sorted({(r["element"], r["calculator"]) for r in results if "s_per_step" in r})
    for element, calc in keys:
        rows = sorted(
            (
                r
                for r in results
                if r.get("element") == element and r.get("calculator") == calc and "s_per_step" in r
            ),
            key=lambda r: r["n_atoms"],
        )
        n = [r["n_atoms"] for r in rows]
        label = f"{calc} ({element})"
        axes[0].loglog(n, [r["s_per_step"] for r in rows], styles.get(calc, "o-"), label=label)
        axes[1].loglog(
            n, [r["us_per_atom_step"] for r in rows], styles.get(calc, "o-"), label=label
        )
    axes[0].set_xlabel("atoms")
    axes[0].set_ylabel("wall time per MD step (s)")
    axes[1].set_xlabel("atoms")
    axes[1].set_ylabel("µs per atom-step")
    axes[0].legend(fontsize=8)
    axes[0].set_title("cost of one MD step")
    axes[1].set_title("cost per atom-step (flat = linear scaling)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _summary(results: list[dict], accuracy: dict) -> dict:
    out: dict = {}
    ok = [r for r in results if "atom_steps_per_s" in r]
    for element in sorted({r["element"] for r in ok}):
        rows = [r for r in ok if r["element"] == element]
        by = {}
        for r in rows:
            by.setdefault(r["calculator"], {})[r["n_atoms"]] = r
        s: dict = {}
        ml = by.get("matloop", {})
        for other in ("emt", "kumagai", "mace"):
            if other in by:
                s[f"matloop_over_{other}"] = {
                    str(n): ml[n]["atom_steps_per_s"] / by[other][n]["atom_steps_per_s"]
                    for n in sorted(ml)
                    if n in by[other]
                }
        for calc, table in by.items():
            mid = [table[n]["us_per_atom_step"] for n in sorted(table) if 900 <= n <= 110_000]
            if len(mid) >= 2:
                s[f"{calc}_cost_spread_1k_100k"] = max(mid) / min(mid) - 1.0
            big = [table[n] for n in sorted(table) if n >= 90_000]
            if big:
                s[f"{calc}_peak_rss_mb_100k"] = big[-1]["peak_rss_mb"]
        s["accuracy"] = accuracy.get(element, {})
        out[element] = s
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, required=False, help="write results here")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sizes", default="100,1000,10000,100000", help="approximate atom counts")
    p.add_argument("--elements", default="Cu,Si")
    p.add_argument("--calculators", default="matloop,emt,kumagai,mace")
    p.add_argument("--model-cu", type=Path)
    p.add_argument("--model-si", type=Path)
    p.add_argument("--train-time", type=float, default=300.0, help="matloop training budget (s)")
    p.add_argument("--matloop-config", type=Path, help="TrainConfig YAML for matloop training")
    p.add_argument(
        "--matloop-params",
        default='{"descriptor": {"angular_cutoff": 4.0}}',
        help="JSON merged into model.params of the matloop training config ('' for defaults)",
    )
    p.add_argument("--mace-python", default=sys.executable, help="python that has mace-torch")
    p.add_argument("--mace-model-cu", type=Path)
    p.add_argument("--mace-model-si", type=Path)
    p.add_argument("--mace-epochs", type=int, default=20)
    p.add_argument("--mace-train-timeout", type=float, default=1800.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=5.0, help="timed MD per measurement")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--timeout", type=float, default=900.0, help="per measurement (s)")
    p.add_argument(
        "--max-memory-mb",
        type=float,
        default=3072.0,
        help="skip sizes whose extrapolated peak memory exceeds this",
    )
    p.add_argument(
        "--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "matloop_md_speed"
    )
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--profile-sizes", default="1000", help="matloop profiles; '' skips")
    p.add_argument("--no-accuracy", action="store_true")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--accuracy-worker", help=argparse.SUPPRESS)
    p.add_argument("--profile-worker", help=argparse.SUPPRESS)
    from _output import add_force, atomic_path, atomic_write_text, check_outputs

    add_force(p)
    args = p.parse_args(argv)

    if args.worker or args.accuracy_worker or args.profile_worker:
        fn, spec = (
            (worker_speed, args.worker)
            if args.worker
            else (worker_accuracy, args.accuracy_worker)
            if args.accuracy_worker
            else (worker_profile, args.profile_worker)
        )
        print(json.dumps(fn(json.loads(spec))), flush=True)
        return 0
    if args.json is None:
        p.error("--json is required")
    check_outputs([("--json", args.json), ("--plot", args.plot)], force=args.force)

    sizes = [int(s) for s in args.sizes.split(",") if s]
    elements = [e.strip() for e in args.elements.split(",") if e.strip()]
    wanted = {c.strip() for c in args.calculators.split(",") if c.strip()}
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    models: dict[tuple[str, str], Path] = {}
    training: dict = {}

    for element in elements:
        given = args.model_cu if element == "Cu" else args.model_si
        if "matloop" in wanted:
            if given is not None:
                models[("matloop", element)] = given.resolve()
            else:
                t0 = time.perf_counter()
                models[("matloop", element)] = _train_matloop(
                    element,
                    args.data_dir,
                    work,
                    args.train_time,
                    args.threads,
                    args.matloop_config,
                    json.loads(args.matloop_params) if args.matloop_params else None,
                )
                training[f"matloop_{element}_s"] = time.perf_counter() - t0
        if "mace" in wanted:
            given = args.mace_model_cu if element == "Cu" else args.mace_model_si
            if given is not None:
                models[("mace", element)] = given.resolve()
            elif not _has_module(args.mace_python, "mace"):
                notes.append(f"MACE skipped: {args.mace_python} cannot import mace")
            else:
                t0 = time.perf_counter()
                path, msg = _train_mace(
                    element,
                    args.data_dir,
                    work,
                    args.mace_python,
                    args.mace_epochs,
                    args.threads,
                    args.mace_train_timeout,
                )
                training[f"mace_{element}"] = msg
                training[f"mace_{element}_s"] = time.perf_counter() - t0
                if path is None:
                    notes.append(f"MACE {element}: {msg}")
                else:
                    models[("mace", element)] = path

    plan = []
    for element in elements:
        for calc in ("matloop", "emt", "kumagai", "mace"):
            if calc not in wanted:
                continue
            if (calc == "emt" and element != "Cu") or (calc == "kumagai" and element != "Si"):
                continue
            if calc in ("matloop", "mace") and (calc, element) not in models:
                continue
            plan.append((element, calc))

    accuracy: dict = {}
    if not args.no_accuracy:
        for element, calc in plan:
            spec = {
                "element": element,
                "calculator": calc,
                "threads": args.threads,
                "model": str(models.get((calc, element), "")),
                "test_file": str(args.data_dir / element / "test.xyz"),
            }
            py = args.mace_python if calc == "mace" else sys.executable
            res = _run_worker("accuracy-worker", spec, py, args.timeout, args.threads)
            accuracy.setdefault(element, {})[calc] = res
            print(
                f"accuracy {element} {calc}: "
                + (
                    res.get("error")
                    or f"E {res['energy_mae_mev_per_atom']:.2f} meV/atom, "
                    f"F {res.get('force_mae_ev_per_a', float('nan')):.3f} eV/Å"
                ),
                flush=True,
            )

    results: list[dict] = []
    for element, calc in plan:
        failed = False
        last: dict | None = None
        for size in sizes:
            if failed:
                results.append(
                    {
                        "element": element,
                        "calculator": calc,
                        "size": size,
                        "error": "skipped after a smaller size failed/timed out",
                    }
                )
                continue
            n_next = len(_cell(element, size))
            if last is not None:
                # extrapolate linearly from the previous size; never start a worker that would
                # exhaust the shared machine's memory or run past the time limit
                per_atom_mb = (
                    max(last["peak_rss_mb"] - last["baseline_rss_mb"], 0) / last["n_atoms"]
                )
                mem = last["baseline_rss_mb"] + per_atom_mb * n_next
                t_step = last["s_per_step"] / last["n_atoms"] * n_next
                reason = None
                if mem > args.max_memory_mb:
                    limit_gb = args.max_memory_mb / 1024
                    reason = f"predicted peak memory {mem / 1024:.1f} GB > {limit_gb:.1f} GB"
                elif 5 * t_step > args.timeout:
                    reason = f"predicted {t_step:.0f} s per step (> timeout/5)"
                if reason:
                    failed = True
                    results.append(
                        {
                            "element": element,
                            "calculator": calc,
                            "size": size,
                            "n_atoms": n_next,
                            "error": f"skipped: {reason}",
                            "predicted_peak_rss_mb": mem,
                            "predicted_s_per_step": t_step,
                        }
                    )
                    print(f"{element} {calc} {n_next}: skipped: {reason}", flush=True)
                    continue
            spec = {
                "element": element,
                "calculator": calc,
                "size": size,
                "threads": args.threads,
                "model": str(models.get((calc, element), "")),
                "min_seconds": args.min_seconds,
                "max_steps": args.max_steps,
            }
            py = args.mace_python if calc == "mace" else sys.executable
            res = _run_worker("worker", spec, py, args.timeout, args.threads)
            if "error" in res:
                failed = True
                res.update({"element": element, "calculator": calc, "size": size})
                print(f"{element} {calc} ~{size}: {res['error']}", flush=True)
            else:
                last = res
                print(
                    f"{element} {calc} {res['n_atoms']:>7d} atoms: "
                    f"{res['atom_steps_per_s']:10.4g} atom-steps/s, "
                    f"{res['us_per_atom_step']:8.3g} µs/atom-step, "
                    f"peak {res['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
            results.append(res)

    profiles = []
    for size in [int(s) for s in args.profile_sizes.split(",") if s]:
        for element in elements:
            if ("matloop", element) not in models:
                continue
            spec = {
                "element": element,
                "calculator": "matloop",
                "size": size,
                "threads": args.threads,
                "model": str(models[("matloop", element)]),
            }
            res = _run_worker("profile-worker", spec, sys.executable, args.timeout, args.threads)
            profiles.append(res)
            if "error" not in res:
                print(
                    f"profile {element} {res['n_atoms']}: graph {res['graph_s']:.3g} s, "
                    f"energy {res['energy_s']:.3g} s, +forces {res['energy_forces_s']:.3g} s, "
                    f"+stress {res['energy_forces_stress_s']:.3g} s, "
                    f"calculator {res['calculator_call_s']:.3g} s",
                    flush=True,
                )

    report = {
        "benchmark": "md_speed",
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "python": platform.python_version(),
        "sizes_requested": sizes,
        "models": {f"{k[0]}_{k[1]}": str(v) for k, v in models.items()},
        "training": training,
        "notes": notes,
        "results": results,
        "accuracy": accuracy,
        "profiles": profiles,
        "summary": _summary(results, accuracy),
        "load_average": os.getloadavg(),
    }
    atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.plot is not None:
        with atomic_path(args.plot) as tmp:
            _plot(results, tmp)
    print(json.dumps(report["summary"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
