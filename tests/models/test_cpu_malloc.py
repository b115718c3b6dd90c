"""glibc malloc tuning: after ``tune_malloc`` big blocks come from the heap, not fresh mmaps."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
import numpy as np
from questlab.models.cpu_malloc import tune_malloc

def big_anonymous_maps():
    out = []
    for line in open("/proc/self/maps"):
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if len(fields) == 5 and hi - lo >= 60 * 2**20:  # anonymous, >= 60 MiB
            out.append(hi - lo)
    return len(out)

if sys.argv[1] == "tuned":
    assert tune_malloc() and tune_malloc()  # applied, and a second call is a no-op
before = big_anonymous_maps()
block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
print(big_anonymous_maps() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_tuned_malloc_serves_big_blocks_from_the_heap() -> None:
    def new_maps(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert new_maps("default") == 1  # glibc's default: a 64 MiB block is its own mmap
    assert new_maps("tuned") == 0  # tuned: it comes from the (never trimmed) heap
