"""Rows as tensors: a dataset of encoded rows, length-bucketed batches, dynamic padding.

Padding every batch to 512 tokens wastes most of the compute on QUEST, where half the pairs
are far shorter. Batches here hold rows of similar length and are padded only to their
longest row, rounded up to a multiple of ``pad_to_multiple`` tokens: a few distinct shapes
(8 at a multiple of 64 up to 512), so a compiled model (``torch.compile``) does not recompile
for every batch, and GPU kernels get tile-friendly sizes.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class RowDataset(Dataset):
    """Encoded rows (ids, token types), their category/host indices and, for training, targets."""

    def __init__(
        self,
        input_ids: list[list[int]],
        token_type_ids: list[list[int]],
        category: list[int],
        host: list[int],
        targets: np.ndarray | None = None,
        pad_id: int = 0,
    ) -> None:
        self.pad_id = pad_id
        self.input_ids, self.token_type_ids = input_ids, token_type_ids
        self.category, self.host = category, host
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)

    def __getitem__(self, i: int) -> dict:
        row = {
            "index": i,
            "input_ids": self.input_ids[i],
            "token_type_ids": self.token_type_ids[i],
            "category": self.category[i],
            "host": self.host[i],
        }
        if self.targets is not None:
            row["targets"] = self.targets[i]
        return row


def bucket_batches(
    lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, bucket_factor: int = 50
) -> list[list[int]]:
    """Split row indices into batches of rows of similar length.

    Shuffled (training): rows are shuffled, cut into chunks of ``batch_size * bucket_factor``,
    each chunk is sorted by length and cut into batches, and the batch order is shuffled, so
    batches stay random but hold little padding. ``seed`` (e.g. seed + epoch) fixes the order,
    which makes a resumed epoch identical to an uninterrupted one. Not shuffled (inference):
    all rows sorted by length.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    if not shuffle:
        order = np.argsort(lengths, kind="stable")
        return [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    chunk = batch_size * max(1, bucket_factor)
    batches = []
    for start in range(0, n, chunk):
        part = perm[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i : i + batch_size].tolist() for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def padded_width(longest: int, multiple: int = 1, cap: int | None = None) -> int:
    """``longest`` rounded up to a multiple of ``multiple``, but never beyond ``cap`` (the max length)."""
    width = -(-longest // multiple) * multiple
    return max(longest, min(width, cap)) if cap is not None else width


def collate(rows: list[dict], pad_id: int, multiple: int = 1, cap: int | None = None) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest row, rounded up (see ``padded_width``), and stack it into tensors."""
    width = padded_width(max(len(r["input_ids"]) for r in rows), multiple, cap)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[k, :n] = torch.tensor(r["input_ids"])
        types[k, :n] = torch.tensor(r["token_type_ids"])
        mask[k, :n] = 1
    batch = {
        "index": torch.tensor([r["index"] for r in rows]),
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "category": torch.tensor([r["category"] for r in rows]),
        "host": torch.tensor([r["host"] for r in rows]),
    }
    if "targets" in rows[0]:
        batch["targets"] = torch.tensor(np.stack([r["targets"] for r in rows]))
    return batch


def make_loader(
    dataset: RowDataset,
    batches: list[list[int]],
    pad_id: int,
    multiple: int = 1,
    cap: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A DataLoader over precomputed batches (no workers: tokenised rows are already in memory).

    ``pin_memory`` (CUDA): page-locked host batches, so the copy to the GPU can overlap compute.
    """
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=functools.partial(collate, pad_id=pad_id, multiple=multiple, cap=cap),
        pin_memory=pin_memory,
    )


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch on ``device``. On CUDA each tensor is copied from page-locked memory (pinned here
    if the loader did not) without blocking the host, so the host queues the next steps while the
    GPU computes; a plain ``.to(device)`` waits for the GPU once per tensor. CPU: as it is."""
    if device.type != "cuda":
        return batch
    return {k: (v if v.is_pinned() else v.pin_memory()).to(device, non_blocking=True) for k, v in batch.items()}
