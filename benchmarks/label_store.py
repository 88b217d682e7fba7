"""Label store under concurrent writers: N processes (1, 2, 4, 8) each push 2,000 EMT-labelled
structures, 20 % of them shared by all writers, into one store (SQLite file, PostgreSQL server).

    python benchmarks/label_store.py --json benchmarks/results/label_store.json \
        [--postgres-url postgresql://user@host:5432/db] [--writers 1,2,4,8] [--per-writer 2000] \
        [--overlap 0.2] [--data-dir DIR]

Reports per backend and N: rows written per second (unique rows ÷ wall time from the common start
to the last writer's end), pushes per second (all structures offered), duplicates (rows − distinct
content hashes; must be 0), lost (expected hashes missing from the store; must be 0) and the
transaction retries. The PostgreSQL URL (or MATLOOP_TEST_POSTGRES_URL) must let its user
CREATE DATABASE: every run gets a fresh database, dropped afterwards. The password never appears
in the JSON. The machine load (os.getloadavg) and CPU seconds of the writers are recorded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def _labelled(n: int, seed: int) -> list:
    import numpy as np
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + rng.normal() * 0.01), cubic=True)
        atoms.numbers[rng.random(len(atoms)) < 0.3] = 13  # Cu/Al alloy
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.get_forces()
        out.append(atoms)
    return out


def _make_inputs(folder: Path, n_writers: int, per_writer: int, overlap: float) -> list[Path]:
    from ase.io import write

    from matloop.utils.files import atomic_path

    n_shared = int(round(per_writer * overlap))
    shared_path = folder / f"shared_{n_shared}.xyz"
    if not shared_path.exists():  # inputs are cached: written whole or not at all
        with atomic_path(shared_path) as tmp:
            write(tmp, _labelled(n_shared, seed=999_999))
    paths = []
    for w in range(n_writers):
        path = folder / f"writer{w}_{per_writer - n_shared}.xyz"
        if not path.exists():
            with atomic_path(path) as tmp:
                write(tmp, _labelled(per_writer - n_shared, seed=w))
        paths.append(path)
    return [shared_path, *paths]


def _writer(url: str, paths: list[str], seed: int, ready, start, out) -> None:
    import numpy as np
    from ase.io import read

    from matloop.store import LabelStore

    structures = [a for p in paths for a in read(p, ":")]
    order = np.random.default_rng(seed).permutation(len(structures))
    structures = [structures[i] for i in order]  # shared ones interleaved with own ones
    store = LabelStore(url)
    store.count()  # connected
    ready.put(seed)
    start.wait(3600)
    t0 = time.perf_counter()
    result = store.push(structures, code="emt", run=f"writer{seed}")
    out.put({**result.as_dict(), "seconds": time.perf_counter() - t0})


def _expected(paths: list[Path], n_writers: int) -> set[str]:
    from ase.io import read

    from matloop.store import content_hash

    files = [paths[0], *paths[1 : 1 + n_writers]]
    return {content_hash(a, "emt") for p in files for a in read(p, ":")}


def _run(url: str, inputs: list[Path], n_writers: int) -> dict:
    from matloop.store import LabelStore

    LabelStore(url).count()  # create the schema before the race
    ctx = mp.get_context("spawn")
    ready, start, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=_writer, args=(url, [str(inputs[0]), str(inputs[1 + w])], w, ready, start, out)
        )
        for w in range(n_writers)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every writer has read its file and connected
        ready.get(timeout=3600)
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    start.set()
    results = [out.get(timeout=3600) for _ in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    store = LabelStore(url)
    hashes = store.hashes()
    expected = _expected(inputs, n_writers)
    offered = sum(r["written"] + r["existing"] for r in results)
    return {
        "writers": n_writers,
        "offered": offered,
        "rows": len(hashes),
        "expected_rows": len(expected),
        "duplicates": len(hashes) - len(set(hashes)),
        "lost": len(expected - set(hashes)),
        "unexpected": len(set(hashes) - expected),
        "written_reported": sum(r["written"] for r in results),
        "retries": sum(r["retries"] for r in results),
        "wall_s": round(wall, 3),
        "rows_per_s": round(len(hashes) / wall, 1),
        "pushes_per_s": round(offered / wall, 1),
        "writer_seconds": [round(r["seconds"], 2) for r in results],
        "writers_cpu_s": round(
            (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime), 2
        ),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def _pg_database(base: str):
    import psycopg2

    name = "bench_" + uuid.uuid4().hex[:10]
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    return admin, name, f"{base.rsplit('/', 1)[0]}/{name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=str(REPO / "benchmarks/results/label_store.json"))
    ap.add_argument("--postgres-url", default=os.environ.get("MATLOOP_TEST_POSTGRES_URL"))
    ap.add_argument("--writers", default="1,2,4,8")
    ap.add_argument("--per-writer", type=int, default=2000)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--data-dir", default=None, help="cache of generated inputs (default: temp)")
    from _output import add_force, atomic_write_text, check_outputs

    add_force(ap)
    args = ap.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    from matloop.store import redact

    writers = [int(x) for x in args.writers.split(",")]
    folder = Path(args.data_dir or tempfile.mkdtemp(prefix="label_store_"))
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    inputs = _make_inputs(folder, max(writers), args.per_writer, args.overlap)
    gen_s = time.perf_counter() - t0
    report: dict = {
        "benchmark": "label_store",
        "per_writer": args.per_writer,
        "overlap": args.overlap,
        "structure": "4-atom fcc Cu/Al cells, EMT labels",
        "input_generation_s": round(gen_s, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "runs": {},
    }
    for backend in args.backends.split(","):
        rows = []
        for n in writers:
            if backend == "sqlite":
                url = str(folder / f"store_{uuid.uuid4().hex[:8]}.db")
                rows.append(_run(url, inputs, n))
                Path(url).unlink()
            else:
                if not args.postgres_url:
                    print("no --postgres-url / MATLOOP_TEST_POSTGRES_URL: PostgreSQL skipped")
                    break
                admin, name, url = _pg_database(args.postgres_url)
                try:
                    rows.append(_run(url, inputs, n))
                finally:
                    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    admin.close()
                report.setdefault("postgres_server", redact(args.postgres_url))
            r = rows[-1]
            print(
                f"{backend:10s} N={n}: {r['rows']} rows ({r['expected_rows']} expected) in "
                f"{r['wall_s']:.1f} s = {r['rows_per_s']} rows/s; duplicates {r['duplicates']}, "
                f"lost {r['lost']}, retries {r['retries']}, load {r['loadavg_before'][0]}",
                flush=True,
            )
        report["runs"][backend] = rows
    atomic_write_text(args.json, json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
