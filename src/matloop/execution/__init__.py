"""Executors for labelling and committee training: local processes (default) or Dask."""

from __future__ import annotations

from typing import Any

from matloop.execution.base import Executor
from matloop.execution.config import ExecutionConfig, SlurmConfig, is_local_spec, local_workers
from matloop.execution.local import LocalExecutor

__all__ = [
    "DaskExecutor",
    "ExecutionConfig",
    "Executor",
    "LocalExecutor",
    "SlurmConfig",
    "make_executor",
]


def __getattr__(name: str) -> Any:
    if name == "DaskExecutor":
        from matloop.execution.dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(name)


def make_executor(
    scheduler: Any = None,
    *,
    n_workers: int | None = None,
    timeout_s: float = 10.0,
    config: ExecutionConfig | None = None,
) -> Executor:
    """The executor for `scheduler` (or, when it is None, for `config`).

    `scheduler`: ``"local:N"`` starts a Dask LocalCluster of N worker processes; an address,
    ``distributed.Client`` or cluster object uses Dask; None and no `config.cluster` runs local
    processes (`n_workers`). ``config.cluster == "slurm"`` starts a dask-jobqueue SLURMCluster
    and scales it to ``config.slurm.jobs`` jobs. Clusters started here stop with the executor.
    """
    if config is not None:
        scheduler = scheduler or config.scheduler
        n_workers = n_workers if n_workers is not None else config.workers
        timeout_s = config.connect_timeout_s
    if isinstance(scheduler, str) and is_local_spec(scheduler):
        n = local_workers(scheduler)
        if not n:  # 'local:0', 'local:x', 'local' (no address has that form; 'localhost' does)
            from matloop.errors import ConfigError

            raise ConfigError(f"scheduler {scheduler!r}: use 'local:N' with N >= 1 workers")
        from matloop.execution.dask import DaskExecutor, local_cluster

        return DaskExecutor(local_cluster(n), own_cluster=True)
    if scheduler is not None and scheduler != "":
        from matloop.execution.dask import DaskExecutor

        return DaskExecutor(scheduler, timeout_s=timeout_s)
    if config is not None and config.cluster == "slurm":
        from matloop.execution.dask import DaskExecutor
        from matloop.execution.slurm import slurm_cluster

        cluster = slurm_cluster(config.slurm)
        try:
            cluster.scale(jobs=config.slurm.jobs)
        except BaseException:
            cluster.close()  # no scheduler (and no submitted jobs) left behind
            raise
        return DaskExecutor(cluster, own_cluster=True)
    return LocalExecutor(n_workers)
