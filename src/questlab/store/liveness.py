"""Who is running a run: host, pid and a heartbeat, so a hard-killed run shows as dead.

A process killed with SIGKILL (or a lost machine) never marks its run: MLflow keeps it RUNNING.
While a run is recorded, its tags say which host and pid run it and a background thread renews
``questlab.heartbeat`` every ``HEARTBEAT_S`` seconds. A RUNNING run is *dead* when its process is
gone (same host) or its heartbeat is older than ``STALE_S`` (any host); only a dead run may be
resumed. On the machine that runs it, an exclusive lock on a file in its folder stops a second
process from working on the same run even before the first heartbeat.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from questlab.errors import UsageError

TAG_HOST = "questlab.host"
TAG_PID = "questlab.pid"
TAG_HEARTBEAT = "questlab.heartbeat"  # unix time of the last sign of life
HEARTBEAT_S = 30.0
STALE_S = 4 * HEARTBEAT_S
LOCK_FILE = ".questlab-run.lock"
T = TypeVar("T")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    try:  # a killed process not yet reaped (a zombie) runs nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (not Linux)
        return True


def owned_temp_dir(prefix: str, parent: Path | None = None) -> Path:
    """A new temporary folder named ``PREFIX<pid>-<random>``: :func:`remove_orphaned_dirs` can tell
    when the process that made it is gone (a SIGKILL leaves it behind)."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def remove_orphaned_dirs(parent: Path, prefix: str, unnamed_after_s: float = 3600) -> None:
    """Remove the folders :func:`owned_temp_dir` made in ``parent`` whose process is gone; folders
    with the prefix but no pid (older versions) only once untouched for ``unnamed_after_s``."""
    for folder in Path(parent).glob(f"{prefix}*"):
        pid = folder.name.removeprefix(prefix).split("-", 1)[0]
        if pid.isdigit() and pid_alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if not pid.isdigit() and time.time() - folder.stat().st_mtime < unnamed_after_s:
                continue
            shutil.rmtree(folder, ignore_errors=True)


def is_dead(status: str, tags: dict[str, str], now: float | None = None) -> bool:
    """A RUNNING run whose process is gone, or whose heartbeat stopped (runs from before heartbeats: never)."""
    if status != "RUNNING" or TAG_HEARTBEAT not in tags:
        return False
    now = time.time() if now is None else now
    same_host = tags.get(TAG_HOST) == socket.gethostname() and tags.get(TAG_PID, "").isdigit()
    if same_host and not pid_alive(int(tags[TAG_PID])):
        return True
    return now - float(tags[TAG_HEARTBEAT]) > STALE_S


def describe(tags: dict[str, str]) -> str:
    """``pid 123 on host-a, heartbeat 12 s ago`` (what a refusal says)."""
    beat = tags.get(TAG_HEARTBEAT)
    ago = f", heartbeat {time.time() - float(beat):.0f} s ago" if beat else ""
    return f"pid {tags.get(TAG_PID, '?')} on {tags.get(TAG_HOST, '?')}{ago}"


@contextmanager
def run_lock(folder: Path, run_id: str, tags: dict[str, str]) -> Iterator[None]:
    """Hold the run's lock file for the block; another holder on this machine is a UsageError."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"run {run_id} is being run by another process ({describe(tags)}): wait for it, or stop it first"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def first_beat() -> dict[str, str]:
    """The liveness tags of a run this process starts recording now (host, pid, heartbeat)."""
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()), TAG_HEARTBEAT: f"{time.time():.0f}"}


@contextmanager
def heartbeat(client_factory: Any, run_id: str) -> Iterator[None]:
    """Tag the run with this host and pid, and renew its heartbeat from a daemon thread."""
    client = client_factory()
    for tag, value in first_beat().items():
        client.set_tag(run_id, tag, value)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            # a missed beat is not worth failing the run; staleness shows it
            with contextlib.suppress(Exception):
                client.set_tag(run_id, TAG_HEARTBEAT, f"{time.time():.0f}")

    thread = threading.Thread(target=beat, name=f"questlab-heartbeat-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def die_with_parent(parent_pid: int | None = None) -> None:
    """In a worker process: be killed when the process that started it dies (Linux), so a killed
    run leaves no orphaned workers holding memory.

    Call it first thing in the worker (a pool's initializer, a worker's ``main``), before any work.
    ``parent_pid``: the pid of the process that started this one (``os.getpid()`` there, passed
    down). A parent that died before the signal was armed sends nothing: then this process has
    already been reparented, and it exits at once.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to do
        return
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent is already gone: nothing to work for, nobody to report to


# die_with_parent as a pool worker's initializer: stdlib only, so the worker arms it within
# milliseconds of starting (unpickling questlab.store.liveness would import questlab.store, over a
# second on a busy machine, during which a killed parent leaves the worker orphaned).
_ARM_IN_WORKER = """
import ctypes, os, signal
try:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
else:
    if os.getppid() != {parent}:
        os._exit(1)
"""


def interrupted_by(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (Ctrl-C, or SIGTERM through :func:`sigterm_as_interrupt`) behind ``exc``.

    A signal can land inside a library call (a database commit); the library's clean-up then raises
    its own error with the interrupt only in its context. Such an error is an interruption, not a bug.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (a job scheduler stopping us) into KeyboardInterrupt so the run is marked KILLED."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not in the main thread (e.g. inside a server): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT for the block, so processes started in it inherit SIG_IGN across exec: Python
    then installs no KeyboardInterrupt handler in them and Ctrl-C reaches only this process. Meant
    for a few milliseconds of starting workers; outside the main thread it does nothing."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not in the main thread: signals cannot be changed here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def in_workers(fn: Callable[..., T], calls: list[tuple], n_jobs: int) -> Iterator[T]:
    """``fn(*args)`` for each of ``calls`` in ``n_jobs`` worker processes; results as they finish.

    Ctrl-C reaches a terminal's whole process group. The workers are started ignoring SIGINT, so
    only this process raises KeyboardInterrupt (no worker traceback); it then kills them, as it
    does when a call fails or the caller stops iterating: no worker outlives the iteration.
    """
    from concurrent.futures import as_completed

    from joblib.externals.loky import ProcessPoolExecutor

    threads = str(max(1, (os.cpu_count() or 1) // n_jobs))  # as joblib does: no BLAS oversubscription
    env = {v: threads for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    with sigint_ignored():  # loky starts every worker inside the first submit: they inherit SIG_IGN
        # die_with_parent in the initializer, before any task is taken: a run killed while its
        # workers were still starting must not leave them (nor, through them, loky's resource
        # trackers, which exit when the last process holding their pipe is gone) running.
        executor = ProcessPoolExecutor(
            max_workers=n_jobs, env=env, initializer=exec, initargs=(_ARM_IN_WORKER.format(parent=os.getpid()),)
        )
        futures = [executor.submit(fn, *args) for args in calls]
    try:
        for future in as_completed(futures):
            yield future.result()
    except BaseException:  # Ctrl-C, a failed call, or the caller stopped early
        executor.shutdown(wait=False, kill_workers=True)
        raise
    executor.shutdown(wait=True)
