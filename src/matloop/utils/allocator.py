"""glibc malloc settings for the large temporaries of repeated force evaluations (MD on CPU).

By default glibc hands every freed block above its mmap threshold back to the operating system,
so a force evaluation that allocates and frees tens of MB of temporaries page-faults them in
again at every MD step. Measured for the default `ace` basis on 500 Cu atoms, one thread: 146–157
ms per evaluation in float64 and 52–55 ms in float32 with glibc's defaults, 65 ms and 36 ms
with the settings below (benchmarks/README.md, "ACE: MD speed").
"""

from __future__ import annotations

import ctypes
import os
import platform

#: allocations up to this size come from the heap (glibc's largest allowed mmap threshold)
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
#: freed memory at the top of the heap kept for reuse before it is returned to the system
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Once per process, on glibc: serve allocations up to 32 MB from the heap and keep up to
    512 MB of freed heap for reuse (so repeated evaluations reuse their memory). Peak memory is
    unchanged; freed memory goes back to the system later. ``MATLOOP_MALLOC_TUNING=0`` leaves
    malloc alone. Returns whether the settings are in effect.
    """
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("MATLOOP_MALLOC_TUNING", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mmap_ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_ok and trim_ok
