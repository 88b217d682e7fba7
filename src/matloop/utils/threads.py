"""Deliberate CPU thread settings for PyTorch (oversubscription on 2 cores is very costly)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def configure_torch_threads(n_threads: int | None = None) -> int:
    """Set torch's intra-op thread count; default: ``MATLOOP_NUM_THREADS`` or 1.

    One thread is the default on purpose: matloop's per-step tensors are small, and on a 2-core
    machine shared with other work, OpenMP threads waiting on each other cost several times more
    CPU (measured: 10 training epochs took 1.8 s of CPU with 1 thread and 11.5 s with 2 while
    the other core was busy). Ask for more for large MD cells. Inter-op threads are set to 1 once.
    Returns the number of threads in use.
    """
    import torch  # imported here so that importing this module stays cheap

    if n_threads is None:
        n_threads = default_torch_threads()
    if torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    return n_threads


def default_torch_threads() -> int:
    """matloop's default torch thread count: ``MATLOOP_NUM_THREADS`` or 1."""
    env = os.environ.get("MATLOOP_NUM_THREADS")
    return int(env) if env else 1


@contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run a block with `n_threads` torch intra-op threads, then restore the caller's setting.

    ``None`` leaves torch as it is. matloop objects use this instead of changing the process-wide
    setting, so that ``matloop.load()`` in a user's script does not change their torch.
    """
    import torch

    if n_threads is None or n_threads == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def with_default_torch_threads(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run `func` inside ``torch_threads(default_torch_threads())``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with torch_threads(default_torch_threads()):
            return func(*args, **kwargs)

    return wrapper
