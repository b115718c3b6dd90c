"""Worker processes on this machine (``tune(workers=N)``): started, sharing the cores, waited for.

Each runs ``python -m questlab.tuning SPEC_JSON`` (:mod:`questlab.tuning.__main__`), which joins the study.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from questlab.console import Say
from questlab.data import Dataset
from questlab.tuning.context import StudyContext

STOP_GRACE_S = 30.0  # how long a stopped worker may take to mark its trial before it is killed


def write_frame(data: Dataset, folder: Path) -> Path:
    """A DataFrame's train data as the CSV workers read (same sha256 as the frame's identity)."""
    path = folder / "train.csv"
    path.write_bytes(data.frame.to_csv(index=False).encode())
    return path


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Cap BLAS/OpenMP threads while several worker processes share the cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def spawn_workers(ctx: StudyContext, count: int, train_path: Path, threads: int) -> list[subprocess.Popen]:
    """Start ``count`` joining processes on this machine (``python -m questlab.tuning``)."""
    src = str(Path(__file__).resolve().parents[2])  # so the worker imports this very questlab
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    procs = []
    for i in range(1, count + 1):
        spec = {
            "study": ctx.name,
            "storage": ctx.storage_url,
            "store": ctx.store.uri,
            "train": str(Path(train_path).resolve()),
            "trials": ctx.trials,
            "worker": i,
            "parent_pid": os.getpid(),  # the worker dies with this process (PR_SET_PDEATHSIG)
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "questlab.tuning", json.dumps(spec)], env=env, stdout=subprocess.DEVNULL
            )
        )
    return procs


def stop_workers(procs: list[subprocess.Popen], grace_s: float = STOP_GRACE_S) -> None:
    """Tell the workers to stop (SIGTERM: each marks its running trial KILLED), wait ``grace_s``,
    then kill those still running."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_for_workers(procs: list[subprocess.Popen], say: Say) -> None:
    for i, p in enumerate(procs, start=1):
        rc = p.wait()
        if rc != 0:
            say(f"warning: worker {i} exited with code {rc} (its messages are above); its trials were replaced")
