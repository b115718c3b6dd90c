"""Worker for ``test_transformer_ddp_infer.py``: predict a tiny random-weight net's rows, sharded.

Run alone (one process) or under ``torchrun`` (DDP over gloo); rank 0 saves the predictions.
The net is prepared by accelerate, so under torchrun it is wrapped in DDP as in training.
Not a test module: ``python ddp_infer_worker.py ENCODER OUT.npy [ROWS] [BATCH]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the helpers package


def main(encoder: str, out: str, rows: int, batch_size: int) -> None:
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    from helpers.transformer import synthetic_quest
    from questlab.ddp import leave_process_group
    from questlab.models.transformer.batches import RowDataset
    from questlab.models.transformer.inputs import encode_frame
    from questlab.models.transformer.network import QuestNet, load_encoder
    from questlab.models.transformer.training import TrainSettings, infer
    from questlab.schema import TARGETS

    accelerator = Accelerator(cpu=True)
    frame = synthetic_quest(rows, seed=3)
    enc = encode_frame(AutoTokenizer.from_pretrained(encoder), frame, 48, with_answer=True)
    zeros = [0] * rows
    data = RowDataset(enc.input_ids, enc.token_type_ids, zeros, zeros, frame[list(TARGETS)].to_numpy())
    torch.manual_seed(0)  # the same random head on every process
    net = accelerator.prepare(QuestNet(load_encoder(encoder), n_out=len(TARGETS)))
    settings = TrainSettings.of(bf16=False, eval_batch_size=batch_size)
    pred, loss = infer(net, data, settings, accelerator, shard=True)
    if accelerator.is_main_process:
        np.save(out, np.concatenate([pred, np.full((rows, 1), loss)], axis=1))
    # Leave together, with gloo's threads stopped: a rank that exits with them running can be
    # aborted at shutdown ("terminate called without an active exception"). That can still happen,
    # rarely, so the test retries that one failure once (test_transformer_ddp_infer).
    leave_process_group()


if __name__ == "__main__":
    rows, batch = (int(a) for a in [*sys.argv[3:5], 33, 4][:2])
    main(sys.argv[1], sys.argv[2], rows, batch)
