"""Defects found by using the run state, data sources, Dask execution and surrogate ensembles as
a new user would: each test failed before its fix."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers.reference_data import write_rattled_cu

from matloop.active.state import RunState
from matloop.cli import main
from matloop.data.io import check_sources, iter_chunks, read_dataset, read_structures
from matloop.errors import ConfigError, DataError
from matloop.store import LabelStore
from matloop.surrogate import BootstrapEnsemble, PolynomialSurrogate, make_surrogate

BAD_URLS = ["sqlite://rel.db", "http://host/rel.db"]


def _labelled(path, n: int = 2) -> None:
    write_rattled_cu(path, n)


# -- 1. one check of database URLs -----------------------------------------------------------
@pytest.mark.parametrize("url", [*BAD_URLS, Path("http://host/rel.db")])
def test_run_state_refuses_a_mistyped_url_and_creates_nothing(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not a state database URL"):
        RunState(url)
    assert list(tmp_path.iterdir()) == []  # was: rel.db, or a folder 'http:' holding host/rel.db


def test_run_state_takes_a_sqlite_url_also_after_a_path_collapsed_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    assert RunState(url).count() == 0
    assert RunState(Path(url)).count() == 0  # 'sqlite:/...': was a folder named 'sqlite:'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.db"]


@pytest.mark.parametrize("suffix", ["", "#id>0"])
@pytest.mark.parametrize("url", BAD_URLS)
def test_data_sources_refuse_a_mistyped_url(tmp_path, monkeypatch, url, suffix):
    monkeypatch.chdir(tmp_path)
    LabelStore(tmp_path / "rel.db").count()  # the file exists: 'sqlite://rel.db' must not reach it
    source = url + suffix
    for read in (
        read_structures,
        read_dataset,
        lambda s: list(iter_chunks(s)),
        lambda s: check_sources([s]),  # was: accepted, the error came after other inputs
    ):
        with pytest.raises(ConfigError, match="not a database URL"):
            read(source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rel.db"]


def test_cli_data_push_refuses_a_mistyped_source_url_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _labelled(tmp_path / "in.xyz")
    assert main(["data", "push", "in.xyz", "--db", "labels.db", "--code", "emt", "-q"]) == 0
    capsys.readouterr()
    # (a 'sqlite://' source cannot be told from 'sqlite:///' here: typer's Path collapses '//')
    argv = ["data", "push", "in.xyz", "http://host/labels.db", "--db", "other.db"]
    assert main([*argv, "--code", "emt", "-q"]) == 1
    err = capsys.readouterr().err
    assert "not a database URL" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xyz", "labels.db"]


# -- 2. a cluster started for an executor stops when the executor cannot be built ---------------
def _worker_processes() -> set[int]:
    """Dask worker processes (not multiprocessing's resource tracker, which stays by design)."""
    import psutil

    out = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(proc.cmdline()):
                out.add(proc.pid)
        except psutil.Error:
            continue
    return out


def test_local_cluster_is_closed_when_the_client_fails(monkeypatch):
    pytest.importorskip("distributed")
    import distributed
    import psutil

    from matloop.execution import make_executor

    class FailingClient(distributed.Client):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("client failed")

    started: list = []
    real_local_cluster = distributed.LocalCluster

    def recording_cluster(*args, **kwargs):
        cluster = real_local_cluster(*args, **kwargs)
        started.append((cluster, _worker_processes()))
        return cluster

    before = _worker_processes()
    monkeypatch.setattr(distributed, "Client", FailingClient)
    monkeypatch.setattr(distributed, "LocalCluster", recording_cluster)
    with pytest.raises(RuntimeError, match="client failed"):
        make_executor("local:1")
    (cluster, during), *_ = started
    workers = during - before
    assert workers  # a real cluster with a worker process was started
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in workers):
        time.sleep(0.2)
    alive = [p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    try:
        assert alive == []  # was: the cluster and its worker processes lived on
        assert cluster.status.name == "closed"
    finally:
        cluster.close()


def test_slurm_cluster_is_closed_when_scaling_fails(monkeypatch):
    from matloop.execution import ExecutionConfig, make_executor, slurm

    class Cluster:
        closed = False

        def scale(self, jobs):
            raise RuntimeError("sbatch not found")

        def close(self):
            Cluster.closed = True

    monkeypatch.setattr(slurm, "slurm_cluster", lambda settings: Cluster())
    with pytest.raises(RuntimeError, match="sbatch"):
        make_executor(config=ExecutionConfig(cluster="slurm"))
    assert Cluster.closed


# -- 3. an ensemble of polynomials that interpolate has no spread to show ----------------------
@pytest.mark.parametrize(("degree", "n_features"), [(2, 1), (1, 1), (1, 2)])
def test_polynomial_ensemble_refuses_as_many_samples_as_coefficients(degree, n_features):
    from math import comb

    p = comb(degree + n_features, n_features)
    rng = np.random.default_rng(0)

    def data(n):
        X = rng.uniform(0, 1, (n, n_features))
        return X, np.sin(3 * X).sum(axis=1) + 0.05 * rng.normal(size=n)

    with pytest.raises(DataError, match=f"needs more than {p} samples, got {p}"):
        make_surrogate("ensemble", degree=degree).fit(*data(p))  # was: std ~1e-16, no warning
    with pytest.warns(UserWarning, match=f"at least {p + 2} samples for a meaningful band"):
        make_surrogate("ensemble", degree=degree).fit(*data(p + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        X, y = data(p + 2)
        _, std = make_surrogate("ensemble", degree=degree).fit(X, y).predict(X, return_std=True)
    assert np.all(std > 1e-6)


def test_polynomial_ensemble_with_fewer_samples_than_coefficients_says_why():
    X = np.linspace(0, 1, 3)
    with pytest.raises(DataError, match="10 coefficients"):
        BootstrapEnsemble(PolynomialSurrogate(degree=9)).fit(X, X**2)


def test_cli_surrogate_fit_refuses_an_interpolating_ensemble(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("V,E\n1,2\n2,1\n3,2.5\n")
    out = tmp_path / "m.npz"
    argv = ["surrogate", "fit", str(data), "--x", "V", "--y", "E", "--model", "ensemble"]
    assert main([*argv, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "needs more than 3 samples" in err and err.count("\n") == 1
    assert not out.exists()  # was: written, with a std of 4e-16 at every point
