"""Local execution: inline (1 worker) or a pool of worker processes."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from matloop.execution.base import Executor


def _worker_init(threads: int) -> None:
    os.environ.setdefault("MATLOOP_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    try:
        from matloop.utils.threads import configure_torch_threads
    except ImportError:  # torch is optional in a worker that only labels
        return
    configure_torch_threads(threads)  # this worker process's own setting


class LocalExecutor(Executor):
    """Run tasks on this machine.

    ``n_workers=1`` (the default on small machines) runs each task in the calling process when it
    is submitted: no start-up cost, and the labeller's time limit (SIGALRM) works. ``n_workers>1``
    uses a process pool (start method 'spawn' by default: safe with torch and threads).
    """

    name = "local"

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        start_method: str = "spawn",
        threads_per_worker: int = 1,
    ) -> None:
        if n_workers is None:
            try:
                n_workers = max(1, len(os.sched_getaffinity(0)) // 2)
            except AttributeError:  # pragma: no cover
                n_workers = 1
        if int(n_workers) < 1:
            from matloop.errors import ConfigError

            raise ConfigError(f"n_workers={n_workers}: use 1 or more local worker processes")
        self._n = int(n_workers)
        self._pool: cf.ProcessPoolExecutor | None = None
        if self._n > 1:
            self._pool = cf.ProcessPoolExecutor(
                max_workers=self._n,
                mp_context=mp.get_context(start_method),
                initializer=_worker_init,
                initargs=(threads_per_worker,),
            )

    @property
    def n_workers(self) -> int:
        return self._n

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            fut.set_exception(exc)
        return fut

    def map_unordered(
        self, fn: Callable[..., Any], items: Iterable[Any]
    ) -> Iterator[tuple[int, Any]]:
        if self._pool is None:  # lazily, so the caller can persist each result before the next
            for i, item in enumerate(items):
                yield i, fn(item)
            return
        yield from super().map_unordered(fn, items)

    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        yield from cf.as_completed(list(futures))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
