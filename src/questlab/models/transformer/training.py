"""The training loop: read it top to bottom in ``train_network``; helpers above it are small.

AdamW with a higher LR for the head than for the encoder (and optional layer-wise decay down
the encoder), one linear warm-up/decay schedule created once for the whole run, gradient
accumulation and clipping, bf16 autocast, a valid evaluation per epoch, best-epoch selection
and a checkpoint per epoch that a killed run resumes from. ``accelerate`` places the model and
shards batches, so the same loop runs on CPU, one GPU, or several under ``accelerate launch``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from questlab.metric import OK, spearman_per_target
from questlab.models.base import FitLog
from questlab.models.transformer.batches import RowDataset, bucket_batches, make_loader
from questlab.models.transformer.cpu_malloc import tune_malloc


@dataclass
class TrainSettings:
    """The optimisation knobs ``train_network`` needs (a subset of the model's params)."""

    epochs: int = 3
    batch_size: int = 16
    accumulation: int = 1  # micro-batches per optimizer step
    lr: float = 5e-5  # top encoder layer
    head_lr: float = 1e-3  # head, pooling weights, category/host embeddings
    layer_decay: float = 1.0  # each layer further down gets lr * layer_decay
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    bf16: bool = True
    eval_batch_size: int = 64
    bucket_factor: int = 50
    select_best_epoch: bool = True
    seed: int = 42
    progress: bool = True
    malloc_tuning: bool = True  # on CPU, see questlab.models.transformer.cpu_malloc


# --- small helpers ------------------------------------------------------------------------------
def score_with_undefined(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, int]:
    """The competition score (``questlab.metric``) and how many columns were undefined in it.

    A column whose truth or prediction is constant has no Spearman; the metric counts it as 0,
    so the count is recorded beside the score instead of passing unseen.
    """
    rho, status = spearman_per_target(y_true, y_pred)
    return float(np.nan_to_num(rho, nan=0.0).mean()), sum(st != OK for st in status)


def layer_depth(name: str, n_layers: int) -> int:
    """Depth of an encoder parameter: 0 for embeddings, i+1 for layer i, n_layers for the rest."""
    if ".embeddings." in f".{name}":
        return 0
    found = re.search(r"\.layer\.(\d+)\.", name)
    return int(found.group(1)) + 1 if found else n_layers


def param_groups(net: nn.Module, s: TrainSettings) -> list[dict]:
    """AdamW groups: encoder LR decayed layer by layer, the head at ``head_lr``, no decay on 1-D weights."""
    n_layers = net.encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder."):
            lr = s.lr * s.layer_decay ** (n_layers - layer_depth(name[len("encoder.") :], n_layers))
        else:
            lr = s.head_lr
        wd = 0.0 if p.ndim < 2 else s.weight_decay  # biases and norms: no weight decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


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


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE on soft targets, in fp32 whatever the autocast dtype."""
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.float())


def state_dict_cpu(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


@torch.inference_mode()
def infer(
    net: nn.Module, data: RowDataset, batch_size: int, accelerator: Accelerator, bf16: bool, shard: bool
) -> tuple[np.ndarray, float]:
    """Sigmoid predictions for every row of ``data`` in row order, and the mean BCE if it has targets.

    ``shard``: split the batches over processes and gather (under DDP); otherwise this process
    predicts everything itself. Rows are placed by their index, so the padding rows DDP adds to
    even out the shards only overwrite a row with the same values.
    """
    net.eval()
    loader = make_loader(data, bucket_batches(data.lengths(), batch_size, shuffle=False), pad_id=data.pad_id)
    if shard:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    logits_all: torch.Tensor | None = None
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with autocast(accelerator.device, bf16):
            logits = forward(net, batch).float()
        index = batch["index"]
        if shard:
            index, logits = accelerator.gather_for_metrics((index, logits))
        if logits_all is None:
            logits_all = torch.zeros((len(data), logits.shape[1]))
        logits_all[index.cpu()] = logits.cpu()
    assert logits_all is not None, "no rows to predict"
    loss = float("nan") if data.targets is None else float(bce(logits_all, torch.tensor(data.targets)))
    return torch.sigmoid(logits_all).double().numpy(), loss


# --- checkpoints: one folder per epoch, complete once its marker exists --------------------------
@dataclass
class Progress:
    """What a checkpoint carries besides weights: where the run stands and what it has seen."""

    epoch: int = 0  # epochs finished
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = -1


def latest_checkpoint(folder: Path | None) -> Path | None:
    """The newest complete ``epoch-K`` checkpoint in ``folder``, or None."""
    if folder is None or not folder.exists():
        return None
    done = [p for p in folder.glob("epoch-*") if (p / "complete").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_checkpoint(
    folder: Path, net: nn.Module, best: dict[str, torch.Tensor], optimizer, scheduler, progress: Progress
) -> Path:
    """Write ``epoch-K`` (weights, best weights, optimizer, schedule, RNG, progress), then drop older ones."""
    path = folder / f"epoch-{progress.epoch}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    save_file(state_dict_cpu(net), str(path / "weights.safetensors"))
    save_file(best, str(path / "best.safetensors"))
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng}
    torch.save(state, path / "state.pt")
    (path / "progress.json").write_text(json.dumps(progress.__dict__, indent=1))
    (path / "complete").touch()  # last: a kill before this line leaves an incomplete, ignored folder
    for old in folder.glob("epoch-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(path: Path, net: nn.Module, optimizer, scheduler) -> tuple[Progress, dict[str, torch.Tensor]]:
    """Restore what ``save_checkpoint`` wrote; returns the progress and the best weights so far."""
    net.load_state_dict(load_file(str(path / "weights.safetensors")))
    state = torch.load(path / "state.pt", weights_only=False)  # our own file: optimizer + RNG states
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return Progress(**json.loads((path / "progress.json").read_text())), load_file(str(path / "best.safetensors"))


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
    if s.malloc_tuning and accelerator.device.type == "cpu":
        tune_malloc()
    torch.manual_seed(s.seed)
    np.random.seed(s.seed)
    random.seed(s.seed)
    optimizer = torch.optim.AdamW(param_groups(net, s))
    # Batches per process per epoch (DDP shards batches); the schedule counts optimizer steps.
    n_batches = math.ceil(math.ceil(len(train) / s.batch_size) / accelerator.num_processes)
    steps_per_epoch = math.ceil(n_batches / s.accumulation)
    total_steps = steps_per_epoch * s.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(s.warmup_ratio * total_steps), total_steps)
    net, optimizer = accelerator.prepare(net, optimizer)
    raw = accelerator.unwrap_model(net)

    progress, best = Progress(), state_dict_cpu(raw)
    found = latest_checkpoint(checkpoint_dir)
    if found is not None:
        progress, best = load_checkpoint(found, raw, optimizer, scheduler)
        log.info.setdefault("resumed_from", []).append(str(found))
    for row in progress.history:  # a resumed run reports the epochs it did before the kill too
        log.log_epoch(**row)

    bar = tqdm(
        total=n_batches * s.epochs,
        initial=n_batches * progress.epoch,
        desc=f"stage {stage}",
        disable=not (s.progress and accelerator.is_main_process),
        dynamic_ncols=True,
    )
    device = accelerator.device
    for epoch in range(progress.epoch, s.epochs):
        started = time.perf_counter()
        net.train()
        batches = bucket_batches(train.lengths(), s.batch_size, True, s.seed + epoch, s.bucket_factor)
        loader = accelerator.prepare_data_loader(make_loader(train, batches, train.pad_id), device_placement=True)
        loss_sum, n_micro = 0.0, 0
        for k, batch in enumerate(loader):
            step_now = (k + 1) % s.accumulation == 0 or k + 1 == len(loader)
            # Under DDP, skip the gradient all-reduce on micro-batches that do not step.
            sync = contextlib.nullcontext() if step_now else accelerator.no_sync(net)
            with sync:
                with autocast(device, s.bf16):
                    loss = bce(forward(net, batch), batch["targets"])
                accelerator.backward(loss / s.accumulation)
            if step_now:
                if s.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(net.parameters(), s.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            loss_sum, n_micro = loss_sum + float(loss.detach()), n_micro + 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / n_micro:.4f}")

        # Each process saw its own shard: report the mean over processes.
        train_loss = accelerator.reduce(torch.tensor(loss_sum / max(n_micro, 1), device=device), "mean")
        row = {"stage": stage, "epoch": epoch + 1, "train_loss": float(train_loss)}
        row["lr"] = max(scheduler.get_last_lr())  # highest LR in use at the epoch's end
        if valid is not None:
            pred, row["valid_loss"] = infer(net, valid, s.eval_batch_size, accelerator, s.bf16, shard=True)
            row["valid_score"], row["valid_undefined_targets"] = score_with_undefined(valid.targets, pred)
        row["seconds"] = time.perf_counter() - started
        log.log_epoch(**row)
        progress.history.append(log.epochs[-1])
        score = row.get("valid_score", float("nan"))
        if not s.select_best_epoch or valid is None or (not math.isnan(score) and score > progress.best_score):
            progress.best_score = score if not math.isnan(score) else progress.best_score
            progress.best_epoch, best = epoch + 1, state_dict_cpu(raw)
        progress.epoch = epoch + 1
        if checkpoint_dir is not None and accelerator.is_main_process:
            save_checkpoint(checkpoint_dir, raw, best, optimizer, scheduler, progress)
        accelerator.wait_for_everyone()
    bar.close()

    raw.load_state_dict(best)
    log.info[f"stage{stage}_best_epoch"] = progress.best_epoch
    log.info[f"stage{stage}_best_valid_score"] = progress.best_score
    return raw
