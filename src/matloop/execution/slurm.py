"""SLURM through dask-jobqueue: each job runs Dask workers that connect back to this process."""

from __future__ import annotations

import sys
from typing import Any

from matloop.errors import ConfigError
from matloop.execution.config import SlurmConfig


def slurm_cluster(cfg: SlurmConfig, **extra: Any) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` for `cfg` (no job is submitted until it is scaled)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ConfigError(
            "SLURM needs the 'cluster' extra: pip install 'matloop[cluster]'"
        ) from exc
    threads = max(1, cfg.cores // cfg.processes)
    kwargs: dict[str, Any] = {
        "cores": cfg.cores,
        "processes": cfg.processes,
        "memory": cfg.memory,
        "walltime": cfg.walltime,
        "queue": cfg.queue,
        "account": cfg.account,
        "job_extra_directives": list(cfg.job_extra),
        # each worker runs one task at a time; the task's code uses the job's cores through
        # OpenMP/MPI threads, cores // processes of them
        "job_script_prologue": [
            *cfg.prologue,
            f"export OMP_NUM_THREADS={threads}",
            f"export MATLOOP_NUM_THREADS={threads}",
        ],
        "python": cfg.python or sys.executable,
        "worker_extra_args": ["--nthreads", "1"],  # the last --nthreads wins (click)
    }
    if cfg.log_directory:
        kwargs["log_directory"] = cfg.log_directory
    kwargs.update(extra)
    return SLURMCluster(**kwargs)


def slurm_job_script(cfg: SlurmConfig) -> str:
    """The batch script SLURM would receive for `cfg` (starts and stops a local scheduler)."""
    cluster = slurm_cluster(cfg, scheduler_options={"dashboard_address": None})
    try:
        return cluster.job_script()
    finally:
        cluster.close()
