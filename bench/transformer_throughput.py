"""Training throughput of the transformer family against a naive loop, same model, same rows, one run.

Naive: every batch padded to ``--max-length`` tokens, fp32, rows in random order.
Ours: ``questlab``'s training loop (length-bucketed batches, dynamic padding, bf16 autocast,
glibc malloc tuning: ``questlab.models.transformer.cpu_malloc``).
Both train the same network (encoder + head, fresh copy each) for one pass over the same rows
with the same batch size and optimizer, each pass in its own fresh process. Prints sequences/s,
the speed-up and each process's peak RSS memory.

    PYTHONPATH=src python bench/transformer_throughput.py --train ../shared/quest/train.csv --rows 128
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from questlab.data import load_train
from questlab.models.base import FitLog
from questlab.models.pretrained import resolve_encoder
from questlab.models.transformer.batches import RowDataset, collate
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


def measure(kind: str, args: argparse.Namespace) -> tuple[float, float, float]:
    """In a fresh process: one untimed warm-up batch, then one timed pass of ``kind`` ("ours" or
    "naive"); returns (wall seconds, CPU seconds, peak RSS GiB of this process)."""
    torch.set_num_threads(args.threads)
    import transformers
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()  # no weight-loading report per child

    folder = resolve_encoder(args.encoder)
    frame = load_train(args.train).sample(args.rows, random_state=0).reset_index(drop=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = encode_frame(tokenizer, frame, args.max_length, with_answer=True)
    targets = frame[list(TARGETS)].to_numpy(np.float32)
    pad = tokenizer.pad_token_id or 0
    data = RowDataset(enc.input_ids, enc.token_type_ids, [0] * len(frame), [0] * len(frame), targets, pad_id=pad)
    b = args.batch_size
    warm = RowDataset(enc.input_ids[:b], enc.token_type_ids[:b], [0] * b, [0] * b, targets[:b], pad_id=pad)
    torch.manual_seed(0)
    net = QuestNet(load_encoder(folder), n_out=len(TARGETS))
    # questlab's loop with its CPU defaults (bf16, malloc tuning); the naive one with neither.
    settings = TrainSettings(epochs=1, batch_size=b, progress=False, bf16=True, malloc_tuning=not args.no_malloc_tuning)
    if kind == "ours":
        train_network(copy.deepcopy(net), warm, None, settings, FitLog(), Accelerator(cpu=True))
        wall, cpu = time.perf_counter(), time.process_time()
        train_network(net, data, None, settings, FitLog(), Accelerator(cpu=True))
    else:
        naive_epoch(copy.deepcopy(net), warm, b, args.max_length, settings)
        wall, cpu = time.perf_counter(), time.process_time()
        naive_epoch(net, data, b, args.max_length, settings)
    return time.perf_counter() - wall, time.process_time() - cpu, peak_rss_gib()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", default="../shared/quest/train.csv")
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="rounds of (ours, naive); the best of each counts")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="ablation: questlab's loop without it")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    frame = load_train(args.train).sample(args.rows, random_state=0).reset_index(drop=True)
    enc = encode_frame(AutoTokenizer.from_pretrained(resolve_encoder(args.encoder)), frame, args.max_length, True)
    print(f"{args.rows} rows, mean {enc.lengths().mean():.0f} tokens (max {args.max_length}), batch {args.batch_size}")

    # Each measurement runs in its own fresh process (malloc settings are per process and the
    # allocator's state would carry over), alternating the two loops; each loop's best round
    # counts, since on a shared machine the load drifts. CPU seconds (all threads) move less
    # with the load than wall seconds.
    ctx = mp.get_context("spawn")
    rounds: dict[str, list[tuple[float, float, float]]] = {"ours": [], "naive": []}
    for _ in range(args.repeats):
        for kind in ("ours", "naive"):
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                rounds[kind].append(pool.submit(measure, kind, args).result())
    best = {k: (min(r[0] for r in v), min(r[1] for r in v), max(r[2] for r in v)) for k, v in rounds.items()}
    n = args.rows
    (ow, oc, op), (nw, nc, np_) = best["ours"], best["naive"]
    print(f"{f'naive (fp32, pad to {args.max_length}):':<34} {n / nw:6.2f} seq/s wall, {n / nc:6.2f} seq/CPU-s")
    ours_name = "questlab (bf16, bucketed" + (")" if args.no_malloc_tuning else ", malloc)")
    print(f"{ours_name:<34} {n / ow:6.2f} seq/s wall, {n / oc:6.2f} seq/CPU-s")
    print(f"speed-up: {nw / ow:.2f}x wall, {nc / oc:.2f}x CPU time")
    print(f"peak RSS: questlab {op:.2f} GiB, naive {np_:.2f} GiB (each a whole child process)")
    walls = {k: [round(r[0], 1) for r in v] for k, v in rounds.items()}
    print(f"rounds (wall s): questlab {walls['ours']}, naive {walls['naive']}")


if __name__ == "__main__":
    main()
