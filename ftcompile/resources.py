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



LARGE_BLOCK = 4 * 2**20  # bytes: a block this large gets its own mapping (map_large_allocations)
# torch advises transparent huge pages for its blocks of 2 MiB and up when this is set; it reads the variable once, at
# its first such allocation, so it is set before any (cli.py) and again, for API callers, when a harden starts
TORCH_HUGE_PAGES = "THP_MEM_ALLOC_ENABLE"


def map_large_allocations() -> bool:
    """Give every block of ``LARGE_BLOCK`` bytes and up its own mapping, released when freed, with huge pages for
    torch's; keep the heap for smaller blocks and never trim it (glibc only; else a no-op). Process-wide; returns
    whether it applied.

    Why mapped: the drift objective's forwards allocate tens of MB per activation. Kept in glibc's heap (the setting
    before, mmap and trim thresholds at 1 GiB) they fragmented it, and not the same way twice: one objective call on
    the CIFAR CNN held at most 296 MiB yet grew the heap to 444-1,032 MiB over runs of identical work, and a whole
    harden's peak moved by hundreds of MB run to run (benchmarks/results/memory.json). A mapped block leaves no hole
    behind; the heap stayed at 248-281 MiB and the objective's peak at 580-596 MiB against 1,222-1,658 MiB.
    Why a fixed threshold and huge pages: glibc's default (a threshold that floats up to 32 MiB) also maps and
    unmaps, and paid a page fault per 4 KiB of every fresh block, more system time than compute on ResNet-20
    (allocator.json). Huge pages fault 2 MiB at a time.
    """
    import ctypes
    import ctypes.util
    import os

    os.environ.setdefault(TORCH_HUGE_PAGES, "1")  # too late if torch already made a large block: faults cost more
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
        return bool(libc.mallopt(m_mmap_threshold, LARGE_BLOCK)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
