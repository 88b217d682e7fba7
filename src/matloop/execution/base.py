"""Executor interface: submit picklable work, collect results as they complete."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any


class Executor(abc.ABC):
    """Where labelling and committee training run (local processes, a Dask cluster, ...).

    Futures have ``result(timeout=None)``; :meth:`as_completed` yields them as they finish.
    Use as a context manager or call :meth:`close`.
    """

    name = "executor"

    @abc.abstractmethod
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Schedule ``fn(*args, **kwargs)``; return a future."""

    @abc.abstractmethod
    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        """Yield the given futures in completion order."""

    def map_unordered(
        self, fn: Callable[..., Any], items: Iterable[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Yield (index, fn(item)) in completion order (exceptions propagate).

        On Ctrl-C while waiting, results already in are still yielded (their work is paid for:
        a reference calculation the caller can store instead of repeating) and tasks not
        started are cancelled. A local process pool's running tasks are waited for, as its
        shutdown would anyway, and yielded if they end with a result; Dask cancels its running
        tasks. A second Ctrl-C stops the waiting at once. Then the KeyboardInterrupt goes on.
        """
        futures = {}
        for i, item in enumerate(items):
            futures[self.submit(fn, item)] = i
        yielded = set()
        try:
            for fut in self.as_completed(list(futures)):
                yielded.add(fut)
                yield futures[fut], fut.result()
        except KeyboardInterrupt:
            yield from _finished_after_interrupt(futures, yielded)
            raise

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release workers."""

    @property
    def n_workers(self) -> int:
        return 1

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineFuture(Future):
    """A future that is already resolved (used by serial execution)."""


def _finished_after_interrupt(
    futures: dict[Any, int], yielded: set[Any]
) -> Iterator[tuple[int, Any]]:
    """(index, result) of every future not yet yielded that ends with a result after a Ctrl-C."""
    rest = [fut for fut in futures if fut not in yielded]
    finished = {fut for fut in rest if fut.done()}
    for fut in rest:
        if fut not in finished:
            fut.cancel()  # queued ones (and, on Dask, running ones)
    for fut in sorted(rest, key=lambda f: f not in finished):  # what is in first
        if fut.cancelled():
            continue
        try:
            value = fut.result()
        except BaseException:
            if not fut.done():
                raise  # a second Ctrl-C while waiting: stop now
            continue  # the task failed or its worker was interrupted too: nothing to keep
        yield futures[fut], value
