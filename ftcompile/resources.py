"""What a run cost: this process's own peak memory."""
from __future__ import annotations

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



def keep_large_allocations() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse (glibc only; else a no-op).

    glibc maps every block above its mmap threshold (at most 32 MiB by default) afresh and unmaps it on free,
    so each drifted forward pass of a CNN (tens of MB per activation) pays page faults for zeroed pages. Raising
    the mmap and trim thresholds to 1 GiB keeps those blocks in the heap. On the ResNet-20 objective (3 calls of 10
    samples of 2,000 images, one thread) glibc's default spent 27.9 s in the kernel against 0.2 s; mapping only
    blocks of 4 MiB and up, with huge pages, still spent 42.9 s (benchmarks/results/allocator.json).
    A heap that keeps large blocks fragments if small blocks that outlive them are made in between: each pins the
    hole a freed block leaves. Hence the drift objective frees each batch's outputs before the next forward
    (objective.py, ``_batched``). Process-wide; returns whether it applied.
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
