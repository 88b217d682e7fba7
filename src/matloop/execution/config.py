"""Where labelling and committee training run: typed settings (pydantic, unknown keys rejected).

``scheduler``: ``None`` (local processes, ``workers`` of them), ``"local:N"`` (a Dask
``LocalCluster`` with N single-threaded worker processes, started and stopped by matloop) or the
address of a running Dask scheduler (``tcp://host:8786``). ``cluster: slurm`` instead starts a
``dask_jobqueue.SLURMCluster`` from the ``slurm`` section and scales it to ``slurm.jobs`` jobs.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_LOCAL = re.compile(r"^local:(\d+)$")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|[KMGT])?$", re.IGNORECASE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlurmConfig(_Strict):
    """One SLURM job = ``processes`` Dask workers sharing ``cores`` cores and ``memory``."""

    cores: int = Field(1, ge=1, description="CPU cores per job (--cpus-per-task)")
    processes: int = Field(1, ge=1, description="Dask worker processes per job")
    memory: str = Field("4GB", description="memory per job, e.g. '16GB' (--mem)")
    walltime: str = Field("01:00:00", description="time limit per job, [D-]HH:MM[:SS] (--time)")
    queue: str | None = Field(None, description="partition (--partition)")
    account: str | None = Field(None, description="account to charge (--account)")
    job_extra: list[str] = Field(
        default_factory=list, description="more #SBATCH options, e.g. ['--qos=normal']"
    )
    prologue: list[str] = Field(
        default_factory=list, description="shell lines before the worker starts (module load ...)"
    )
    jobs: int = Field(1, ge=1, description="jobs to submit (workers = jobs × processes)")
    python: str | None = Field(None, description="python on the compute nodes (default: this one)")
    log_directory: str | None = Field(None, description="where SLURM writes the jobs' output")

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v: str) -> str:
        if not _WALLTIME.match(v.strip()):
            raise ValueError(f"walltime {v!r} is not [D-]HH:MM[:SS]")
        return v.strip()

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        if not _MEMORY.match(v.strip()):
            raise ValueError(f"memory {v!r} is not a size such as '4GB' or '500MB'")
        return v.strip()

    @field_validator("job_extra")
    @classmethod
    def _job_extra(cls, v: list[str]) -> list[str]:
        for opt in v:
            if not opt.startswith("-") or "\n" in opt:
                raise ValueError(f"job_extra entry {opt!r} must be one sbatch option ('--qos=x')")
        return v


class ExecutionConfig(_Strict):
    """Executors for labelling (and committee training)."""

    workers: int = Field(1, ge=1, description="local worker processes (no scheduler)")
    scheduler: str | None = Field(
        None, description="'local:N' (Dask LocalCluster, N workers) or a scheduler address"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="wait for a scheduler (s)")
    cluster: Literal["slurm"] | None = Field(None, description="start a batch-system cluster")
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        if is_local_spec(v):
            m = _LOCAL.match(v)
            if not m or int(m.group(1)) < 1:
                raise ValueError(f"scheduler {v!r}: use 'local:N' with N >= 1 workers")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> ExecutionConfig:
        if self.cluster and self.scheduler:
            raise ValueError("give either scheduler or cluster, not both")
        return self


def is_local_spec(scheduler: str) -> bool:
    """True for 'local' and 'local:...' (a LocalCluster request, valid or not), not for an
    address such as 'localhost:8786'."""
    text = scheduler.strip()
    return text == "local" or text.startswith("local:")


def local_workers(scheduler: str | None) -> int | None:
    """N for ``'local:N'``, else None."""
    m = _LOCAL.match(scheduler.strip()) if scheduler else None
    return int(m.group(1)) if m else None
