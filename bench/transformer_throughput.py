"""Training throughput of the transformer family against a naive loop, same model, same rows, one run.

Naive: every batch padded to ``--max-length`` tokens, fp32, rows in random order.
Ours: ``questlab``'s training loop (length-bucketed batches, dynamic padding, bf16 autocast).
Both train the same network (encoder + head, fresh copy each) for one pass over the same rows
with the same batch size and optimizer. Prints sequences/s, the speed-up and peak RSS memory.

    PYTHONPATH=src python bench/transformer_throughput.py --train ../shared/quest/train.csv --rows 128
"""

from __future__ import annotations

import argparse
import copy
import resource
import time

import numpy as np
import torch
import torch.nn.functional as F

from questlab.data import load_train
from questlab.encoders import resolve_encoder
from questlab.models.base import FitLog
from questlab.models.transformer.data import RowDataset, collate
from questlab.models.transformer.inputs import encode_frame
from questlab.models.transformer.network import QuestNet, load_encoder
from questlab.models.transformer.training import TrainSettings, bce, forward, param_groups, train_network
from questlab.schema import TARGETS


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def naive_epoch(net: QuestNet, data: RowDataset, batch_size: int, max_length: int, settings: TrainSettings) -> float:
    """One fp32 pass in random order, every batch padded to ``max_length``; returns seconds."""
    optimizer = torch.optim.AdamW(param_groups(net, settings))
    order = np.random.default_rng(0).permutation(len(data))
    net.train()
    started = time.perf_counter()
    for start in range(0, len(order), batch_size):
        batch = collate([data[i] for i in order[start : start + batch_size]], data.pad_id)
        for key in ("input_ids", "attention_mask", "token_type_ids"):  # pad to the full length
            fill = data.pad_id if key == "input_ids" else 0
            batch[key] = F.pad(batch[key], (0, max_length - batch[key].shape[1]), value=fill)
        loss = bce(forward(net, batch), batch["targets"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/quest/train.csv")
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (ours, naive); the best of each counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    folder = resolve_encoder(args.encoder)
    frame = load_train(args.train).sample(args.rows, random_state=0).reset_index(drop=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = encode_frame(tokenizer, frame, args.max_length, with_answer=True)
    data = RowDataset(
        enc.input_ids,
        enc.token_type_ids,
        [0] * len(frame),
        [0] * len(frame),
        frame[list(TARGETS)].to_numpy(np.float32),
        pad_id=tokenizer.pad_token_id or 0,
    )
    torch.manual_seed(0)
    template = QuestNet(load_encoder(folder), n_out=len(TARGETS))
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, progress=False, bf16=True)
    print(f"{args.rows} rows, mean {enc.lengths().mean():.0f} tokens (max {args.max_length}), batch {args.batch_size}")

    # Each loop first runs one untimed batch: first calls pay for kernel and allocator set-up.
    b = args.batch_size
    warm = RowDataset(
        data.input_ids[:b], data.token_type_ids[:b], data.category[:b], data.host[:b], data.targets[:b], data.pad_id
    )
    train_network(copy.deepcopy(template), warm, None, settings, FitLog(), Accelerator(cpu=True))
    naive_epoch(copy.deepcopy(template), warm, b, args.max_length, settings)

    def timed(fn) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    # Alternate the two loops and keep each one's best round: on a shared machine the load drifts.
    # CPU seconds (all threads of this process) are reported too: they move less with the load.
    def run_ours() -> None:
        train_network(copy.deepcopy(template), data, None, settings, FitLog(), Accelerator(cpu=True))

    def run_naive() -> None:
        naive_epoch(copy.deepcopy(template), data, b, args.max_length, settings)

    ours, naive, ours_peak = [], [], 0.0
    for _ in range(args.repeats):
        ours.append(timed(run_ours))
        ours_peak = ours_peak or peak_rss_gib()  # ru_maxrss only grows: read before the naive loop runs
        naive.append(timed(run_naive))
    naive_peak = peak_rss_gib()
    ours_wall, ours_cpu = min(w for w, _ in ours), min(c for _, c in ours)
    naive_wall, naive_cpu = min(w for w, _ in naive), min(c for _, c in naive)
    n = args.rows
    print(f"naive (fp32, pad to {args.max_length}): {n / naive_wall:6.2f} seq/s wall, {n / naive_cpu:6.2f} seq/CPU-s")
    print(f"questlab (bf16, bucketed):   {n / ours_wall:6.2f} seq/s wall, {n / ours_cpu:6.2f} seq/CPU-s")
    print(f"speed-up: {naive_wall / ours_wall:.2f}x wall, {naive_cpu / ours_cpu:.2f}x CPU time")
    print(f"peak RSS: questlab {ours_peak:.2f} GiB; whole run incl. naive {naive_peak:.2f} GiB")
    print(f"rounds (wall s): questlab {[round(w, 1) for w, _ in ours]}, naive {[round(w, 1) for w, _ in naive]}")


if __name__ == "__main__":
    main()
