"""Dask distributed execution: a scheduler address, a Client, or a cluster object.

``local:N`` in the configuration starts a :func:`local_cluster`; ``cluster: slurm`` a
dask-jobqueue SLURMCluster (see docs/cluster.md). A task running on a worker that dies is
rescheduled by Dask on another worker; results come back to this process, which stores each label
once (the run database refuses a second outcome for a candidate).
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

    def __init__(
        self, scheduler: Any, *, timeout_s: float = 10.0, own_cluster: bool = False
    ) -> None:
        try:
            from distributed import Client
        except ImportError as exc:  # pragma: no cover - dask is a dependency
            raise ConfigError(
                "Dask execution needs 'distributed' (pip install dask[distributed])"
            ) from exc
        self._own_client = False
        self._cluster = scheduler if own_cluster else None
        try:
            self._connect(Client, scheduler, timeout_s)
        except BaseException:
            self.close()  # a cluster handed over with own_cluster=True stops here, not never
            raise

    def _connect(self, Client: Any, scheduler: Any, timeout_s: float) -> None:  # noqa: N803
        if isinstance(scheduler, Client):
            self.client = scheduler
        elif isinstance(scheduler, str):
            address = scheduler.strip()
            if not address:
                raise ConfigError("empty Dask scheduler address")
            if "://" not in address:
                address = "tcp://" + address
            _check_address(address)
            try:
                self.client = Client(address, timeout=f"{timeout_s}s", set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(
                    f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s "
                    f"({type(exc).__name__}); is `dask scheduler` running and the address right?"
                ) from exc
            except ValueError as exc:
                raise ConfigError(f"invalid Dask scheduler address {address!r} ({exc})") from None
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
        own_client, self._own_client = self._own_client, False
        cluster, self._cluster = self._cluster, None
        try:
            if own_client:
                self.client.close()
        finally:
            if cluster is not None:
                cluster.close()


def _check_address(address: str) -> None:
    """Refuse an address Dask cannot parse, before a Client is built (a Client that fails on
    it raises ValueError and then blocks for 20 s while it is garbage-collected)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            _, port = parse_host_port(location)
            if port is not None and not 0 < int(port) < 65536:
                raise ValueError(f"port {port} out of range")
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"invalid Dask scheduler address {address!r} ({exc}); give e.g. tcp://host:8786 "
            "or local:N"
        ) from None


def local_cluster(n_workers: int, **kwargs: Any) -> Any:
    """A Dask LocalCluster of `n_workers` single-threaded worker processes (with nannies, so a
    worker that dies is restarted), no dashboard."""
    from distributed import LocalCluster

    options: dict[str, Any] = {
        "n_workers": int(n_workers),
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        "env": {"OMP_NUM_THREADS": "1", "MATLOOP_NUM_THREADS": "1"},
    }
    options.update(kwargs)
    return LocalCluster(**options)
