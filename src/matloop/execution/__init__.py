"""Executors for labelling and committee training: local processes (default) or Dask."""

from __future__ import annotations

from typing import Any

from matloop.execution.base import Executor
from matloop.execution.local import LocalExecutor

__all__ = ["DaskExecutor", "Executor", "LocalExecutor", "make_executor"]


def __getattr__(name: str) -> Any:
    if name == "DaskExecutor":
        from matloop.execution.dask import DaskExecutor

        return DaskExecutor
    raise AttributeError(name)


def make_executor(
    scheduler: Any = None, *, n_workers: int | None = None, timeout_s: float = 10.0
) -> Executor:
    """A Dask executor when `scheduler` is given (address, Client or cluster), else local."""
    if scheduler is not None and scheduler != "":
        from matloop.execution.dask import DaskExecutor

        return DaskExecutor(scheduler, timeout_s=timeout_s)
    return LocalExecutor(n_workers)
