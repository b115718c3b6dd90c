"""Which process of a torchrun / ``accelerate launch`` group this is, and leaving the group cleanly.

A distributed run (DDP) starts one process per device; only rank 0 records the run (cv.py).
"""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    """Under ``accelerate launch`` / torchrun only rank 0 records; the others just train."""
    return int(os.environ.get("RANK", "0")) == 0


def leave_process_group() -> None:
    """Under torchrun / ``accelerate launch``: wait until every rank is done (rank 0 records after
    the last fold), then close the process group. A rank that exits first, with gloo's threads
    still running, can be aborted at shutdown; its non-zero exit makes torchrun stop rank 0 in
    the middle of recording. Only on success: a failed rank exits at once and torchrun stops the
    others."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
