"""What a run cost: this process's own peak memory."""
from __future__ import annotations

import os
import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident memory of this process alone, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: the high-water mark of this process's own address
    space, which starts afresh at ``exec``. ``ru_maxrss`` does not: Linux keeps it across ``execve``, so a
    child started by a large parent reports the parent's peak (every benchmark row once read 993 MB so).
    Elsewhere ``ru_maxrss`` is the best there is.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 2**20 if sys.platform == "darwin" else usage / 1024


def bound_allocator() -> None:
    """Make glibc's malloc keep one arena, so memory freed by one torch thread is reused by the next.

    Measured on the objective's batched forwards (20,000 inputs, a 2048-wide layer, torch's intra-op
    threads): the default per-thread arenas let the peak grow to 2.6 GB for 8 MB of live tensors; one
    arena kept it at 345 MB at the same speed. It only holds for threads started afterwards, so
    ``import ftcompile`` calls it (before torch, whose import starts its threads) and spawned workers
    inherit ``MALLOC_ARENA_MAX=1``. A no-op where libc has no ``mallopt`` (not glibc).
    """
    os.environ.setdefault("MALLOC_ARENA_MAX", "1")  # for worker processes: glibc reads it at start
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass
