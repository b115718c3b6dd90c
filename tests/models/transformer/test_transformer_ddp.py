"""``questlab run`` under torchrun with two CPU processes (DDP over gloo): one run is recorded,
by rank 0 alone, with every fold, and the workers print no run id."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from questlab.store import Store

pytest_plugins = ["helpers.transformer"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_questlab_run_under_torchrun_records_one_run(tmp_path: Path, tiny_encoder: Path, make_quest) -> None:
    train = tmp_path / "train.csv"
    make_quest(40).to_csv(train, index=False)
    config = tmp_path / "ddp.yaml"
    config.write_text(
        "name: ddp\nfolds: {n_splits: 2, seed: 0}\nbootstrap: 20\n"
        "model:\n  name: transformer\n  params:\n"
        f"    encoder: {tiny_encoder}\n    max_length: 48\n    batch_size: 4\n    epochs: 1\n"
        "    precision: fp32\n    progress: false\n    lr: 0.001\n    head_lr: 0.01\n"
    )
    store = tmp_path / "store"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "questlab.cli",
        "run",
        str(config),
        "--train",
        str(train),
        "--store",
        str(store),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = [line for line in out.stdout.splitlines() if line.strip()]
    assert len(printed) == 1, out.stdout  # rank 0's run id; the worker prints nothing
    runs = Store(store).list_runs()
    assert [r.run_id for r in runs] == printed
    run_dir = Store(store).get(printed[0]).dir
    for k in (0, 1):
        fit_log = json.loads((run_dir / "folds" / f"fold_{k}" / "fit_log.json").read_text())
        assert fit_log["info"]["processes"] == 2
        assert json.loads((run_dir / "folds" / f"fold_{k}" / "fold.json").read_text())["fold"] == k
    assert (run_dir / "oof.csv").exists()
