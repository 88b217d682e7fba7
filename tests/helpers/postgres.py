"""A PostgreSQL database per test: MATLOOP_TEST_POSTGRES_URL, or a server started by
.ci/postgres.sh when the PostgreSQL binaries are installed; otherwise the test is skipped."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "postgres.sh"
_cached: dict[str, str | None] = {}


def server_url() -> str | None:
    """URL of a running server (started once per session if needed), or None."""
    if "url" in _cached:
        return _cached["url"]
    url = os.environ.get("MATLOOP_TEST_POSTGRES_URL")
    if not url and _SCRIPT.exists():
        proc = subprocess.run(
            ["bash", str(_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MATLOOP_PG_NO_INSTALL": "1"},
        )
        for line in proc.stdout.splitlines():
            if line.startswith("export MATLOOP_TEST_POSTGRES_URL="):
                url = line.split("=", 1)[1].strip()
    _cached["url"] = url or None
    return _cached["url"]


def fresh_database() -> Iterator[str]:
    """Create an empty database on the server; yield its URL; drop it afterwards."""
    pytest.importorskip("ase_db_backends", reason="needs the 'postgres' extra")
    psycopg2 = pytest.importorskip("psycopg2", reason="needs the 'postgres' extra")
    base = server_url()
    if not base:
        pytest.skip(
            "no PostgreSQL server: set MATLOOP_TEST_POSTGRES_URL or install postgresql "
            "(CI starts one with .ci/postgres.sh)"
        )
    name = "t_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    head, _ = base.rsplit("/", 1)
    try:
        yield f"{head}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
