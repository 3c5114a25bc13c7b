import subprocess
import sys

import numpy as np

from ftcompile.resources import peak_rss_mb


def test_peak_memory_is_the_process_own_not_its_parents():
    big = np.ones(400 * 2**20 // 8)  # this process now holds 400 MiB more
    assert peak_rss_mb() >= 400
    code = "from ftcompile.resources import peak_rss_mb; print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 300 < peak_rss_mb(), child  # ru_maxrss would report the parent's peak here
    del big
