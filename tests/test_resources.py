import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftcompile.resources import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def test_peak_memory_is_the_process_own_not_its_parents():
    big = np.ones(400 * 2**20 // 8)  # this process now holds 400 MiB more
    assert peak_rss_mb() >= 400
    code = "from ftcompile.resources import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 300 < peak_rss_mb(), child  # ru_maxrss would report the parent's peak here
    del big


_REUSE = """
import resource, sys
import numpy as np
from ftcompile.resources import keep_large_allocations
applied = keep_large_allocations() if sys.argv[1] == "keep" else False
a = np.ones(2**23); del a                      # 64 MiB: above glibc's default mmap threshold
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
a = np.ones(2**23)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_large_allocations_reuses_freed_blocks_without_page_faults():
    """By default glibc unmaps a freed 64 MiB block and the next one faults its pages in again; after
    keep_large_allocations the block stays in the heap and is reused."""
    runs = {mode: subprocess.run([sys.executable, "-c", _REUSE, mode], capture_output=True, text=True, check=True,
                                 cwd=ROOT).stdout.split() for mode in ("keep", "default")}
    assert runs["keep"][0] == "True"
    keep, default = int(runs["keep"][1]), int(runs["default"][1])
    assert default > 0 and keep * 4 < default, runs
