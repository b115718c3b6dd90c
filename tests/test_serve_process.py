"""The real `questlab serve` command (uvicorn in its own process) answers like `questlab predict`.

A tiny TF-IDF run and a rank ensemble of two tiny runs are each served on 127.0.0.1 on a free
port; every pair of the test slice is POSTed and compared, all 30 targets, with what `questlab
predict` writes for the same file; the server then stops cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.paths import REPO
from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from questlab import __version__
from questlab.cli import app
from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble
from questlab.schema import ID, TARGETS
from questlab.store import Store

TFIDF = {"max_features": 2000}
STARTUP_S = 120  # imports (MLflow, FastAPI) on 2 busy cores take a while


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A store with two tiny TF-IDF runs on the same folds and their rank ensemble with post-processing."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('serve-process') / 'mlflow.db'}"
    store = Store(uri)
    a = tiny_run(store, "tfidf", TFIDF, name="a")
    b = tiny_run(store, "tfidf", {**TFIDF, "alpha": 40.0}, name="b")
    spec = EnsembleSpec(weights="auto", per_target=True, average="rank", postprocess="auto", min_gain=-1.0)
    ensemble, _ = build_ensemble(store, [a, b], spec, n_boot=0)
    return {"uri": uri, "member": a, "ensemble": ensemble}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _questlab() -> list[str]:
    """The installed `questlab` console script beside this Python (else the same CLI as a module)."""
    script = Path(sys.executable).with_name("questlab")
    return [str(script)] if script.exists() else [sys.executable, "-m", "questlab.cli"]


@pytest.fixture
def server(runs: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str, Path]]:
    """`questlab serve RUN` started as a process; yields (url, run id, its log); stopped with SIGTERM."""
    run_id = runs[request.param]
    port = _free_port()
    cmd = [*_questlab(), "serve", run_id, "--host", "127.0.0.1", "--port", str(port), "--store", runs["uri"]]
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        # this checkout's questlab, whichever one the console script was installed from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, f"`questlab serve` exited early: {log_path.read_text()}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no /health within {STARTUP_S} s: {log_path.read_text()}"
            time.sleep(0.2)
        yield url, run_id, log_path
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: exit by SIGTERM (or 0), no traceback
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), f"unclean stop: {log_path.read_text()}"
        assert "Traceback" not in log_path.read_text()
    finally:
        if proc.poll() is None:  # a failed assertion above: never leave the server running
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("server", ["member", "ensemble"], indirect=True)
def test_the_real_server_answers_like_questlab_predict(server: tuple[str, str, Path], runs, tmp_path: Path) -> None:
    url, run_id, log_path = server
    health = httpx.get(f"{url}/health", timeout=10).json()
    assert health["run_id"] == run_id and health["version"] == __version__

    out = tmp_path / "predict.csv"
    done = CliRunner().invoke(
        app, ["predict", run_id, "--input", str(slice_of_test()), "--output", str(out), "--store", runs["uri"]]
    )
    assert done.exit_code == 0, done.output
    expected = pd.read_csv(out)

    raw = pd.read_csv(slice_of_test(), dtype=str, keep_default_na=False)
    pairs = [{**row, ID: int(row[ID])} for row in raw.to_dict(orient="records")]
    response = httpx.post(f"{url}/predict", json={"pairs": pairs}, timeout=120)
    assert response.status_code == 200, response.text
    got = pd.DataFrame(response.json()["predictions"])
    assert len(got) == len(expected) == len(raw) == 50
    assert got[ID].tolist() == expected[ID].tolist()
    np.testing.assert_allclose(got[list(TARGETS)].to_numpy(), expected[list(TARGETS)].to_numpy(), rtol=0, atol=1e-12)
    # A bad pair is refused by the real server too, naming the field and the pair.
    bad = httpx.post(f"{url}/predict", json={"pairs": [{**pairs[0], "answer": ""}]}, timeout=30)
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "answer"
    assert "Traceback" not in log_path.read_text()


@pytest.mark.parametrize("server", ["member"], indirect=True)
def test_a_request_logs_one_access_line_and_no_progress_bar(server: tuple[str, str, Path]) -> None:
    url, _, log_path = server
    raw = pd.read_csv(slice_of_test(), dtype=str, keep_default_na=False).head(3)
    pairs = [{**row, ID: int(row[ID])} for row in raw.to_dict(orient="records")]
    assert httpx.post(f"{url}/predict", json={"pairs": pairs}, timeout=120).status_code == 200
    time.sleep(0.5)  # the access line is written after the response
    log = log_path.read_text()
    assert sum('"POST /predict HTTP/1.1" 200' in line for line in log.splitlines()) == 1, log
    assert "\r" not in log and "\x1b[" not in log and "it/s" not in log and "seq/s" not in log, log
