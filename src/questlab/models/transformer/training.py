"""The training loop: read it top to bottom in ``train_network``; helpers above it are small.

AdamW with a higher LR for the head than for the encoder (and optional layer-wise decay down
the encoder), one linear warm-up/decay schedule created once for the whole run, gradient
accumulation and clipping, bf16 autocast, a valid evaluation per epoch, best-epoch selection
and a checkpoint per epoch that a killed run resumes from. ``accelerate`` places the model and
shards batches, so the same loop runs on CPU, one GPU, or several under ``accelerate launch``.

Throughput (the same code on CPU and GPU): the loss is summed on the device and read once per
``log_every`` micro-batches and per epoch, never per step (a read waits for the GPU to finish);
predictions stay on the device until an epoch's rows are all done (one transfer); checkpoints
are copied to the CPU and written by a background thread; on CUDA the optimizer is fused and
the micro-batch is the largest that fits, at the configured effective batch.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from questlab.console import progress_enabled, quiet_mode, stderr
from questlab.metric import OK, spearman_per_target
from questlab.models.base import FitLog, UnitScorer
from questlab.models.cpu_malloc import tune_malloc
from questlab.models.transformer.batches import RowDataset, bucket_batches, make_loader, to_device
from questlab.models.transformer.checkpoints import (
    CheckpointWriter,
    Progress,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    state_dict_cpu,
    take_snapshot,
)
from questlab.models.transformer.optim import (
    bce,
    cuda_fits,
    largest_fitting_micro_batch,
    layer_depth,
    make_optimizer,
    param_groups,
    training_loss,
    unfreeze_top_layers,
)
from questlab.models.transformer.params import TransformerParams

__all__ = [  # the names tests, the bench and model.py take from here
    "Progress", "TrainSettings", "bce", "forward", "infer", "latest_checkpoint", "layer_depth",
    "load_checkpoint", "param_groups", "place_rows", "save_checkpoint", "score_with_undefined",
    "state_dict_cpu", "train_network",
]  # fmt: skip


@dataclass(frozen=True)
class TrainSettings:
    """What ``train_network`` reads: the model's params, and whether to autocast in bf16.

    Every knob of the loop (epochs, batch size, LRs, ``max_length``, ...) is a field of
    ``TransformerParams``, read from ``params``; only ``bf16`` is the loop's own, because it
    depends on the device as well as on ``params.precision`` (``TransformerModel._bf16``).
    """

    params: TransformerParams
    bf16: bool
    # early stopping's score of the stage's targets (in the task's units, with its metric);
    # None: QUEST's mean Spearman (``score_with_undefined``)
    scorer: UnitScorer | None = None

    @classmethod
    def of(cls, bf16: bool = True, **params: Any) -> TrainSettings:
        """Settings from ``TransformerParams(**params)`` (its defaults for the rest): tests, the bench."""
        return cls(TransformerParams(**params), bf16)


# --- small helpers ------------------------------------------------------------------------------
def score_with_undefined(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, int]:
    """The competition score (``questlab.metric``) and how many columns were undefined in it.

    A column whose truth or prediction is constant has no Spearman; the metric counts it as 0,
    so the count is recorded beside the score instead of passing unseen.
    """
    rho, status = spearman_per_target(y_true, y_pred)
    return float(np.nan_to_num(rho, nan=0.0).mean()), sum(st != OK for st in status)


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CPU or GPU (Accelerate's mixed precision does not cover CPU), or nothing."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def forward(net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return net(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        token_type_ids=batch["token_type_ids"],
        category=batch["category"],
        host=batch["host"],
    )


def place_rows(index: torch.Tensor, logits: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Logits in row order, from the rows' ``index``; every row must come exactly once.

    A row no process predicted would otherwise stay 0 (a sigmoid of 0.5) unnoticed, and one
    predicted twice means the shards overlapped: both are bugs, and raise.
    """
    counts = torch.bincount(index, minlength=n_rows)
    if len(counts) > n_rows or bool((counts != 1).any()):
        bad = int(torch.nonzero(counts[:n_rows] != 1)[0]) if bool((counts[:n_rows] != 1).any()) else n_rows
        times = int(counts[bad]) if bad < len(counts) else 0
        raise RuntimeError(f"prediction: row {bad} of {n_rows} predicted {times} times (each must be exactly once)")
    out = torch.empty((n_rows, logits.shape[1]), dtype=logits.dtype, device=logits.device)
    out[index] = logits
    return out


def _gather_rows(accelerator: Accelerator, index: torch.Tensor, logits: torch.Tensor):
    """Every process's (index, logits), concatenated; shards of unequal size padded, then dropped."""
    size = torch.tensor([len(index)], device=index.device)
    most = int(accelerator.gather(size).max())
    pad = most - len(index)
    index = torch.cat([index, index.new_full((pad,), -1)])
    logits = torch.cat([logits, logits.new_zeros((pad, logits.shape[1]))])
    index, logits = accelerator.gather(index), accelerator.gather(logits)
    keep = index >= 0
    return index[keep], logits[keep]


@torch.inference_mode()
def infer(
    net: nn.Module, data: RowDataset, s: TrainSettings, accelerator: Accelerator, shard: bool
) -> tuple[np.ndarray, float]:
    """Sigmoid predictions for every row of ``data`` in row order, and the mean BCE if it has targets.

    Batches of ``eval_batch_size`` rows, padded as in training (``pad_to_multiple``, never past
    ``max_length``), all read from ``s.params``; bf16 autocast as ``s.bf16`` says.

    ``shard``: process k of P predicts batches k, k+P, ... and all rows are gathered (under DDP);
    otherwise this process predicts everything itself. Logits stay on the device until all
    rows are in (one copy to the host), and ``place_rows`` checks every row came exactly once.
    The forward passes bypass a DDP wrapper: its forward synchronises buffers across processes,
    which would deadlock when the shards hold different numbers of batches.
    """
    if isinstance(net, nn.parallel.DistributedDataParallel):
        net = net.module
    net.eval()
    p = s.params
    batches = bucket_batches(data.lengths(), p.eval_batch_size, shuffle=False)
    world = accelerator.num_processes if shard else 1
    mine = batches[accelerator.process_index :: world] if world > 1 else batches
    device = accelerator.device
    loader = make_loader(data, mine, data.pad_id, p.pad_to_multiple, p.max_length, pin_memory=device.type == "cuda")
    n_out = net.head.out_features  # a compiled module passes attribute reads to the original
    indices, outputs = [torch.zeros(0, dtype=torch.long, device=device)], [torch.zeros((0, n_out), device=device)]
    for batch in loader:
        batch = to_device(batch, device)
        with autocast(device, s.bf16):
            outputs.append(forward(net, batch).float())
        indices.append(batch["index"])
    index, logits = torch.cat(indices), torch.cat(outputs)
    if world > 1:
        index, logits = _gather_rows(accelerator, index, logits)
    logits = place_rows(index, logits, len(data))
    loss = float("nan") if data.targets is None else float(bce(logits, torch.tensor(data.targets, device=device)))
    return torch.sigmoid(logits).double().cpu().numpy(), loss


def _improves(scorer: UnitScorer | None, score: float, best: float) -> bool:
    """True when the epoch's ``score`` beats ``best`` (-inf: none yet) by the stage's metric."""
    if scorer is None:
        return not math.isnan(score) and score > best
    return scorer.improves(score, best)


# --- the loop -----------------------------------------------------------------------------------
def train_network(
    net: nn.Module,
    train: RowDataset,
    valid: RowDataset | None,
    s: TrainSettings,
    log: FitLog,
    accelerator: Accelerator,
    checkpoint_dir: Path | None = None,
    stage: int = 0,
) -> nn.Module:
    """Fine-tune ``net`` on ``train``; keep the epoch that scores best on ``valid``; return the net.

    With ``checkpoint_dir`` every epoch is checkpointed there, and a call that finds a complete
    checkpoint continues after it (same weights, optimizer, schedule and RNG: the same result as
    a run never interrupted). Each epoch is recorded in ``log`` (tagged with ``stage``).
    """
    p, device = s.params, accelerator.device
    if p.malloc_tuning and device.type == "cpu":
        tune_malloc()
    torch.manual_seed(p.seed)
    np.random.seed(p.seed)
    random.seed(p.seed)
    net = net.to(device)
    micro, accumulation = p.batch_size, p.accumulation
    if p.auto_micro_batch and device.type == "cuda":
        micro = largest_fitting_micro_batch(micro * accumulation, cuda_fits(net, forward, p.max_length, device, s.bf16))
        micro, accumulation = micro, (p.batch_size * p.accumulation) // micro
        log.info[f"stage{stage}_micro_batch"] = [micro, accumulation]
    optimizer = make_optimizer(net, p, device)
    # Batches per process per epoch (DDP shards batches); the schedule counts optimizer steps.
    n_batches = math.ceil(math.ceil(len(train) / micro) / accelerator.num_processes)
    steps_per_epoch = math.ceil(n_batches / accumulation)
    total_steps = steps_per_epoch * p.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(p.warmup_ratio * total_steps), total_steps)
    net, optimizer = accelerator.prepare(net, optimizer)
    raw = accelerator.unwrap_model(net)
    # Compiled or not, the same parameters: the state dicts below come from ``raw``. The valid
    # pass runs ``raw`` (compiled separately), never the DDP wrapper (see ``infer``).
    model = torch.compile(net) if p.compile else net
    eval_model = torch.compile(raw) if p.compile else raw

    progress, best = Progress(), state_dict_cpu(raw)
    found = latest_checkpoint(checkpoint_dir)
    if found is not None:
        progress, best = load_checkpoint(found, raw, optimizer, scheduler)
        log.info.setdefault("resumed_from", []).append(str(found))
    for row in progress.history:  # a resumed run reports the epochs it did before the kill too
        log.log_epoch(**row)

    bar = tqdm(
        total=n_batches * p.epochs,
        initial=n_batches * progress.epoch,
        desc=f"stage {stage}",
        disable=not (p.progress and accelerator.is_main_process and progress_enabled()),
        dynamic_ncols=True,
    )
    writer = CheckpointWriter(background=p.background_checkpoints)
    pin = device.type == "cuda"
    for epoch in range(progress.epoch, p.epochs):
        started = time.perf_counter()
        net.train()
        raw.freeze_encoder = epoch < p.freeze_encoder_epochs
        if p.unfreeze_layers_per_epoch and not raw.freeze_encoder:
            log.info[f"stage{stage}_epoch{epoch + 1}_training_layers"] = unfreeze_top_layers(raw, epoch, p)
        batches = bucket_batches(train.lengths(), micro, True, p.seed + epoch, p.bucket_factor)
        loader = make_loader(train, batches, train.pad_id, p.pad_to_multiple, p.max_length, pin_memory=pin)
        # accelerate shards the batches under DDP; the copy to the device is ours: its own is a
        # blocking copy per tensor, so a host sync for each of a batch's tensors at every step
        loader = accelerator.prepare_data_loader(loader, device_placement=False)
        loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per step
        for k, batch in enumerate(loader):
            batch = to_device(batch, device)
            step_now = (k + 1) % accumulation == 0 or k + 1 == len(loader)
            # Under DDP, skip the gradient all-reduce on micro-batches that do not step.
            sync = contextlib.nullcontext() if step_now else accelerator.no_sync(net)
            with sync:
                with autocast(device, s.bf16):
                    loss = training_loss(forward(model, batch), batch["targets"], p.rank_loss_weight)
                accelerator.backward(loss / accumulation)
            if step_now:
                if p.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(net.parameters(), p.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach()
            bar.update(1)
            if (k + 1) % p.log_every == 0:  # one host read per log interval
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(loss_sum) / (k + 1):.4f}")

        # Each process saw its own shard: report the mean over processes.
        train_loss = accelerator.reduce(loss_sum / max(len(loader), 1), "mean")
        row = {"stage": stage, "epoch": epoch + 1, "train_loss": float(train_loss)}
        row["lr"] = max(scheduler.get_last_lr())  # highest LR in use at the epoch's end
        if valid is not None:
            pred, row["valid_loss"] = infer(eval_model, valid, s, accelerator, shard=True)
            if s.scorer is None:
                row["valid_score"], row["valid_undefined_targets"] = score_with_undefined(valid.targets, pred)
            else:
                row["valid_score"], row["valid_undefined_targets"] = s.scorer.score_with_undefined(valid.targets, pred)
        row["seconds"] = time.perf_counter() - started
        log.log_epoch(**row)
        if p.progress and accelerator.is_main_process and not progress_enabled() and not quiet_mode():
            valid_text = f", valid {row['valid_score']:.4f}" if "valid_score" in row else ""
            stderr(
                f"stage {stage} epoch {epoch + 1}/{p.epochs}: train loss {row['train_loss']:.4f}{valid_text} "
                f"({row['seconds']:.0f} s)"
            )  # a plain line per epoch where no bar is drawn (a log, a pipe)
        progress.history.append(log.epochs[-1])
        score = row.get("valid_score", float("nan"))
        if not p.select_best_epoch or valid is None or _improves(s.scorer, score, progress.best_score):
            progress.best_score = score if not math.isnan(score) else progress.best_score
            progress.best_epoch, best = epoch + 1, state_dict_cpu(raw)
        progress.epoch = epoch + 1
        if checkpoint_dir is not None and accelerator.is_main_process:
            snap = take_snapshot(raw, best, optimizer, scheduler, progress, finished=epoch + 1 == p.epochs)
            writer.write(save_checkpoint, checkpoint_dir, snap)
        accelerator.wait_for_everyone()
    writer.wait()
    bar.close()

    raw.freeze_encoder = False
    raw.requires_grad_(True)  # gradual unfreezing leaves lower layers frozen: the returned net is whole
    raw.load_state_dict(best)
    log.info[f"stage{stage}_best_epoch"] = progress.best_epoch
    log.info[f"stage{stage}_best_valid_score"] = progress.best_score
    return raw
