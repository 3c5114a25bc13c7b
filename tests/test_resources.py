import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ftcompile.resources import TORCH_HUGE_PAGES, peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def test_peak_memory_is_the_process_own_not_its_parents():
    big = np.ones(400 * 2**20 // 8)  # this process now holds 400 MiB more
    assert peak_rss_mb() >= 400
    code = "from ftcompile.resources import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 300 < peak_rss_mb(), child  # ru_maxrss would report the parent's peak here
    del big


_FRAGMENT = """
import ctypes, sys
import numpy as np
from ftcompile.resources import map_large_allocations, peak_rss_mb
if sys.argv[1] == "map":
    print(map_large_allocations())
else:  # the setting before: large blocks served from the heap and kept (mmap and trim thresholds at 1 GiB)
    libc = ctypes.CDLL("libc.so.6")
    print(bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-1, 1 << 30)))
base = peak_rss_mb()
small = []
for i in range(12):
    block = np.ones((32 + i) * 2**20 // 8)  # 32-43 MiB, each a little larger than the last (activations)
    small.append(bytearray(2**16))          # a small block made after it that outlives it
    del block
print(peak_rss_mb() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_block_leaves_no_hole_that_grows_the_peak():
    """The drift objective's pattern in small: a large block, a small one after it that stays, the large one freed,
    a slightly larger one next. Kept in the heap, each freed block is a hole the next cannot use, and the peak grows;
    mapped, it is released, and the peak stays at the largest block (43 MiB)."""
    runs = {mode: subprocess.run([sys.executable, "-c", _FRAGMENT, mode], capture_output=True, text=True, check=True,
                                 cwd=ROOT).stdout.split() for mode in ("map", "keep")}
    assert runs["map"][0] == "True" and runs["keep"][0] == "True", runs
    mapped, kept = float(runs["map"][1]), float(runs["keep"][1])
    assert mapped < 43 + 4, runs
    assert kept > mapped + 16, runs  # the pattern does fragment a heap that keeps large blocks


def test_torch_huge_pages_are_asked_for_before_torch_allocates_unless_the_user_said_otherwise():
    """torch reads THP_MEM_ALLOC_ENABLE once, at its first large block: the command line sets it first thing, and
    map_large_allocations (a harden through the API) sets it if nobody has; a value the user set stays."""
    code = ("import os, sys\nfrom ftcompile import cli\nsys.argv = ['ftcompile', '--version']\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\nprint(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    env = {k: v for k, v in os.environ.items() if k != TORCH_HUGE_PAGES}
    run = lambda c, e: subprocess.run([sys.executable, "-c", c], capture_output=True, text=True, check=True,  # noqa
                                      cwd=ROOT, env=e).stdout.split()[-1]
    assert run(code, env) == "1"
    assert run(code, {**env, TORCH_HUGE_PAGES: "0"}) == "0"
    api = ("import os\nfrom ftcompile.resources import map_large_allocations\nmap_large_allocations()\n"
           "print(os.environ.get('THP_MEM_ALLOC_ENABLE'))")
    assert run(api, env) == "1"
    assert run(api, {**env, TORCH_HUGE_PAGES: "0"}) == "0"
