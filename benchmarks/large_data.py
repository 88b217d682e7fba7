"""Data larger than memory: fit a linear energy model on 50,000 EMT structures read lazily in
chunks (normal equations accumulated chunk by chunk) against reading them all first.

    python benchmarks/large_data.py --data-dir /tmp/large_data --json \
        benchmarks/results/large_data.json [--n 50000] [--chunk-size 1000] [--model pairs|ace]

The structures (8-atom fcc Cu/Al cells, random strain ±2 %, rattled 0.08 Å, EMT labels) are
generated once into DATA_DIR/emt_N.xyz (extended XYZ, streamed to disk). Each mode runs in its
own subprocess so its peak resident set size (ru_maxrss) is its own:

- ``lazy``:  ``matloop.data.io.iter_chunks`` → features of one chunk → XᵀX, Xᵀy accumulated;
- ``eager``: ``matloop.data.io.read_dataset`` (all structures in memory) → all features → solve.

Both solve the same least-squares problem, so their coefficients must agree (checked). Features
(``--model pairs``): species counts and radial pair histograms per species pair (8 bins,
1.5–5.0 Å), the linear model being E = Σ features × weights. ``--model ace`` uses the linear ACE
family's streaming solver when ``matloop.models.ace`` is installed (see :func:`_ace_fit`), else it
falls back to ``pairs`` and says so in the JSON. Peak RSS includes the interpreter and imports
(``baseline_rss_mb``, measured after imports, is reported beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SPECIES = (13, 29)  # Al, Cu
BINS = np.linspace(1.5, 5.0, 9)
CUTOFF = 5.0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------------ data generation


def generate(path: Path, n: int, seed: int = 0, chunk: int = 1000) -> None:
    """Write `n` EMT-labelled 8-atom Cu/Al cells to `path` (extxyz), `chunk` at a time."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial.xyz")
    tmp.unlink(missing_ok=True)
    calc = EMT()
    for start in range(0, n, chunk):
        frames = []
        for _ in range(min(chunk, n - start)):
            atoms = bulk("Cu", "fcc", a=3.7, cubic=True) * (2, 1, 1)
            atoms.numbers[rng.random(len(atoms)) < 0.4] = 13
            strain = 1 + rng.uniform(-0.02, 0.02)
            atoms.set_cell(atoms.cell * strain, scale_atoms=True)
            atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
            atoms.calc = calc
            atoms.get_forces()
            frames.append(atoms)
        write(tmp, frames, format="extxyz", append=True)
    tmp.rename(path)


# --------------------------------------------------------------------------------- featurisation


def features(atoms) -> np.ndarray:
    """Species counts + radial pair histograms (Al-Al, Al-Cu, Cu-Cu; 8 bins each)."""
    from vesin import NeighborList

    i, j, d = NeighborList(cutoff=CUTOFF, full_list=False).compute(
        atoms.positions, atoms.cell.array, bool(atoms.pbc.all()), quantities="ijd"
    )
    zi, zj = atoms.numbers[i], atoms.numbers[j]
    counts = [np.sum(atoms.numbers == s) for s in SPECIES]
    hists = [
        np.histogram(d[(zi + zj) == total], bins=BINS)[0]  # Al+Al=26, Al+Cu=42, Cu+Cu=58
        for total in (26, 42, 58)
    ]
    return np.concatenate([counts, *hists]).astype(float)


def _solve(xtx: np.ndarray, xty: np.ndarray) -> np.ndarray:
    ridge = 1e-8 * np.trace(xtx) / len(xtx)
    return np.linalg.solve(xtx + ridge * np.eye(len(xtx)), xty)


def _ace_fit(source: str, chunk_size: int) -> dict | None:
    """Fit the linear ACE family from lazily read chunks, if it is installed; else None.

    Expected API (branch `ace`): ``matloop.models.ace.solver`` accumulating normal equations
    from any iterable of labelled structures. Adapt the two calls below when merging.
    """
    try:
        from matloop.models.ace import solver  # noqa: F401
    except ImportError:
        return None
    from matloop.data.io import iter_structures

    fit = getattr(solver, "fit_streaming", None)
    if fit is None:
        return {"error": "matloop.models.ace.solver has no fit_streaming(structures); wire it"}
    model = fit(iter_structures(source, chunk_size=chunk_size))
    return {"model": type(model).__name__}


def _ace_importable() -> dict | None:
    try:
        from matloop.models.ace import solver  # noqa: F401
    except ImportError:
        return None
    return {"imported": True}


# --------------------------------------------------------------------------------- worker modes


def run_mode(mode: str, source: str, chunk_size: int, model: str, limit: int) -> dict:
    import vesin  # noqa: F401 - imported before the baseline in both modes

    from matloop.data.io import iter_chunks, read_dataset

    out: dict = {"mode": mode}
    if model == "ace":  # imports the family (and torch) before the baseline in both modes
        ace = _ace_fit(source, chunk_size) if mode == "lazy" else _ace_importable()
        out["ace"] = ace if ace else "not available: fell back to pairs"
    base = _rss_mb()
    out["baseline_rss_mb"] = round(base, 1)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    if mode == "lazy":
        xtx = xty = None
        sq = 0.0
        for chunk in iter_chunks(source, chunk_size=chunk_size, validate=False):
            chunk = chunk[: limit - n]
            if not chunk:
                break
            x = np.array([features(a) for a in chunk])
            y = np.array([a.get_potential_energy() for a in chunk])
            xtx = x.T @ x if xtx is None else xtx + x.T @ x
            xty = x.T @ y if xty is None else xty + x.T @ y
            sq += float(y @ y)
            n += len(chunk)
        w = _solve(xtx, xty)
        rss = (sq - 2 * w @ xty + w @ xtx @ w) / n  # residual from the normal equations
    else:
        data = read_dataset(source, index=f":{limit}", validate=False)
        structures = list(data)
        x = np.array([features(a) for a in structures])
        y = np.array([a.get_potential_energy() for a in structures])
        n = len(structures)
        w = _solve(x.T @ x, x.T @ y)
        rss = float(np.mean((x @ w - y) ** 2))
    out.update(
        n_structures=n,
        seconds=round(time.perf_counter() - t0, 1),
        cpu_seconds=round(time.process_time() - c0, 1),
        peak_rss_mb=round(_rss_mb(), 1),
        rmse_ev=round(float(np.sqrt(max(rss, 0.0))), 5),
        weights=[float(v) for v in w],
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="where emt_N.xyz is (or is generated)")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--model", choices=["pairs", "ace"], default="pairs")
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/large_data.json"))
    ap.add_argument("--sizes", default=None, help="also fit the first K structures, e.g. 2000")
    ap.add_argument("--worker", choices=["lazy", "eager"], help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(ap)
    args = ap.parse_args()
    source = Path(args.data_dir) / f"emt_{args.n}.xyz"
    if args.worker:
        limit = args.limit or args.n
        print(json.dumps(run_mode(args.worker, str(source), args.chunk_size, args.model, limit)))
        return
    check_outputs([("--json", args.json)], force=args.force)
    report: dict = {
        "benchmark": "large_data",
        "n": args.n,
        "chunk_size": args.chunk_size,
        "model": args.model,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if not source.exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        generate(source, args.n)
        report["generation_s"] = round(time.perf_counter() - t0, 1)
    report["file_mb"] = round(source.stat().st_size / 2**20, 1)
    report["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    sizes = sorted({int(k) for k in (args.sizes or "").split(",") if k} | {args.n})
    for size in sizes:
        key = "" if size == args.n else f"_{size}"
        for mode in ("lazy", "eager"):
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                mode,
                "--data-dir",
                args.data_dir,
                "--n",
                str(args.n),
                "--chunk-size",
                str(args.chunk_size),
                "--model",
                args.model,
                "--limit",
                str(size),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                report[mode + key] = {"error": proc.stderr.strip().splitlines()[-1:]}
                continue
            report[mode + key] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{mode:5s}: {r['n_structures']} structures, peak RSS {r['peak_rss_mb']} MB "
                f"(baseline {r['baseline_rss_mb']} MB), {r['seconds']} s, "
                f"RMSE {r['rmse_ev']} eV",
                flush=True,
            )
        lazy, eager = report.get("lazy" + key, {}), report.get("eager" + key, {})
        if "weights" in lazy and "weights" in eager:
            report["max_weight_difference" + key] = float(
                np.max(np.abs(np.subtract(lazy["weights"], eager["weights"])))
            )
            report["rss_above_baseline_ratio_eager_over_lazy" + key] = round(
                (eager["peak_rss_mb"] - eager["baseline_rss_mb"])
                / max(lazy["peak_rss_mb"] - lazy["baseline_rss_mb"], 1e-9),
                2,
            )
    report["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    atomic_write_text(args.json, json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
