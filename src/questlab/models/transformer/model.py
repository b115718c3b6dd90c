"""``TransformerModel``: a fine-tuned cross-encoder (or a question + an answer model) behind ``Model``.

The task says what the network reads and predicts. Joint mode trains one network on the task's
first segment then its second (QUEST: ``[CLS] title [SEP] body [SEP] answer [SEP]``) for every
target. Dual mode (a task with ``routes``) trains a "question" network on the first segment for
the targets routed to it (QUEST: title + body, the 21 question targets) and an "answer" network
on both segments for the others (or all targets, the routed ones then averaged with the
question network's). Networks fit the targets scaled to [0, 1] by the task's ranges (BCE on
sigmoid outputs; QUEST's already are) and predictions are scaled back. The two meta embeddings
(``use_category``, ``use_host``) read the task's first and second feature columns (QUEST:
category, host).

Saved folder: ``encoder/`` (encoder config + tokenizer), ``vocab.json`` (the meta vocabularies),
and per stage ``<stage>/network.json`` + ``<stage>/model.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from questlab.errors import ConfigError
from questlab.folds import holdout_rows, pseudo_rows
from questlab.models.base import FitLog, Model, UnitScorer, check_predictions
from questlab.models.pretrained import resolve_encoder  # also switches the HF hub off before transformers loads
from questlab.models.transformer.batches import RowDataset
from questlab.models.transformer.inputs import CACHE_STATS, encode_frame
from questlab.models.transformer.network import QuestNet, build_vocab, load_encoder, lookup
from questlab.models.transformer.params import TransformerParams
from questlab.models.transformer.training import TrainSettings, infer, state_dict_cpu, train_network
from questlab.tasks import Task, load_task
from questlab.tasks.grouping import group_ids

__all__ = ["Stage", "TransformerModel", "TransformerParams", "combine", "stages_for"]


@dataclass(frozen=True)
class Stage:
    """One network of the model: its name, whether it reads the second segment (QUEST's answer),
    the targets it predicts."""

    name: str
    with_answer: bool
    targets: tuple[str, ...]


def stages_for(params: TransformerParams, task: Task | None = None) -> list[Stage]:
    """The networks a mode trains for ``task`` (None: quest): ``joint`` one, ``dual`` a question
    network (the targets routed to the first segment) and an answer network (the others, or all)."""
    task = load_task(task)
    targets = task.target_names
    if params.mode == "joint":
        return [Stage("joint", True, targets)]
    first = tuple(t for t in targets if task.route_of(t) == "first")
    if not first:
        raise ConfigError(
            f"model.params.mode: dual needs targets routed to the first segment, and task {task.name!r} "
            "has no routes: use mode: joint"
        )
    answer_targets = targets if params.dual_answer_targets == "all" else tuple(t for t in targets if t not in first)
    return [Stage("question", False, first), Stage("answer", True, answer_targets)]


def combine(stage_preds: dict[Stage, np.ndarray], n_rows: int, task: Task | None = None) -> np.ndarray:
    """Place each stage's columns at their targets' positions; average targets predicted twice."""
    targets = load_task(task).target_names
    total = np.zeros((n_rows, len(targets)))
    count = np.zeros(len(targets))
    for stage, pred in stage_preds.items():
        cols = [targets.index(t) for t in stage.targets]
        total[:, cols] += pred
        count[cols] += 1
    if (count == 0).any():
        raise ValueError(f"no stage predicts {targets[int(np.argmin(count))]}")
    return total / count


class TransformerModel(Model):
    """Fine-tuned transformer cross-encoder(s); see the module docstring."""

    name = "transformer"
    Params = TransformerParams
    params: TransformerParams

    # --- fit / predict ------------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> TransformerModel:
        from accelerate import Accelerator
        from transformers import AutoTokenizer

        p = self.params
        if p.num_threads:
            torch.set_num_threads(p.num_threads)
        started = time.perf_counter()
        from accelerate.utils import DistributedDataParallelKwargs

        # A frozen encoder gets no gradients in the head-only epochs: DDP must be told to expect that.
        partly_frozen = p.freeze_encoder_epochs or p.unfreeze_layers_per_epoch  # DDP: parameters without gradients
        handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if partly_frozen else []
        accelerator = Accelerator(cpu=p.cpu, kwargs_handlers=handlers)
        self.device_ = accelerator.device
        folder = resolve_encoder(p.encoder)
        self.encoder_folder_ = folder
        self.tokenizer_ = AutoTokenizer.from_pretrained(folder)
        stages = stages_for(p, self.task)  # a dual mode the task cannot route fails before any work
        # Vocabularies from TRAIN only: an unseen category/host at predict time maps to index 0.
        category, host = self._meta_columns()
        self.categories_ = build_vocab(train[category].tolist()) if category else {}
        self.hosts_ = build_vocab(train[host].tolist()) if host else {}
        self.networks_: dict[str, QuestNet] = {}
        log.info.update(encoder=str(folder), device=str(accelerator.device), processes=accelerator.num_processes)
        if p.select_best_epoch and p.early_stopping == "holdout":
            hold = holdout_rows(group_ids(self.task, train), p.holdout_share, p.seed, ~pseudo_rows(train))
            train, valid = train[~hold].reset_index(drop=True), train[hold].reset_index(drop=True)
            log.info["early_stopping"] = {"rows": "holdout", "n_holdout": int(hold.sum()), "n_train": len(train)}
        log.info["stages"] = [s.name for s in stages]
        checkpoints = self._checkpoint_root(log, accelerator)
        if checkpoints is not None:
            self._claim_checkpoints(checkpoints, train, log, accelerator)
        tokenised = dict(CACHE_STATS)
        for k, stage in enumerate(stages):
            train_data = self._dataset(train, stage, log if stage.with_answer else None)
            valid_data = self._dataset(valid, stage, None) if valid is not None else None
            torch.manual_seed(p.seed + k)  # the head's initial weights
            net = self._network(load_encoder(folder), len(stage.targets))
            workdir = None if checkpoints is None else checkpoints / stage.name
            stage_started = time.perf_counter()
            settings = self._settings(stage)
            net = train_network(net, train_data, valid_data, settings, log, accelerator, workdir, stage=k)
            log.timings[f"train_{stage.name}_s"] = time.perf_counter() - stage_started
            self.networks_[stage.name] = net
        # Texts tokenised afresh vs found in the process's cache (earlier folds, the other stage).
        log.info["token_cache"] = {k: CACHE_STATS[k] - tokenised[k] for k in CACHE_STATS}
        log.timings["fit_s"] = time.perf_counter() - started
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        from accelerate import Accelerator

        self.check_fitted()
        accelerator = Accelerator(cpu=self.params.cpu)
        settings, preds = TrainSettings(self.params, bf16=self._bf16(accelerator.device)), {}
        for stage in stages_for(self.params, self.task):
            net = self.networks_[stage.name].to(accelerator.device)
            data = self._dataset(frame, stage, None)
            preds[stage], _ = infer(net, data, settings, accelerator, shard=False)
        task = self.task
        out = task.lows + combine(preds, len(frame), task) * (task.highs - task.lows)  # back from [0, 1]
        return check_predictions(out, len(frame), "TransformerModel", task=task)

    # --- helpers ------------------------------------------------------------------------------
    def _bf16(self, device: torch.device) -> bool:
        if self.params.precision == "fp32":
            return False
        if self.params.precision == "bf16" or device.type == "cpu":
            return True
        return device.type == "cuda" and torch.cuda.is_bf16_supported()

    @staticmethod
    def _checkpoint_root(log: FitLog, accelerator) -> Path | None:
        """Rank 0's ``log.workdir``/transformer, on every process.

        Under DDP a runner may give worker processes a scratch workdir of their own; checkpoints
        are written by rank 0 only, so every rank must resume from rank 0's folder.
        """
        root = None if log.workdir is None else Path(log.workdir) / "transformer"
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            root = broadcast_object_list([root], from_process=0)[0]
        return root

    def _claim_checkpoints(self, root: Path, train: pd.DataFrame, log: FitLog, accelerator) -> None:
        """Resume only from checkpoints of this very fit: same params, same train rows.

        ``root/fit.json`` holds the fit's fingerprint. Checkpoints left by a fit with other params
        or rows (a reused workdir) cannot be resumed: they are removed, and the fit starts afresh.
        """
        fingerprint = hashlib.sha256(
            json.dumps(self.params.model_dump(mode="json"), sort_keys=True).encode()
            + pd.util.hash_pandas_object(train[self.task.id], index=False).to_numpy().tobytes()
        ).hexdigest()
        marker = root / "fit.json"
        if accelerator.is_main_process:
            found = json.loads(marker.read_text())["fingerprint"] if marker.exists() else None
            if root.exists() and found != fingerprint:
                shutil.rmtree(root)
                log.info["stale_checkpoints_removed"] = True
            root.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"fingerprint": fingerprint}))
        accelerator.wait_for_everyone()

    def _network(self, encoder: torch.nn.Module, n_out: int) -> QuestNet:
        p = self.params
        return QuestNet(
            encoder,
            n_out=n_out,
            pooling=p.pooling,
            n_categories=len(self.categories_),
            n_hosts=len(self.hosts_),
            meta_dim=p.meta_dim,
            dropout=p.dropout,
            n_dropout_samples=p.n_dropout_samples,
        )

    def _meta_columns(self) -> tuple[str | None, str | None]:
        """The columns of the two meta embeddings: the task's first and second feature columns."""
        features = self.task.features
        category = features[0] if self.params.use_category and len(features) > 0 else None
        host = features[1] if self.params.use_host and len(features) > 1 else None
        return category, host

    def _settings(self, stage: Stage) -> TrainSettings:
        """The loop's settings; early stopping scores the stage's targets with the task's metric."""
        cols = [self.task.target_names.index(t) for t in stage.targets]
        return TrainSettings(self.params, bf16=self._bf16(self.device_), scorer=UnitScorer.of(self.task, cols))

    def _dataset(self, frame: pd.DataFrame, stage: Stage, log: FitLog | None) -> RowDataset:
        """Encode ``frame`` for ``stage``; with a ``log``, record how much the budget cut per part."""
        p = self.params
        enc = encode_frame(self.tokenizer_, frame, p.max_length, stage.with_answer, p.head_share, self.task)
        if log is not None:
            for part in enc.n_tokens:
                log.record_truncation(part, enc.n_tokens[part], enc.kept[part])
        targets = None
        if set(stage.targets) <= set(frame.columns):  # scaled to [0, 1] by the task's ranges
            cols = [self.task.target_names.index(t) for t in stage.targets]
            lows, highs = self.task.lows[cols], self.task.highs[cols]
            targets = ((frame[list(stage.targets)].to_numpy(np.float64) - lows) / (highs - lows)).astype(np.float32)
        category, host = self._meta_columns()
        return RowDataset(
            enc.input_ids,
            enc.token_type_ids,
            lookup(self.categories_, frame[category].tolist() if category else [""] * len(frame)),
            lookup(self.hosts_, frame[host].tolist() if host else [""] * len(frame)),
            targets,
            pad_id=self.tokenizer_.pad_token_id or 0,
        )

    # --- save / load --------------------------------------------------------------------------
    def _save_state(self, folder: Path) -> None:
        encoder_dir = folder / "encoder"
        self.tokenizer_.save_pretrained(encoder_dir)
        first = next(iter(self.networks_.values()))
        first.encoder.config.save_pretrained(encoder_dir)
        (folder / "vocab.json").write_text(json.dumps({"category": self.categories_, "host": self.hosts_}, indent=1))
        for name, net in self.networks_.items():
            (folder / name).mkdir(exist_ok=True)
            save_file(state_dict_cpu(net), str(folder / name / "model.safetensors"))
            (folder / name / "network.json").write_text(json.dumps({"n_out": net.head.out_features}, indent=1))

    def _load_state(self, folder: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer_ = AutoTokenizer.from_pretrained(folder / "encoder")
        vocab = json.loads((folder / "vocab.json").read_text())
        self.categories_, self.hosts_ = vocab["category"], vocab["host"]
        self.networks_ = {}
        for stage in stages_for(self.params, self.task):
            n_out = json.loads((folder / stage.name / "network.json").read_text())["n_out"]
            net = self._network(load_encoder(folder / "encoder", pretrained=False), n_out)
            net.load_state_dict(load_file(str(folder / stage.name / "model.safetensors")))
            self.networks_[stage.name] = net.eval()
