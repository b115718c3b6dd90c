"""A real ``mlflow server`` in a subprocess on 127.0.0.1 (artifacts proxied), for a test's lifetime."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# MLflow 3 starts job-runner processes beside a database-backed server (GenAI jobs: scorers, trace
# archival); runs never use them, and they compete for a loaded machine's cores.
NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
START_TIMEOUT_S = 240  # a new database's migrations take a while on a loaded machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(backend_store_uri: str, root: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``mlflow server`` on ``backend_store_uri`` (artifacts under ``root/artifacts``, its log
    appended to ``root/mlflow-server.log``) and wait until it answers; return the process and its URL."""
    port = port or free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "mlflow-server.log"
    with open(log, "a") as err:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", backend_store_uri, "--artifacts-destination", str(root / "artifacts"),
            ],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **NO_JOBS},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({proc.returncode}): {log.read_text()[-3000:]}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"mlflow server did not answer in {START_TIMEOUT_S} s: {log.read_text()[-3000:]}"
                ) from None
            time.sleep(0.5)


@contextlib.contextmanager
def mlflow_server(backend_store_uri: str, root: Path) -> Iterator[str]:
    """``mlflow server`` on ``backend_store_uri`` with artifacts under ``root/artifacts``; yields its URL."""
    proc, url = start_mlflow_server(backend_store_uri, root)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
