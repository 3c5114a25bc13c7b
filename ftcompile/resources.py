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

