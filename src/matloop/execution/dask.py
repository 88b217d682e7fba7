"""Dask distributed execution: a scheduler address, a Client, or a cluster object.

For SLURM/PBS, start a dask-jobqueue cluster and pass it (or its scheduler address); see
docs/active_learning.md for a worked configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from matloop.errors import ConfigError
from matloop.execution.base import Executor


class DaskExecutor(Executor):
    """Submit tasks to a Dask cluster.

    `scheduler` is an address ('tcp://host:8786'), a ``distributed.Client``, or a cluster
    (LocalCluster, SLURMCluster, ...). An unreachable address raises :class:`ConfigError` after
    `timeout_s` seconds.
    """

    name = "dask"

    def __init__(self, scheduler: Any, *, timeout_s: float = 10.0) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise ConfigError("Dask execution needs 'distributed' (pip install dask[distributed])"
                              ) from exc
        self._own_client = False
        if isinstance(scheduler, Client):
            self.client = scheduler
        elif isinstance(scheduler, str):
            address = scheduler.strip()
            if not address:
                raise ConfigError("empty Dask scheduler address")
            if "://" not in address:
                address = "tcp://" + address
            try:
                self.client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s "
                    f"({type(exc).__name__}); is `dask scheduler` running and the address right?"
                ) from exc
            self._own_client = True
        else:  # a cluster object
            self.client = Client(scheduler, set_as_default=False)
            self._own_client = True

    @property
    def n_workers(self) -> int:
        try:
            return max(1, len(self.client.scheduler_info().get("workers", {})))
        except Exception:  # noqa: BLE001
            return 1

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        # pure=False: a labelling is not cached by Dask; matloop's database is the cache
        return self.client.submit(fn, *args, pure=False, **kwargs)

    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        from distributed import as_completed

        yield from as_completed(list(futures), loop=self.client.loop)

    def close(self) -> None:
        if self._own_client:
            self.client.close()
