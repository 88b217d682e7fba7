"""One writer per run directory: an exclusive lock file naming its holder.

The lock is an advisory ``flock`` on ``DIR/.matloop.lock``: the kernel releases it when the holder
exits, however it exits (crash, SIGKILL), so a lock can never outlive its process on this host.
The file records host, PID, start time and command; a second writer is refused with a message
naming that holder. A record left by a process that is gone (a crash) is reported as stale and
taken over. The file is never deleted while in use (deleting a locked file lets two processes
hold locks on different inodes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from matloop.errors import MatloopError

LOCK_NAME = ".matloop.lock"


class RunLockedError(MatloopError):
    """Another process holds the run directory."""


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f"PID {holder.get('pid')} on {holder.get('host')}, started {when}"


def read_holder(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The holder record of `directory`'s lock file, or None (no file, empty or unreadable)."""
    try:
        text = (Path(directory) / LOCK_NAME).read_text()
        holder = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


class RunLock:
    """Exclusive, non-blocking lock of a run directory (context manager).

    ``stale`` is set after :meth:`acquire` to the record of a dead previous holder, if any.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self.stale: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming the holder."""
        while True:
            # O_NOFOLLOW: a lock file that is a symbolic link would have the file it points
            # to truncated and overwritten with the holder record
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if not self.path.is_symlink():
                    raise
                raise RunLockedError(
                    f"{self.path} is a symbolic link, not a lock file; remove it ({exc.strerror})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = read_holder(self.directory) or {}
                raise RunLockedError(
                    f"{self.directory} is in use by another matloop run ({_describe(holder)}; "
                    f"command: {holder.get('command', '?')}); wait for it to finish or stop it"
                ) from None
            # the file may have been replaced between open and flock: lock the current inode
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        # a record that is still there although the kernel lock was free: its holder crashed
        self.stale = read_holder(self.directory)
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.time(),
            "command": " ".join(["matloop", *sys.argv[1:]])[:300],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the holder record and drop the lock (the file itself stays)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing releases the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def locked_run_dir(directory: str | os.PathLike) -> Iterator[RunLock]:
    """Create `directory` if needed and hold its lock for the duration of the block."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    with RunLock(directory) as lock:
        yield lock
