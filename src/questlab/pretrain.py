"""Task-adaptive pretraining: more masked-language-model training of an encoder on a task's own texts.

The texts are each segment of the task (QUEST: the questions as title + body, each distinct
question once, and the answers) of the given CSVs (train and test: no labels are read, so test
texts are fair game). The result is a local Hugging Face folder (weights with their MLM head,
tokenizer, and the source's sentence-transformers files) that any config takes as ``encoder: <folder>``.

A packaged sentence-transformers encoder (MiniLM) ships the encoder alone, without the MLM
head: the head is then initialised fresh (its decoder stays tied to the word embeddings), and
the log says so. A plain torch loop: AdamW, linear warm-up + decay, bf16 autocast, length-
bucketed batches, the loss read once per ``log_every`` steps.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from questlab.errors import UsageError
from questlab.models.pretrained import resolve_encoder  # also switches the HF hub off
from questlab.strictjson import strict_json
from questlab.tasks import TaskRef, load_task

logger = logging.getLogger(__name__)
# Files of a sentence-transformers folder that save_pretrained does not write: copied over.
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


class PretrainConfig(BaseModel):
    """Settings of ``questlab pretrain``; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    encoder: str = "all-MiniLM-L6-v2"  # a known packaged encoder name or a local HF model folder
    texts: list[Path]  # CSVs of the task (train and/or test) whose texts are read
    task: str | None = None  # a built-in task name or a spec path; None: quest
    output: Path  # new (or empty) folder for the adapted encoder
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (smoke runs)
    max_length: int = Field(256, ge=8, le=4096)  # tokens per text (longer texts keep their start)
    mlm_probability: float = Field(0.15, gt=0, lt=1)  # share of tokens masked per batch
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    batch_size: int = Field(16, ge=1)
    seed: int = 42
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CPU and on bf16-capable GPUs
    cpu: bool = False  # run on CPU even when a GPU is there
    num_threads: int = Field(0, ge=0)  # torch CPU threads; 0 leaves torch's default
    log_every: int = Field(20, ge=1)  # steps between loss reads


@dataclass
class PretrainResult:
    """What a pretraining run did: where it wrote, what it read, and its MLM loss as it went."""

    output: str
    n_texts: int
    steps: int
    head_initialised: list[str]  # MLM-head weights the source folder lacked (initialised fresh)
    losses: list[float] = field(default_factory=list)  # mean loss per ``log_every`` steps
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def corpus(frames: list[pd.DataFrame], task: TaskRef = None) -> list[str]:
    """Each distinct segment text once, in first-seen order: a segment's texts joined by newlines
    (QUEST: each question as title + body, then each answer)."""
    task = load_task(task)
    segments = [cols for cols in (task.segment("first"), task.segment("second")) if cols]
    texts: dict[str, None] = {}
    for frame in frames:
        joined = []
        for cols in segments:
            seg = frame[cols[0]].astype(str)
            for col in cols[1:]:
                seg = seg + "\n" + frame[col].astype(str)
            joined.extend(seg.tolist())
        for text in joined:
            if text.strip():
                texts.setdefault(text, None)
    return list(texts)


def _check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"--output {output} exists and is not an empty folder: give a new folder")


def _bf16(precision: str, device) -> bool:
    import torch

    if precision == "fp32":
        return False
    return precision == "bf16" or device.type == "cpu" or torch.cuda.is_bf16_supported()


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Continue MLM training of ``cfg.encoder`` on the texts of ``cfg.texts``; write ``cfg.output``."""
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        get_linear_schedule_with_warmup,
    )

    from questlab.data import detect_kind, load
    from questlab.models.transformer.batches import bucket_batches, to_device

    _check_output(cfg.output)
    started = time.perf_counter()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    source = resolve_encoder(cfg.encoder)
    task = load_task(cfg.task)
    texts = corpus([load(p, detect_kind(p, task), task) for p in cfg.texts], task)
    if not texts:
        raise UsageError(f"{', '.join(map(str, cfg.texts))}: no non-blank text of task {task.name!r} to train on")
    tokenizer = AutoTokenizer.from_pretrained(source)
    ids = tokenizer(texts, truncation=True, max_length=cfg.max_length, verbose=False)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=cfg.mlm_probability)

    device = torch.device("cuda" if torch.cuda.is_available() and not cfg.cpu else "cpu")
    model, info = AutoModelForMaskedLM.from_pretrained(source, output_loading_info=True)
    model = model.float().to(device)  # fp32 weights whatever the folder stores (fp16 checkpoints too)
    fresh = sorted(k for k in info["missing_keys"] if "embeddings" not in k)
    if fresh:
        logger.warning("%s has no MLM head: initialised fresh (%d tensors: %s)", source, len(fresh), ", ".join(fresh))

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        fused=(device.type == "cuda") or None,
    )
    per_epoch = math.ceil(len(texts) / cfg.batch_size)
    total = min(per_epoch * cfg.epochs, cfg.max_steps or per_epoch * cfg.epochs)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    bf16 = _bf16(cfg.precision, device)

    result = PretrainResult(str(cfg.output), len(texts), 0, fresh)
    model.train()
    for epoch in range(cfg.epochs):
        epoch_sum, window, n_epoch = torch.zeros((), device=device), torch.zeros((), device=device), 0
        for batch_rows in bucket_batches(lengths, cfg.batch_size, shuffle=True, seed=cfg.seed + epoch):
            if result.steps >= total:
                break
            batch = collator([{"input_ids": ids[i]} for i in batch_rows])  # masks with torch's RNG
            batch = to_device(batch, device)  # pinned + non-blocking: no host sync per step
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss.float()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_sum, window = epoch_sum + loss.detach(), window + loss.detach()
            n_epoch, result.steps = n_epoch + 1, result.steps + 1
            if result.steps % cfg.log_every == 0:  # one host read per interval
                result.losses.append(float(window) / cfg.log_every)
                window.zero_()
                logger.info("step %d/%d: MLM loss %.4f", result.steps, total, result.losses[-1])
        if n_epoch:
            result.epoch_losses.append(float(epoch_sum) / n_epoch)
    result.seconds = time.perf_counter() - started
    _save(model, tokenizer, source, cfg, result)
    return result


def _save(model, tokenizer, source: Path, cfg: PretrainConfig, result: PretrainResult) -> None:
    """The adapted weights (MLM head included) + tokenizer + the source's sentence-transformers files."""
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for name in ST_FILES:
        if (source / name).exists():
            shutil.copy(source / name, out / name)
    for sub in source.iterdir():  # 1_Pooling/, 2_Normalize/: how sentence-transformers pools
        if sub.is_dir() and sub.name[:1].isdigit():
            shutil.copytree(sub, out / sub.name, dirs_exist_ok=True)
    record = {"config": json.loads(cfg.model_dump_json()), "source": str(source), "result": asdict(result)}
    (out / "pretrain.json").write_text(strict_json(record))  # a diverged loss is null
