"""Frozen sentence embeddings + hand-made features + a light head (ridge or a small MLP).

The encoder is never trained, so each text is embedded once: vectors go through the on-disk
``EmbeddingCache`` and the five CV folds, other heads and later runs all read them back. The
cache is only a cache: a saved model re-embeds new text through the encoder it names.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from questlab.errors import ConfigError
from questlab.folds import holdout_rows, pseudo_rows
from questlab.models.base import FitLog, Model, ModelParams, UnitScorer
from questlab.models.cpu_malloc import tune_malloc
from questlab.models.embedding.cache import EmbeddingCache
from questlab.models.embedding.encoder import EncoderSettings, LongText, SentenceEncoder
from questlab.models.embedding.features import DEFAULT_FEATURE_GROUPS, FeatureExtractor, FeatureGroup, default_groups
from questlab.models.parts import short_name
from questlab.models.pretrained import cache_root
from questlab.models.tfidf import AUTO_ALPHAS
from questlab.tasks import Task, load_task
from questlab.tasks.grouping import group_ids

# A part is a text of the task (by its short name: QUEST's title, body, answer) or a segment of
# several texts joined by a blank line, named by their short names joined with "_" (QUEST's title_body).
Part = str
PARTS: tuple[str, ...] = ("title", "body", "answer", "title_body")  # QUEST's parts
DEFAULT_PARTS: tuple[str, ...] = ("title", "answer", "title_body")


class EmbeddingParams(ModelParams):
    """Settings of the embedding family; one line each, unknown keys rejected."""

    encoder: str = "all-MiniLM-L6-v2"  # known name or local HF folder (see questlab.models.pretrained)
    # What changes a vector: defaults from EncoderSettings, the one place they are written.
    max_tokens: int = Field(EncoderSettings.max_tokens, ge=8, le=512)  # token budget per window (MiniLM trained to 256)
    long_text: LongText = Field(
        EncoderSettings.long_text,
        description="texts over max_tokens: head_tail keeps start + end, chunks averages windows",
    )
    head_share: float = Field(EncoderSettings.head_share, ge=0.0, le=1.0)  # head_tail: share for the text's start
    bf16: bool = EncoderSettings.bf16  # bf16 autocast while embedding (only where the CPU has native bf16)
    embed_batch_size: int = Field(32, ge=1, description="texts per encoder batch while embedding")
    # body adds nothing over title_body in CV and costs a quarter of the embedding time. Not set
    # in a config and not all in the task: one vector per text of the task.
    parts: list[Part] = Field(
        default_factory=lambda: list(DEFAULT_PARTS), description="texts embedded, one vector each"
    )
    # Not set in a config: QUEST's defaults the task's columns allow (+ its feature columns one-hot).
    features: list[FeatureGroup] = Field(
        default_factory=lambda: list(DEFAULT_FEATURE_GROUPS), description="hand-made feature groups beside the vectors"
    )
    host_min_count: int = Field(10, ge=1)  # hosts rarer than this in train share the "unknown" column
    # Which hidden states are pooled: the encoder's last (its sentence vector) or the mean of every
    # layer's pooled tokens. Middle layers keep surface form (spelling, grammar) the last one
    # abstracts away: on ELL essays a ridge on MiniLM's layer mean scored MCRMSE 0.511, on its last
    # layer 0.548 (docs/tasks.md).
    layers: Literal["last", "mean"] = Field(
        EncoderSettings.layers, description="hidden states pooled: the last layer, or the mean over every layer"
    )
    # Only the first layers run: with layers: mean, a truncated encoder pools the middle layers that
    # carry surface form, at a fraction of the time (docs/embedding.md).
    depth: int | None = Field(None, ge=1, description="run only the first n transformer layers (none: all)")
    head: Literal["ridge", "mlp", "mlp+ridge", "krr"] = Field(
        "mlp+ridge", description="the model on the vectors + features (krr: RBF kernel ridge)"
    )
    ridge_weight: float = Field(0.3, ge=0.0, le=1.0)  # mlp+ridge: the ridge's share of the blend
    # Share of the final blend given to a word n-gram TF-IDF ridge over title, body and answer
    # (questlab's `tfidf` model, fitted on the same rows): n-grams see exact terms (names, code,
    # error messages) that sentence vectors blur. 0 = off.
    ngram_weight: float = Field(
        0.0, ge=0.0, lt=1.0, description="share of a word n-gram TF-IDF ridge in the final blend (0 = off)"
    )
    # Settings of that TF-IDF ridge (the tfidf model's params; empty: its defaults, QUEST's)
    ngram_params: dict[str, Any] = Field(default_factory=dict, description="params of the blended tfidf model")
    split_question_head: bool = False  # question targets get their own head over question inputs only
    # "auto": per target out of ridge_alphas, by leave-one-out on the fold's training rows only
    ridge_alpha: float | Literal["auto"] = Field(10.0, description="ridge penalty, or auto")
    ridge_alphas: list[float] = Field(
        default_factory=lambda: list(AUTO_ALPHAS), min_length=1, description="ridge_alpha: auto picks among these"
    )
    # krr: RBF widths (x 1/n_inputs on standardised inputs) and penalties, chosen by leave-one-out
    krr_gammas: list[float] = Field(
        default_factory=lambda: [0.05, 0.1, 0.25],
        min_length=1,
        description="head: krr: RBF widths (x 1/inputs) leave-one-out picks among, per target",
    )
    krr_alphas: list[float] = Field(
        default_factory=lambda: [float(a) for a in np.logspace(-3, 3, 25)],
        min_length=1,
        description="head: krr: the penalties leave-one-out picks among, per target",
    )
    hidden: int = Field(512, ge=1)  # MLP hidden width
    dropout: float = Field(0.3, ge=0.0, lt=1.0, description="MLP dropout")
    lr: float = Field(1e-3, gt=0, description="MLP learning rate (AdamW)")
    weight_decay: float = Field(1e-2, ge=0, description="MLP weight decay (AdamW)")
    batch_size: int = Field(64, ge=1, description="MLP rows per training batch")
    max_epochs: int = Field(60, ge=1, description="MLP epochs at most (early stopping ends sooner)")
    patience: int = Field(8, ge=1)  # epochs without a better early-stopping score before stopping
    # Rows the MLP's early stopping watches. "valid": the fold's valid rows (the original spec):
    # the epoch is picked on the rows that are scored, so CV is optimistic. "holdout": a share of
    # the fold's train questions, held out whole (grouped); the valid rows are then only scored.
    early_stopping: Literal["valid", "holdout"] = Field(
        "valid", description="MLP stops on: the scored valid rows (optimistic) or held-out train groups"
    )
    holdout_share: float = Field(0.1, gt=0.0, lt=0.5)  # early_stopping: holdout: share of questions
    n_seeds: int = Field(3, ge=1)  # MLPs bagged per fold (different init and batch order)
    seed: int = Field(42, description="seed of the heads (init, batch order, held-out questions)")
    threads: int = Field(0, ge=0)  # torch threads; 0: the cores the load of other processes leaves free
    # fit on CPU: glibc malloc keeps big blocks (questlab/models/cpu_malloc.py): MPNet embeds
    # 11.8 seq/s instead of 9.2 on 2 cores (docs/embedding.md). Not applied by predict alone (a
    # server stays lean).
    malloc_tuning: bool = Field(True, description="CPU fit: glibc malloc keeps big blocks (faster embedding)")
    progress: bool = True  # progress bar with ETA while embedding

    @field_validator("ridge_alpha")
    @classmethod
    def _positive_alpha(cls, value: float | str) -> float | str:
        if value != "auto" and value <= 0:
            raise ValueError("ridge_alpha must be > 0 or 'auto'")
        return value

    @field_validator("ridge_alphas", "krr_gammas", "krr_alphas")
    @classmethod
    def _positive_alphas(cls, value: list[float]) -> list[float]:
        if any(a <= 0 for a in value):
            raise ValueError("every value of the grid must be > 0")
        return value


def task_parts(task: Task) -> dict[str, tuple[str, ...]]:
    """{part name: its text columns} of ``task``: each text, then each segment of 2+ texts."""
    parts = {short_name(c): (c,) for c in task.text_names}
    for role in ("first", "second"):
        columns = task.segment(role)
        if len(columns) > 1:
            parts["_".join(short_name(c) for c in columns)] = columns
    return parts


def part_texts(frame: pd.DataFrame, part: str, task: Task | None = None) -> list[str]:
    """The text of one part for every row; a segment part (QUEST's ``title_body``) is its texts
    joined by a blank line."""
    parts = task_parts(load_task(task))
    if part not in parts:
        raise ValueError(f"unknown part {part!r}; known: {', '.join(parts)}")
    columns = parts[part]
    text = frame[columns[0]]
    for col in columns[1:]:
        text = text + "\n\n" + frame[col]
    return text.tolist()


# One loaded encoder per (spec, settings) and process: the CV runner builds a model per fold.
_ENCODERS: dict[tuple, SentenceEncoder] = {}


class EmbeddingModel(Model):
    """Frozen encoder vectors of the task's texts (+ features) into a ridge or MLP head.

    Heads fit the targets scaled to [0, 1] by the task's ranges (QUEST's already are) and their
    predictions are scaled back.
    """

    name = "embedding"
    Params = EmbeddingParams
    params: EmbeddingParams
    parts_: list[str] | None = None  # resolved at fit (or read from a saved state)

    # --- what the task allows -----------------------------------------------------------
    def _parts(self) -> list[str]:
        """The parts embedded: the configured ones, or one per text where the defaults do not fit the task."""
        if self.parts_ is not None:
            return self.parts_
        known = task_parts(self.task)
        wanted = list(self.params.parts)
        # A run config records every param (defaults included): the defaults count as not set.
        explicit = "parts" in self.params.model_fields_set and tuple(wanted) != DEFAULT_PARTS
        if all(p in known for p in wanted):
            return wanted
        if explicit:
            bad = next(p for p in wanted if p not in known)
            raise ConfigError(
                f"model.params.parts: {bad!r} is not a text of task {self.task.name!r}; its parts: {', '.join(known)}"
            )
        return [short_name(c) for c in self.task.text_names]

    def _feature_groups(self) -> list[str]:
        groups = list(self.params.features)
        # A run config records every param (defaults included): the defaults count as not set.
        if "features" in self.params.model_fields_set and tuple(groups) != DEFAULT_FEATURE_GROUPS:
            return groups
        return default_groups(self.task)

    def _unit_targets(self, frame: pd.DataFrame) -> np.ndarray:
        """The task's targets of ``frame`` scaled to [0, 1] (QUEST: the values themselves)."""
        y = frame[list(self.task.target_names)].to_numpy(np.float64)
        return ((y - self.task.lows) / (self.task.highs - self.task.lows)).astype(np.float32)

    # --- embedding ----------------------------------------------------------------------
    def _encoder(self) -> SentenceEncoder:
        p = self.params
        settings = EncoderSettings(p.max_tokens, p.long_text, p.head_share, p.bf16, p.layers, p.depth)
        key = (p.encoder, settings, p.embed_batch_size, p.threads)
        if key not in _ENCODERS:
            _ENCODERS[key] = SentenceEncoder(p.encoder, settings, batch_size=p.embed_batch_size, threads=p.threads)
        return _ENCODERS[key]

    def embed(self, frame: pd.DataFrame, log: FitLog | None = None) -> dict[str, np.ndarray]:
        """Vectors of every configured part (similarity features use the pairs among them)."""
        enc = self._encoder()
        cache = EmbeddingCache(cache_root(), enc.cache_namespace)
        out = {}
        for part in self._parts():
            texts = part_texts(frame, part, self.task)
            out[part] = cache.lookup(
                texts, lambda missing, part=part: enc.encode(missing, self.params.progress, f"embed {part}").vectors
            )
            if log is not None:
                log.record_truncation(part, *enc.token_counts(texts))
        if log is not None:
            s = cache.stats
            log.info.setdefault("embedding_cache", []).append(
                {"folder": str(cache.folder), "hits": s.hits, "misses": s.misses, "corrupt": s.corrupt}
            )
        return out

    def prepare(self, frames: list[pd.DataFrame]) -> None:
        """Embed every part of these rows into the cache, once, before the folds: parallel fold
        workers then only read vectors (each would otherwise run the encoder on the same texts)."""
        if self.params.malloc_tuning:
            tune_malloc()
        self.embed(pd.concat([f[list(self.task.text_names)] for f in frames], ignore_index=True))

    def _matrix(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray]) -> np.ndarray:
        blocks = [vectors[p] for p in self._parts()]
        blocks.append(self.features_.transform(frame, vectors))
        return np.hstack(blocks).astype(np.float32)

    def _groups(self, n_inputs: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per head: (target columns, input columns). ``split_question_head`` gives the targets the
        task routes to its first segment (QUEST: the 21 question targets) a head that sees only
        that segment's inputs, so second-segment (answer) noise cannot fit them."""
        task = self.task
        everything = (np.arange(task.n_targets), np.arange(n_inputs))
        if not self.params.split_question_head:
            return {"all": everything}
        first = np.array([task.route_of(t) == "first" for t in task.target_names])
        if not first.any():
            raise ConfigError(
                f"model.params.split_question_head: task {task.name!r} routes no target to its first segment "
                "(routes: in its spec); set split_question_head: false"
            )
        known = task_parts(task)
        second = {short_name(c) for c in task.segment("second")}
        is_question = [
            not set(known[p]) & set(task.segment("second")) for p in self._parts() for _ in range(self._dims_[p])
        ]
        is_question += [not any(s in name for s in second) for name in self.features_.names]
        if len(is_question) != n_inputs:
            raise ValueError(f"{n_inputs} inputs where the parts and features make {len(is_question)}")
        return {
            "question": (np.flatnonzero(first), np.flatnonzero(is_question)),
            "answer": (np.flatnonzero(~first), everything[1]),
        }

    def _scorer(self, cols: np.ndarray) -> UnitScorer:
        return UnitScorer.of(self.task, cols)

    # --- the contract -------------------------------------------------------------------
    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> EmbeddingModel:
        """Embed (through the cache), fit the features on train, then the head(s); see ``Params``."""
        from questlab.models.embedding import heads

        p = self.params
        if p.malloc_tuning:  # a fitting process: keep the heap's big blocks (the encoder runs on CPU)
            log.info["malloc_tuning"] = tune_malloc()
        t0 = time.perf_counter()
        vec_train = self.embed(train, log)
        vec_valid = self.embed(valid) if valid is not None else None
        log.timings["embed_s"] = time.perf_counter() - t0

        self.features_ = FeatureExtractor(self._feature_groups(), p.host_min_count, self.task).fit(train, vec_train)
        self._dims_ = {part: int(vec_train[part].shape[1]) for part in self._parts()}
        x_train = self._matrix(train, vec_train)
        y_train = self._unit_targets(train)
        x_valid = self._matrix(valid, vec_valid) if valid is not None else None
        y_valid = self._unit_targets(valid) if valid is not None else None
        log.info.update(n_inputs=int(x_train.shape[1]), n_features=len(self.features_.names), head=p.head)

        stop_rows = None
        if p.early_stopping == "holdout":
            # each net of the bag holds out other questions: together they learn from every row
            groups = group_ids(self.task, train)
            real = ~pseudo_rows(train)  # pseudo-labelled rows are trained on, never stopped on
            stop_rows = [holdout_rows(groups, p.holdout_share, p.seed + k, real) for k in range(p.n_seeds)]
            log.info["early_stopping"] = {"rows": "holdout", "n_holdout": [int(m.sum()) for m in stop_rows]}
        t1 = time.perf_counter()
        self.heads_ = {}
        for g, (name, (cols, inputs)) in enumerate(self._groups(x_train.shape[1]).items()):
            xt, yt = x_train[:, inputs], y_train[:, cols]
            xv = x_valid[:, inputs] if x_valid is not None else None
            yv = y_valid[:, cols] if y_valid is not None else None
            scorer = self._scorer(cols)
            self.heads_[name] = heads.make_head(p).fit(xt, yt, xv, yv, log, g, stop_rows, scorer)
        log.timings["head_s"] = time.perf_counter() - t1
        self.ngram_ = None
        if p.ngram_weight > 0:
            from questlab.models.tfidf import TfidfModel

            t2 = time.perf_counter()
            ngram_log = FitLog()  # its one ridge entry would read as an MLP epoch: keep it apart
            self.ngram_ = TfidfModel(p.ngram_params or None, task=self.task).fit(train, valid, ngram_log)
            log.info["ngram"] = {"weight": p.ngram_weight, **ngram_log.info}
            log.timings["ngram_s"] = time.perf_counter() - t2
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        x = self._matrix(frame, self.embed(frame))
        out = np.full((len(frame), self.task.n_targets), np.nan)
        for name, (cols, inputs) in self._groups(x.shape[1]).items():
            out[:, cols] = self.heads_[name].predict(x[:, inputs])
        out = self.task.lows + out * (self.task.highs - self.task.lows)  # back from [0, 1]
        if self.ngram_ is not None:
            w = self.params.ngram_weight
            out = (1 - w) * out + w * self.ngram_.predict(frame)
        return out

    @classmethod
    def pretrained_encoders(cls, params: dict[str, Any]) -> list[str]:
        """A saved model re-embeds new text through the frozen encoder its params name."""
        return [params.get("encoder", cls.Params().encoder)]

    def _save_state(self, folder: Path) -> None:
        state = {"features": self.features_.to_dict(), "dims": self._dims_, "heads": list(self.heads_)}
        state["parts"] = self._parts()
        (folder / "state.json").write_text(json.dumps(state, indent=1))
        for name, head in self.heads_.items():
            (folder / f"head_{name}").mkdir(exist_ok=True)
            head.save(folder / f"head_{name}")
        if self.ngram_ is not None:
            self.ngram_.save(folder / "ngram")

    def _load_state(self, folder: Path) -> None:
        from questlab.models.embedding import heads

        state = json.loads((folder / "state.json").read_text())
        self.features_ = FeatureExtractor.from_dict(state["features"], self.task)
        self._dims_ = state["dims"]
        self.parts_ = list(state.get("parts", self.params.parts))  # 0.9.0 states: the params' parts
        self.heads_ = {name: heads.load_head(folder / f"head_{name}", self.params) for name in state["heads"]}
        self.ngram_ = None
        if self.params.ngram_weight > 0:
            from questlab.models.tfidf import TfidfModel

            self.ngram_ = TfidfModel.load(folder / "ngram")
            self.ngram_.task = self.task  # an ngram folder saved by 0.9.0 records no task
