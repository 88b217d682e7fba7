"""What a user gets on mlearn: `matloop train` with every default beside GAP fitted here.

    python benchmarks/mlearn_peers.py --data-dir ../shared/data/mlearn --elements Si,Ge \
        --gap-python /path/to/gap-venv/bin/python --json benchmarks/results/mlearn_peers.json

For each element, in one run and one process at a time (``OMP_NUM_THREADS=1``, one torch
thread):

* **matloop, defaults**: ``matloop train --train EL/train.xyz --out DIR`` (no config: the
  default family and its own validation split) and ``matloop evaluate DIR EL/test.xyz`` — the
  two commands a new user runs;
* **GAP, textbook** (with ``--gap-python``, the Python of a virtualenv with
  ``quippy-ase==0.10.3``, whose ``gap_fit`` sits beside it): the untuned 2-body + SOAP fit of
  ``../shared/docs/peers.md`` on the same training file, evaluated on the same test file with
  quippy's ASE calculator. It is not the tuned GAP of the mlearn paper (whose published test
  errors are listed beside it).

Both are scored by :mod:`matloop.evaluation` (energy MAE per atom, force MAE per component), with
the CPU seconds and peak memory of every fit and test evaluation (child-process rusage) and the
machine load before and after each. ``test.xyz`` is read only after each fit. Rows already in the
output JSON are kept (``--force`` redoes them), so elements can run in separate invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from mlearn import PUBLISHED  # noqa: E402

ELEMENTS = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]
#: rows of `matloop train` with ace's fit.cutoff_search on (it was the default at commit afdd1f5,
#: 2026-12-02, and was switched off again after a second check split): shown in the table (the
#: JSON also keeps "matloop_force_weight_0.02", the defaults before the force weight became 0.005)
PREVIOUS = "matloop_cutoff_search"
GAP_ARGS = (
    "gap={distance_2b cutoff=5.0 covariance_type=ard_se delta=1.0 theta_uniform=1.0 "
    "sparse_method=uniform n_sparse=30 add_species=T : soap cutoff=5.0 n_max=8 l_max=8 "
    "atom_sigma=0.5 zeta=4 delta=0.5 covariance_type=dot_product sparse_method=cur_points "
    "n_sparse=1000 add_species=T} default_sigma={0.001 0.03 0.05 0.0} e0_method=average "
    "energy_parameter_name=dft_energy force_parameter_name=dft_forces sparse_jitter=1e-8 "
    "rnd_seed=42"
)
GAP_PREDICT = """
import json, sys, time
from ase.io import read, write
from quippy.potential import Potential
calc = Potential(param_filename=sys.argv[1])
out, cpu, n_atoms = [], 0.0, 0
for atoms in read(sys.argv[2], ":"):
    atoms.calc = calc
    c0 = time.process_time()
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    cpu += time.process_time() - c0
    n_atoms += len(atoms)
    atoms.calc = None
    atoms.info = {"gap_energy": energy}
    atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
    atoms.new_array("gap_forces", forces)
    out.append(atoms)
write(sys.argv[3], out, format="extxyz")
print(json.dumps({"predict_cpu_s": cpu, "atoms": n_atoms}))
"""
#: CPU time of energy + forces over the test set with matloop's calculator (imports excluded)
MATLOOP_PREDICT = """
import json, sys, time
from ase.io import read
import matloop
calc = matloop.load(sys.argv[1])
frames = read(sys.argv[2], ":")
cpu, n_atoms = 0.0, 0
for atoms in frames:
    atoms.calc = calc
    c0 = time.process_time()
    atoms.get_potential_energy(), atoms.get_forces()
    cpu += time.process_time() - c0
    n_atoms += len(atoms)
print(json.dumps({"predict_cpu_s": cpu, "atoms": n_atoms}))
"""


def _load() -> float:
    return os.getloadavg()[0]


def run_measured(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `cmd` (stdout+stderr to `log`); wall s, CPU s and peak RSS (MB) of the child."""
    load0, t0 = _load(), time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed ({proc.returncode}):\n{tail}")
    return {
        "wall_s": round(time.perf_counter() - t0, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "load_before": round(load0, 2),
        "load_after": round(_load(), 2),
    }


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MATLOOP_NUM_THREADS="1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def run_matloop(element: str, data: Path, work: Path) -> dict:
    """`matloop train` with every default, then `matloop evaluate` on the test set."""
    run_dir = work / f"matloop_{element}"
    shutil.rmtree(run_dir, ignore_errors=True)
    matloop = [sys.executable, "-m", "matloop"]
    train = run_measured(
        [*matloop, "train", "--train", str(data / "train.xyz"), "--out", str(run_dir), "-q"],
        work / f"matloop_{element}_train.log",
        _env(),
    )
    metrics_path = work / f"matloop_{element}_test.json"
    metrics_path.unlink(missing_ok=True)
    evaluate = run_measured(
        [*matloop, "evaluate", str(run_dir), str(data / "test.xyz"), "--json", str(metrics_path)],
        work / f"matloop_{element}_test.log",
        _env(),
    )
    metrics = json.loads(metrics_path.read_text())
    log = (work / f"matloop_{element}_train.log").read_text().splitlines()
    return {
        "fit": train,
        "test_evaluation": evaluate,
        "test": metrics,
        "prediction": time_matloop(element, data, work),
        "train_log_tail": [line for line in log if line.strip()][-3:],
    }


def _prediction_speed(cmd: list[str], log: Path) -> dict:
    """µs of CPU per atom for energy + forces over the test set (the script prints its CPU)."""
    measured = run_measured(cmd, log, _env())
    printed = json.loads(log.read_text().strip().splitlines()[-1])
    us = 1e6 * printed["predict_cpu_s"] / printed["atoms"]
    return {**printed, "us_per_atom": round(us, 1), "process": measured}


def time_matloop(element: str, data: Path, work: Path) -> dict:
    script = work / "matloop_predict.py"
    script.write_text(MATLOOP_PREDICT)
    cmd = [sys.executable, str(script), str(work / f"matloop_{element}"), str(data / "test.xyz")]
    return _prediction_speed(cmd, work / f"matloop_{element}_predict.log")


def _gap_training_file(source: Path, target: Path) -> None:
    """extxyz with explicit dft_energy / dft_forces keys (gap_fit reads no calculator)."""
    from ase.io import read, write

    frames = []
    for atoms in read(source, ":"):
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info = {"dft_energy": energy, "config_type": atoms.info.get("config_type", "")}
        atoms.new_array("dft_forces", forces)
        frames.append(atoms)
    write(target, frames, format="extxyz")


def time_gap(element: str, data: Path, work: Path, gap_python: Path) -> dict:
    """GAP's energies and forces on test.xyz (written beside the model) and their CPU time."""
    script = work / "gap_predict.py"
    script.write_text(GAP_PREDICT)
    model = work / f"gap_{element}.xml"
    predicted_file = work / f"gap_{element}_test_pred.xyz"
    cmd = [str(gap_python), str(script), str(model), str(data / "test.xyz"), str(predicted_file)]
    return _prediction_speed(cmd, work / f"gap_{element}_test.log")


def run_gap(element: str, data: Path, work: Path, gap_python: Path) -> dict:
    """Textbook GAP fitted with gap_fit on train.xyz, evaluated on test.xyz."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read

    from matloop.data import read_dataset
    from matloop.evaluation import compare, evaluate_predictions

    gap_fit = gap_python.parent / "gap_fit"
    train_file = work / f"gap_{element}_train.xyz"
    _gap_training_file(data / "train.xyz", train_file)
    model = work / f"gap_{element}.xml"
    fit = run_measured(
        [str(gap_fit), f"at_file={train_file}", *GAP_ARGS.split(), f"gap_file={model}"],
        work / f"gap_{element}_fit.log",
        _env(),
    )
    prediction = time_gap(element, data, work, gap_python)
    predicted_file = work / f"gap_{element}_test_pred.xyz"
    predicted = []
    for atoms in read(predicted_file, ":"):
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.info["gap_energy"], forces=atoms.arrays["gap_forces"]
        )
        predicted.append(atoms)
    test = read_dataset(data / "test.xyz")
    metrics = evaluate_predictions(compare(test, predicted))
    return {
        "fit": fit,
        "test_evaluation": prediction["process"],
        "test": metrics,
        "prediction": prediction,
        "gap_args": GAP_ARGS,
    }


def _row(element: str, name: str, result: dict | None) -> str:
    if not result:
        return f"| {element} | {name} | not run | | | |"
    t = result["test"]
    fit = result["fit"]
    return (
        f"| {element} | {name} | {t['energy_mae_mev_per_atom']:.2f} | "
        f"{t['force_mae_ev_per_a']:.4f} | {fit['wall_s']:.0f} ({fit['cpu_s']:.0f}), "
        f"{fit['peak_rss_mb'] / 1024:.1f} GB | {_speed(result)} |"
    )


def _speed(result: dict) -> str:
    pred = result.get("prediction")
    return f"{pred['us_per_atom']:.0f}" if pred else "–"


def _snap_rows() -> dict[str, list[str]]:
    """The mlearn authors' SNAP / qSNAP run through LAMMPS earlier (results/mlearn_snap.json)."""
    path = REPO / "benchmarks" / "results" / "mlearn_snap.json"
    rows: dict[str, list[str]] = {}
    if not path.exists():
        return rows
    for r in json.loads(path.read_text())["rows"]:  # its CPU times include a LAMMPS per structure
        rows.setdefault(r["element"], []).append(
            f"| {r['element']} | {r['model']} (authors' fit, LAMMPS; mlearn_snap.py) | "
            f"{r['energy_mae_mev_per_atom']:.2f} | {r['force_mae_ev_per_a']:.4f} | | |"
        )
    return rows


def table(results: dict) -> str:
    lines = [
        "| element | model | test E MAE (meV/atom) | test F MAE (eV/Å) | fit wall s (CPU s), "
        "peak memory | CPU µs per atom, E + F |",
        "|---|---|---|---|---|---|",
    ]
    snap = _snap_rows()
    for element in ELEMENTS:
        if element not in results:
            continue
        for name, (e, f) in PUBLISHED[element].items():
            published = f"| {element} | {name.upper()} (published, tuned) | {e:.2f} | {f:.2f}"
            lines.append(published + " | | |")
        lines += snap.get(element, [])
        lines.append(_row(element, "GAP, textbook, fitted here", results[element].get("gap")))
        lines.append(_row(element, "matloop, defaults", results[element].get("matloop")))
        if PREVIOUS in results[element]:
            label = "matloop, fit.cutoff_search: true"
            lines.append(_row(element, label, results[element][PREVIOUS]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared/data/mlearn")
    parser.add_argument("--elements", default=",".join(ELEMENTS))
    parser.add_argument("--gap-python", type=Path, help="python of a venv with quippy-ase")
    parser.add_argument("--work-dir", type=Path, help="keep models and logs here")
    parser.add_argument("--json", type=Path, required=True)
    from _output import add_force, announce_resume, read_json, resumes_from

    add_force(parser, help="redo rows already in --json (its other rows are kept)")
    parser.add_argument("--table", action="store_true", help="print the table of --json only")
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="re-time the prediction of matloop rows already in --json (models in --work-dir)",
    )
    args = parser.parse_args(argv)

    # always resumes: rows already in --json are kept (with --force: redone) and rewritten
    resume = resumes_from(args.json, "--json")
    results = read_json(args.json, "--json").get("elements", {}) if resume else {}
    if args.table:
        print(table(results))
        return
    elements = [e.strip() for e in args.elements.split(",") if e.strip()]
    unknown = sorted(set(elements) - set(ELEMENTS))
    if unknown:
        parser.error(f"unknown elements {unknown}; mlearn has {ELEMENTS}")
    missing = [
        str(args.data_dir / e / f)
        for e in elements
        for f in ("train.xyz", "test.xyz")
        if not (args.data_dir / e / f).is_file()
    ]
    if missing:
        parser.error(f"not found: {', '.join(missing)} (--data-dir is the mlearn folder)")
    if args.gap_python and not (args.gap_python.parent / "gap_fit").is_file():
        parser.error(f"no gap_fit beside {args.gap_python}")
    if resume:
        done = [e for e in elements if "matloop" in results.get(e, {})]
        redo = "redone (--force)" if args.force else "kept"
        announce_resume(
            args.json,
            f"{len(results)} element(s) in it; the rows of {', '.join(done) or 'none'} {redo}",
        )
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="mlearn_peers_"))
    work.mkdir(parents=True, exist_ok=True)
    for element in elements:
        data = args.data_dir / element
        row = results.setdefault(element, {})
        if args.timing_only:
            if "matloop" in row:
                row["matloop"]["prediction"] = time_matloop(element, data, work)
            if "gap" in row and args.gap_python:
                row["gap"]["prediction"] = time_gap(element, data, work, args.gap_python)
            _write(args.json, results)
            continue
        if args.force or "matloop" not in row:
            row["matloop"] = run_matloop(element, data, work)
            print(_row(element, "matloop, defaults", row["matloop"]), flush=True)
        if args.gap_python and (args.force or "gap" not in row):
            row["gap"] = run_gap(element, data, work, args.gap_python)
            print(_row(element, "GAP, textbook", row["gap"]), flush=True)
        _write(args.json, results)
    print(table(results))


def _write(path: Path, results: dict) -> None:
    payload = {
        "benchmark": "mlearn_peers",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "elements": results,
    }
    from _output import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
