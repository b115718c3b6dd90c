"""A real `questlab run` in a subprocess, stopped from outside once its folds are being fitted."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import yaml

from helpers.paths import QUEST_DIR, REPO


def start_tfidf_run(
    tmp_path: Path, name: str, parallel_folds: int = 1, stderr: IO | int = subprocess.DEVNULL, **popen
) -> tuple[subprocess.Popen, Path]:
    """``questlab run`` of a 5-fold TF-IDF config on train.csv into ``tmp_path/store``; (process, store)."""
    cfg = tmp_path / f"{name}.yaml"
    config = {"name": name, "parallel_folds": parallel_folds, "bootstrap": 0, "folds": {"n_splits": 5}}
    cfg.write_text(yaml.safe_dump({**config, "model": {"name": "tfidf"}}))
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "questlab.cli", "run", str(cfg), "--train", str(QUEST_DIR / "train.csv")]
    proc = subprocess.Popen([*cmd, "--store", str(store)], stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO, **popen)
    return proc, store


def wait_for_folds(proc: subprocess.Popen, store: Path, n: int, timeout: float = 120) -> list[Path]:
    """Wait until ``n`` fold folders exist (their folds are being fitted) while the run is alive."""
    deadline = time.monotonic() + timeout
    started: list[Path] = []
    while time.monotonic() < deadline and len(started) < n and proc.poll() is None:
        started = list(store.glob("artifacts/*/*/artifacts/folds/fold_*"))
        time.sleep(0.05)
    assert len(started) >= n and proc.poll() is None, f"the run never started fitting {n} fold(s)"
    return started
