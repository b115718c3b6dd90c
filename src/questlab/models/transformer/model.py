"""``TransformerModel``: a fine-tuned cross-encoder (or a question + an answer model) behind ``Model``.

Joint mode trains one network on ``[CLS] title [SEP] body [SEP] answer [SEP]`` for all 30
targets. Dual mode trains a question network on title + body for the 21 question targets and
an answer network on the full pair for the 9 answer targets (or all 30, its question outputs
then averaged with the question network's).

Saved folder: ``encoder/`` (encoder config + tokenizer), ``vocab.json`` (category/host
indices), and per stage ``<stage>/network.json`` + ``<stage>/model.safetensors``.
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

from questlab.folds import holdout_rows, pseudo_rows, question_groups
from questlab.models.base import FitLog, Model, check_predictions
from questlab.models.pretrained import resolve_encoder  # also switches the HF hub off before transformers loads
from questlab.models.transformer.batches import RowDataset
from questlab.models.transformer.inputs import CACHE_STATS, encode_frame
from questlab.models.transformer.network import QuestNet, build_vocab, load_encoder, lookup
from questlab.models.transformer.params import TransformerParams
from questlab.models.transformer.training import TrainSettings, infer, state_dict_cpu, train_network
from questlab.schema import ANSWER_TARGETS, CATEGORY, HOST, ID, QUESTION_TARGETS, TARGETS

__all__ = ["Stage", "TransformerModel", "TransformerParams", "combine", "stages_for"]


@dataclass(frozen=True)
class Stage:
    """One network of the model: its name, whether it reads the answer, the targets it predicts."""

    name: str
    with_answer: bool
    targets: tuple[str, ...]


def stages_for(params: TransformerParams) -> list[Stage]:
    """The networks a mode trains: ``joint`` one, ``dual`` a question and an answer network."""
    if params.mode == "joint":
        return [Stage("joint", True, TARGETS)]
    answer_targets = TARGETS if params.dual_answer_targets == "all" else ANSWER_TARGETS
    return [Stage("question", False, QUESTION_TARGETS), Stage("answer", True, answer_targets)]


def combine(stage_preds: dict[Stage, np.ndarray], n_rows: int) -> np.ndarray:
    """Place each stage's columns at their targets' positions; average targets predicted twice."""
    total = np.zeros((n_rows, len(TARGETS)))
    count = np.zeros(len(TARGETS))
    for stage, pred in stage_preds.items():
        cols = [TARGETS.index(t) for t in stage.targets]
        total[:, cols] += pred
        count[cols] += 1
    if (count == 0).any():
        raise ValueError(f"no stage predicts {TARGETS[int(np.argmin(count))]}")
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
        # Vocabularies from TRAIN only: an unseen category/host at predict time maps to index 0.
        self.categories_ = build_vocab(train[CATEGORY].tolist()) if p.use_category else {}
        self.hosts_ = build_vocab(train[HOST].tolist()) if p.use_host else {}
        self.networks_: dict[str, QuestNet] = {}
        log.info.update(encoder=str(folder), device=str(accelerator.device), processes=accelerator.num_processes)
        if p.select_best_epoch and p.early_stopping == "holdout":
            hold = holdout_rows(question_groups(train), p.holdout_share, p.seed, ~pseudo_rows(train))
            train, valid = train[~hold].reset_index(drop=True), train[hold].reset_index(drop=True)
            log.info["early_stopping"] = {"rows": "holdout", "n_holdout": int(hold.sum()), "n_train": len(train)}
        log.info["stages"] = [s.name for s in stages_for(p)]
        checkpoints = self._checkpoint_root(log, accelerator)
        if checkpoints is not None:
            self._claim_checkpoints(checkpoints, train, log, accelerator)
        tokenised = dict(CACHE_STATS)
        for k, stage in enumerate(stages_for(p)):
            train_data = self._dataset(train, stage, log if stage.with_answer else None)
            valid_data = self._dataset(valid, stage, None) if valid is not None else None
            torch.manual_seed(p.seed + k)  # the head's initial weights
            net = self._network(load_encoder(folder), len(stage.targets))
            workdir = None if checkpoints is None else checkpoints / stage.name
            stage_started = time.perf_counter()
            net = train_network(net, train_data, valid_data, self._settings(), log, accelerator, workdir, stage=k)
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
        for stage in stages_for(self.params):
            net = self.networks_[stage.name].to(accelerator.device)
            data = self._dataset(frame, stage, None)
            preds[stage], _ = infer(net, data, settings, accelerator, shard=False)
        return check_predictions(combine(preds, len(frame)), len(frame), "TransformerModel")

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
            + pd.util.hash_pandas_object(train[ID], index=False).to_numpy().tobytes()
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

    def _settings(self) -> TrainSettings:
        return TrainSettings(self.params, bf16=self._bf16(self.device_))

    def _dataset(self, frame: pd.DataFrame, stage: Stage, log: FitLog | None) -> RowDataset:
        """Encode ``frame`` for ``stage``; with a ``log``, record how much the budget cut per part."""
        enc = encode_frame(self.tokenizer_, frame, self.params.max_length, stage.with_answer, self.params.head_share)
        if log is not None:
            for part in enc.n_tokens:
                log.record_truncation(part, enc.n_tokens[part], enc.kept[part])
        targets = frame[list(stage.targets)].to_numpy(np.float32) if set(stage.targets) <= set(frame.columns) else None
        return RowDataset(
            enc.input_ids,
            enc.token_type_ids,
            lookup(self.categories_, frame[CATEGORY].tolist()),
            lookup(self.hosts_, frame[HOST].tolist()),
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
        for stage in stages_for(self.params):
            n_out = json.loads((folder / stage.name / "network.json").read_text())["n_out"]
            net = self._network(load_encoder(folder / "encoder", pretrained=False), n_out)
            net.load_state_dict(load_file(str(folder / stage.name / "model.safetensors")))
            self.networks_[stage.name] = net.eval()
