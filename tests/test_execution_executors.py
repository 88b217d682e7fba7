"""Executors: local (inline and process pool) and Dask, plus unreachable schedulers."""

from __future__ import annotations

import time

import pytest
from ase.build import bulk

from matloop.errors import ConfigError
from matloop.execution import LocalExecutor, make_executor
from matloop.labelling import make_labeller


def _structures(n=4):
    out = []
    for i in range(n):
        a = bulk("Cu", cubic=True)
        a.rattle(0.05, seed=i)
        out.append(a)
    return out


def _check(results, structures):
    from ase.calculators.emt import EMT

    assert sorted(i for i, _ in results) == list(range(len(structures)))
    for i, res in results:
        ref = structures[i].copy()
        ref.calc = EMT()
        assert res.ok
        assert res.atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy())


def test_local_inline_executor():
    lab = make_labeller("emt")
    s = _structures()
    with LocalExecutor(1) as ex:
        assert ex.n_workers == 1
        _check(list(ex.map_unordered(lab.label, s)), s)
        fut = ex.submit(divmod, 7, 2)
        assert fut.result() == (3, 1)


def test_local_process_pool_executor():
    lab = make_labeller("emt")
    s = _structures()
    with LocalExecutor(2) as ex:
        _check(list(ex.map_unordered(lab.label, s)), s)


def test_dask_local_cluster_executor():
    distributed = pytest.importorskip("distributed")
    from matloop.execution.dask import DaskExecutor

    lab = make_labeller("emt")
    s = _structures()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        with DaskExecutor(cluster) as ex:
            assert ex.n_workers == 1
            _check(list(ex.map_unordered(lab.label, s)), s)
        # an address works too
        with make_executor(cluster.scheduler_address) as ex:
            _check(list(ex.map_unordered(lab.label, s)), s)


def test_unreachable_scheduler_is_a_clear_error_and_fast():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        make_executor("127.0.0.1:9", timeout_s=1.0)
    assert time.perf_counter() - t0 < 10


def _sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_ctrl_c_keeps_what_running_workers_finish():
    """A Ctrl-C while waiting cancels queued tasks but still yields the ones already running."""
    import signal

    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    got = []
    try:
        with LocalExecutor(2) as ex:
            list(ex.map_unordered(_sleep_then_return, [0.0, 0.0]))  # start both workers
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            with pytest.raises(KeyboardInterrupt):
                for i, value in ex.map_unordered(_sleep_then_return, [0.05, 1.5]):
                    got.append((i, value))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert got == [(0, 0.05), (1, 1.5)]  # the 1.5 s task ran on and was not thrown away


def test_a_second_ctrl_c_stops_the_wait_at_once():
    """After a first Ctrl-C the driver waits for running tasks; a second one stops that wait
    (it is not taken for the task's own failure, which would drop the task and wait on)."""
    import signal

    hits = []

    def interrupt(*_):
        hits.append(time.perf_counter())
        if len(hits) <= 2:
            raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    got = []
    try:
        with LocalExecutor(3) as ex:
            list(ex.map_unordered(_sleep_then_return, [0.0, 0.0, 0.0]))  # start the workers
            start = time.perf_counter()
            signal.setitimer(signal.ITIMER_REAL, 0.4, 0.4)
            with pytest.raises(KeyboardInterrupt):
                for i, value in ex.map_unordered(_sleep_then_return, [0.05, 3.0, 3.0]):
                    got.append((i, value))
            stopped = time.perf_counter() - start
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert got == [(0, 0.05)]
    assert stopped < 2.0, stopped  # at the second interrupt (0.8 s), not when the tasks end (3 s)
