"""Sharded prediction under DDP: two processes predict exactly what one does, and no row can be lost."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from questlab.models.transformer import training

pytest_plugins = ["helpers.transformer"]
WORKER = Path(__file__).with_name("ddp_infer_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A rare abort of a gloo rank at process exit (seen twice in CI, the last after the ranks were made
# to leave through a barrier + destroy_process_group): a run that fails with exactly this message
# is retried once, on a new port; any other failure, or this one twice, fails the test.
GLOO_EXIT_ABORT = "terminate called without an active exception"


def _run(cmd: list[str], retry_gloo_abort: bool = False) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0 and retry_gloo_abort and GLOO_EXIT_ABORT in out.stderr:
        port = cmd.index("--master_port") + 1
        cmd = [*cmd[:port], str(_free_port()), *cmd[port + 1 :]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rows", "batch"),
    [(33, 4), (3, 4)],  # 9 batches: shards of 5 and 4; 1 batch: the second process predicts nothing
)
def test_two_processes_predict_what_one_does(tiny_encoder: Path, tmp_path: Path, rows: int, batch: int) -> None:
    one, two = tmp_path / "one.npy", tmp_path / "two.npy"
    _run([sys.executable, str(WORKER), str(tiny_encoder), str(one), str(rows), str(batch)])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    _run([*torchrun, "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER),
          str(tiny_encoder), str(two), str(rows), str(batch)], retry_gloo_abort=True)  # fmt: skip
    single, ddp = np.load(one), np.load(two)
    assert single.shape == (rows, 31)
    np.testing.assert_allclose(ddp, single, rtol=1e-5, atol=1e-6)


def test_every_row_placed_once() -> None:
    index = torch.tensor([2, 0, 1])
    logits = torch.tensor([[2.0], [0.0], [1.0]])
    assert training.place_rows(index, logits, 3).flatten().tolist() == [0.0, 1.0, 2.0]


def test_a_missing_row_raises_instead_of_becoming_half() -> None:
    with pytest.raises(RuntimeError, match=r"row 1 .* 0 times"):
        training.place_rows(torch.tensor([0, 2]), torch.zeros((2, 4)), 3)


def test_a_row_predicted_twice_raises() -> None:
    with pytest.raises(RuntimeError, match=r"row 0 .* 2 times"):
        training.place_rows(torch.tensor([0, 0, 1]), torch.zeros((3, 4)), 2)
