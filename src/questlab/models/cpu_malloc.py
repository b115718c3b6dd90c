"""glibc malloc tuning for CPU training at long sequence lengths.

A BERT step at 512 tokens allocates and frees many tensors of tens of megabytes. With glibc's
defaults each one above the mmap threshold is a fresh ``mmap`` + page faults on first touch +
``munmap`` on free, and freed heap tops are trimmed back to the kernel: on these machines that
memory traffic is 25-35% of a MiniLM training step (``../shared/MODELS.md``). Serving big blocks
from a heap that is never trimmed reuses already-faulted pages instead.

This is what ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...:
glibc.malloc.top_pad=...`` does at process start, done at run time through ``mallopt`` (the trim
threshold at mallopt's 2 GiB maximum) so that ``questlab run`` needs no special launch.
The cost: the process keeps its peak heap (freed memory is reused, not returned), so its
resident size stays at its high-water mark until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4


@dataclass(frozen=True)
class MallocTuning:
    """The settings applied: no mmap-served blocks, never trim, grow the heap in large steps."""

    mmap_max: int = 0
    trim_threshold: int = 2**31 - 1  # mallopt takes a C int: the largest it accepts (2 GiB)
    top_pad: int = 256 * 2**20


_applied: MallocTuning | None = None


def tune_malloc(tuning: MallocTuning = MallocTuning()) -> bool:
    """Apply ``tuning`` to this process's glibc malloc; True if applied (now or earlier).

    A no-op returning False where the C library is not glibc (macOS, musl) or refuses a value.
    Process-wide and not undone: call it in processes that train, not in a long-lived server.
    """
    global _applied
    if _applied == tuning:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(
        mallopt(param, value) == 1
        for param, value in (
            (M_MMAP_MAX, tuning.mmap_max),
            (M_TRIM_THRESHOLD, tuning.trim_threshold),
            (M_TOP_PAD, tuning.top_pad),
        )
    )
    if ok:
        _applied = tuning
    return ok
