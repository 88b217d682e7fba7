"""The shared label store on SQLite and a real PostgreSQL server: one row per label, even with
concurrent writers; provenance on every row; no password in any output."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from helpers.postgres import fresh_database

from matloop.cli import main
from matloop.data.io import iter_chunks, read_dataset
from matloop.errors import DataError
from matloop.store import LabelStore, content_hash, redact


def _labelled(n: int, seed: int = 0) -> list:
    out = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True) if i % 2 else bulk("Al", cubic=True)
        atoms.rattle(0.05, seed=seed * 10_000 + i)
        atoms.calc = EMT()
        atoms.get_forces()
        out.append(atoms)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "labels.db")
    else:
        yield from fresh_database()


def test_hash_ignores_noise_below_rounding_but_not_settings():
    a = _labelled(1)[0]
    b = a.copy()
    b.positions += 1e-11
    assert content_hash(a, "emt") == content_hash(b, "emt")
    b.positions[0, 0] += 1e-3
    assert content_hash(a, "emt") != content_hash(b, "emt")
    assert content_hash(a, "vasp", {"encut": 500}) != content_hash(a, "vasp", {"encut": 520})
    assert content_hash(a, "vasp", {"a": 1, "b": 2}) == content_hash(a, "vasp", {"b": 2, "a": 1})


def test_push_pull_roundtrip_with_provenance(store_url):
    structures = _labelled(6)
    store = LabelStore(store_url)
    first = store.push(structures, code="emt", settings={"asap_cutoff": False}, run="r1", tag="t")
    again = store.push(structures[:4], code="emt", settings={"asap_cutoff": False}, run="r2")
    assert (first.written, first.existing) == (6, 0)
    assert (again.written, again.existing) == (0, 4)
    pulled = list(store.pull("tag=t"))
    assert len(pulled) == 6 == store.count()
    by_hash = {content_hash(a, "emt", {"asap_cutoff": False}): a for a in structures}
    for atoms in pulled:
        ref = by_hash[atoms.info["content_hash"]]
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-9)
        for key in ("ref_code", "ref_version", "settings_hash", "pushed_by", "host", "run"):
            assert atoms.info[key], key
        assert atoms.info["run"] == "r1"
        assert abs(atoms.info["labelled_at"] - __import__("time").time()) < 600
    # the unique constraint is the database's, not only the client's check
    from matloop.store import transaction

    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with transaction(store.db) as cur:
            cur.execute(
                "UPDATE systems SET unique_id = ? WHERE id = 2",
                [
                    pulled[0].unique_id
                    if hasattr(pulled[0], "unique_id")
                    else pulled[0].info["content_hash"]
                ],
            )


def _writer(url: str, path: str, run: str, start: mp.Event) -> None:  # noqa: D401
    from ase.io import read

    from matloop.store import LabelStore

    structures = read(path, ":")
    store = LabelStore(url)
    start.wait(30)
    for i in range(0, len(structures), 10):
        store.push(structures[i : i + 10], code="emt", run=run)


@pytest.mark.slow
def test_concurrent_writers_never_duplicate_or_lose(store_url, tmp_path):
    n_writers, n_each, n_shared = 4, 30, 6  # 20 % of each writer's labels are shared
    shared = _labelled(n_shared, seed=99)
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    expected: dict[str, tuple[float, set[str]]] = {}
    procs = []
    for w in range(n_writers):
        own = _labelled(n_each - n_shared, seed=w) + shared
        rng = np.random.default_rng(w)
        own = [own[i] for i in rng.permutation(len(own))]
        path = tmp_path / f"w{w}.xyz"
        write(path, own)
        for atoms in own:
            h = content_hash(atoms, "emt")
            expected.setdefault(h, (atoms.get_potential_energy(), set()))[1].add(f"w{w}")
        procs.append(ctx.Process(target=_writer, args=(store_url, str(path), f"w{w}", start)))
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = LabelStore(store_url)
    hashes = store.hashes()
    assert len(hashes) == len(set(hashes)) == len(expected)  # no duplicate, none lost
    assert set(hashes) == set(expected)
    for atoms in store.pull():
        energy, writers = expected[atoms.info["content_hash"]]
        assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-9)
        assert atoms.info["run"] in writers  # key-value pairs sit on their own row


def test_lazy_chunks_from_database_with_selection(store_url, tmp_path):
    store = LabelStore(store_url)
    store.push(_labelled(7), code="emt", tag="a")
    store.push(_labelled(5, seed=3), code="emt", tag="b")
    chunks = list(iter_chunks(f"{store_url}#tag=a", chunk_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    data = read_dataset(f"{store_url}#tag=b")
    assert len(data) == 5
    # CLI options typed as pathlib.Path collapse 'scheme://' to 'scheme:/': still readable
    via_path = read_dataset(Path(f"{store_url}#tag=b"))
    assert len(via_path) == 5
    _assert_no_password(store_url, data.source + via_path.source)


def test_cli_push_pull_and_no_password_in_output(store_url, tmp_path, capsys):
    src = tmp_path / "in.xyz"
    write(src, _labelled(5))
    assert (
        main(["data", "push", str(src), "--db", store_url, "--code", "emt", "--tag", "x", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["written"] == 5 and out["rows_in_store"] == 5
    target = tmp_path / "out.xyz"
    assert main(["data", "pull", "--db", store_url, "--select", "tag=x", "--out", str(target)]) == 0
    assert len(read_dataset(target)) == 5
    assert main(["data", "pull", "--db", store_url, "--out", str(target)]) == 1  # no clobbering
    assert (
        main(
            [
                "data",
                "pull",
                "--db",
                store_url,
                "--select",
                "tag=nope",
                "--out",
                str(tmp_path / "none.xyz"),
            ]
        )
        == 1
    )
    assert not (tmp_path / "none.xyz").exists()
    text = "".join(capsys.readouterr())
    _assert_no_password(store_url, text + json.dumps(out))


def _assert_no_password(url: str, text: str) -> None:
    if "://" in url and ":" in url.split("://", 1)[1].split("@")[0]:
        password = url.split("://", 1)[1].split("@")[0].split(":", 1)[1]
        assert password not in text
        assert redact(url) != url


def test_bad_password_is_one_line_without_the_password(capsys):
    url = "postgresql://someone:s3cret-pw@127.0.0.1:1/nodb"
    pytest.importorskip("psycopg2")
    assert main(["data", "count", "--db", url]) == 1
    err = capsys.readouterr().err
    assert "s3cret-pw" not in err and err.count("\n") == 1 and "***" in err


@pytest.fixture
def pg_url():
    yield from fresh_database()


def test_pg_environment_variables_supply_the_password(monkeypatch, pg_url):
    url = pg_url
    if ":" not in url.split("://", 1)[1].split("@")[0]:
        pytest.skip("the test server URL has no password to move into PGPASSWORD")
    user_pw, rest = url.split("://", 1)[1].split("@", 1)
    user, password = user_pw.split(":", 1)
    monkeypatch.setenv("PGPASSWORD", password)
    store = LabelStore(f"postgresql://{user}@{rest}")
    assert store.push(_labelled(2), code="emt").written == 2
    assert password not in repr(store)


def test_unlabelled_structure_is_refused(tmp_path):
    atoms = bulk("Cu")
    with pytest.raises(DataError, match="unlabelled"):
        LabelStore(tmp_path / "x.db").push([atoms], code="emt")
    assert not os.path.exists(tmp_path / "x.db")  # refused before anything was written


def test_pull_and_count_from_a_missing_database_create_nothing(tmp_path, capsys):
    from matloop.cli import main

    missing = tmp_path / "missing.db"
    for argv in (
        ["data", "pull", "--db", str(missing), "--out", str(tmp_path / "o.xyz")],
        ["data", "count", "--db", str(missing)],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "database not found" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_writer_waits_while_another_creates_the_sqlite_schema(tmp_path):
    """Writers starting together on a new file: one may find the schema half written (here the
    `systems` table without ASE's `information` table). It retries until the other one is done
    instead of failing with "no such table" (4 of 10 trials of six real writers failed before)."""
    import sqlite3
    import threading
    import time

    import ase.db

    path = tmp_path / "labels.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE systems (id INTEGER PRIMARY KEY)")
    con.close()

    def the_other_writer_finishes():
        time.sleep(0.3)
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE systems")
        other.close()
        ase.db.connect(str(path)).count()  # ASE's own schema, complete

    other = threading.Thread(target=the_other_writer_finishes)
    other.start()
    store = LabelStore(str(path))
    store.push(_labelled(2), code="emt", run="r")
    other.join()
    assert len(store.hashes()) == 2
