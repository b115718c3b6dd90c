"""TF-IDF of each of the task's texts, its feature columns one-hot, a few text statistics, one ridge.

The task (``quest`` by default) says which text columns are parts (QUEST: title, body and answer)
and which categorical columns are one-hot encoded (QUEST: category and host); predictions are
squashed into each target's range (``to_target_range``).

Text: word 1..n-gram counts via feature hashing (``HashingVectorizer``, 2**20 buckets), then per
fold the terms seen in at least ``min_df`` training documents, capped to the ``max_features`` most
frequent, sub-linear TF-IDF with IDF from the training rows only. Hashing makes a document's
counts independent of the fold, so each text is tokenised once per process (``hashed_counts``
memoises them): the five folds of a CV run share the tokenisation instead of redoing it, and no
vocabulary dict has to be built, sorted or pickled. Collisions are rare (a few hundred thousand
n-grams in 2**20 buckets) and cost nothing measurable in CV. The memo is a least-recently-used
cache bounded by texts and by bytes, so a long-lived server fed unique texts stays flat.

The model reads the first ``MAX_TEXT_CHARS`` (100,000) characters of each title, body and answer:
4.4 times the longest QUEST text (answer, 22,636 characters), so every real text is read whole
and predicted exactly as before, while a 9 MB answer costs what 100,000 characters cost (the cut
comes before hashing, the memo and the text statistics).

One multi-output ridge (the same alpha for every target) solved in its dual form: with ~4k rows
and ~100k features the n x n kernel system is far cheaper than the primal, and one Cholesky
solve serves all targets. The scaled text statistics lift the mean Spearman by about +0.03 in
grouped CV (QUEST): TF-IDF rows are length-normalised, so without them the model cannot see how
long an answer is. A task with
QUEST's texts and user names gets 0.9.0's statistics (lengths of title, body and answer, lines of
body and answer, question marks of the body, whether the asker answered); any other task, per
text column its length, its lines and its question marks.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field, field_validator
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from questlab.errors import RunFormatError, SettingsCannotFitError
from questlab.models.base import FitLog, Model, ModelParams, to_target_range
from questlab.models.legacy_pickle import load_legacy_joblib
from questlab.models.parts import ANSWER, ASKER_COLUMNS, BODY, QUEST_TEXTS, quest_layout
from questlab.models.text_features import column_features
from questlab.tasks import Task, load_task

# QUEST's text parts (0.9.0's name for them); a model reads ``task.text_names``.
TEXT_PARTS = QUEST_TEXTS
HASH_BUCKETS = 2**20
# Characters of a text the model reads (module doc): QUEST's longest text is 22,636 characters.
MAX_TEXT_CHARS = 100_000
# Bounds of the per-process memo of hashed counts (each n-gram setting has its own). The CV on
# train.csv holds ~18k texts, ~60 MB; a server fed unique texts evicts the least recently used.
_MEMO_MAX_TEXTS = 100_000
# Saved state: arrays and settings, never a pickle (questlab <= 0.9.0 wrote tfidf.joblib).
STATE_ARRAYS, STATE_JSON, LEGACY_STATE = "tfidf.npz", "tfidf.json", "tfidf.joblib"
STATE_FORMAT = 2
_MEMO_MAX_BYTES = 128 * 2**20
# alpha: auto's default grid: 1e-2 .. 1e4, four per decade.
AUTO_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 4, 25))


class _CountsMemo:
    """{text: (bucket indices, counts)}, least recently used first out, bounded by entries and bytes.

    A text's bytes are its characters (as stored by Python) plus its two arrays. Thread-safe: an
    unbatched server predicts in several threads at once.
    """

    def __init__(self, max_texts: int = _MEMO_MAX_TEXTS, max_bytes: int = _MEMO_MAX_BYTES) -> None:
        self.max_texts, self.max_bytes = max_texts, max_bytes
        self.nbytes = 0
        self._rows: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, text: object) -> bool:
        return text in self._rows

    @staticmethod
    def _size(text: str, row: tuple[np.ndarray, np.ndarray]) -> int:
        return sys.getsizeof(text) + row[0].nbytes + row[1].nbytes

    def get_many(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray] | None]:
        with self._lock:
            out = []
            for text in texts:
                row = self._rows.get(text)
                if row is not None:
                    self._rows.move_to_end(text)
                out.append(row)
            return out

    def put(self, text: str, row: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            if text in self._rows:
                return
            self._rows[text] = row
            self.nbytes += self._size(text, row)
            while len(self._rows) > self.max_texts or (self.nbytes > self.max_bytes and len(self._rows) > 1):
                old, old_row = self._rows.popitem(last=False)
                self.nbytes -= self._size(old, old_row)


_COUNTS_MEMO: dict[int, _CountsMemo] = {}


def read_part(texts: Sequence[str]) -> list[str]:
    """What the model reads of each text: its first ``MAX_TEXT_CHARS`` characters."""
    return [t if len(t) <= MAX_TEXT_CHARS else t[:MAX_TEXT_CHARS] for t in texts]


class TfidfParams(ModelParams):
    """Settings of the TF-IDF + ridge model."""

    ngram_max: int = Field(2, ge=1, le=3, description="word n-grams 1..ngram_max")
    min_df: int = Field(2, ge=1, description="drop terms seen in fewer training documents")
    max_features: int = Field(40_000, ge=100, description="vocabulary cap per text part")
    # "auto": each target's own alpha out of ``alphas``, by exact leave-one-out on the training
    # rows (sklearn's RidgeCV, alpha_per_target): the valid rows are never looked at.
    alpha: float | Literal["auto"] = Field(10.0, description="ridge penalty shared by every target, or auto")
    alphas: list[float] = Field(
        default_factory=lambda: list(AUTO_ALPHAS), min_length=1, description="alpha: auto picks among these"
    )
    onehot_weight: float = Field(1.0, ge=0, description="scale of the one-hot block of the task's feature columns")
    stats_weight: float = Field(0.3, ge=0, description="scale of the standardised text statistics (0 = off)")
    # Grammar, spelling and structure features of every text (questlab.models.text_features),
    # standardised with the training rows' statistics. 0 = off (QUEST's configs).
    style_weight: float = Field(0.0, ge=0, description="scale of the standardised style features (0 = off)")

    @field_validator("alpha")
    @classmethod
    def _positive_alpha(cls, value: float | str) -> float | str:
        if value != "auto" and value <= 0:
            raise ValueError("alpha must be > 0 or 'auto'")
        return value

    @field_validator("alphas")
    @classmethod
    def _positive_alphas(cls, value: list[float]) -> list[float]:
        if any(a <= 0 for a in value):
            raise ValueError("every alpha of alphas must be > 0")
        return value


def hashed_counts(texts: Sequence[str], ngram_max: int) -> sp.csr_matrix:
    """Word 1..``ngram_max``-gram counts of ``texts`` in ``HASH_BUCKETS`` columns, memoised per text.

    Tokenisation is sklearn's default (lower-cased, accents stripped, ``\\b\\w\\w+\\b`` tokens).
    Only the first ``MAX_TEXT_CHARS`` characters of a text are read.
    """
    memo = _COUNTS_MEMO.setdefault(ngram_max, _CountsMemo())
    texts = read_part(texts)
    found = dict(zip(texts, memo.get_many(texts), strict=True))
    missing = [t for t, row in found.items() if row is None]
    if missing:
        hasher = HashingVectorizer(
            ngram_range=(1, ngram_max),
            strip_accents="unicode",
            n_features=HASH_BUCKETS,
            alternate_sign=False,
            norm=None,
            dtype=np.float32,
        )
        m = hasher.transform(missing)  # duplicate buckets summed, one entry per (row, bucket)
        for i, text in enumerate(missing):
            lo, hi = m.indptr[i], m.indptr[i + 1]
            found[text] = (m.indices[lo:hi].copy(), m.data[lo:hi].copy())
            memo.put(text, found[text])
    rows = [found[t] for t in texts]
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([len(r[0]) for r in rows], out=indptr[1:])
    indices = np.concatenate([r[0] for r in rows]) if rows else np.zeros(0, np.int32)
    data = np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), HASH_BUCKETS))


def select_columns(counts: sp.csr_matrix, columns: np.ndarray) -> sp.csr_matrix:
    """Keep only ``columns`` (sorted bucket ids) of a hashed count matrix, renumbered 0..len-1."""
    remap = np.full(HASH_BUCKETS, -1, dtype=np.int64)
    remap[columns] = np.arange(len(columns))
    new = remap[counts.indices]
    kept = new >= 0
    row = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[kept]
    return sp.csr_matrix((counts.data[kept], (row, new[kept])), shape=(counts.shape[0], len(columns)))


def frequent_columns(counts: sp.csr_matrix, min_df: int, max_features: int) -> np.ndarray:
    """Buckets in at least ``min_df`` rows, the ``max_features`` with the highest total count (ties by id)."""
    df = np.bincount(counts.indices, minlength=HASH_BUCKETS)
    keep = np.flatnonzero(df >= min_df)
    if len(keep) > max_features:
        tf = np.bincount(counts.indices, weights=counts.data, minlength=HASH_BUCKETS)[keep]
        keep = np.sort(keep[np.lexsort((keep, -tf))[:max_features]])
    return keep


def text_statistics(frame: pd.DataFrame, task: Task | None = None) -> np.ndarray:
    """Per-row text statistics the TF-IDF blocks cannot see (their rows are length-normalised).

    A task with QUEST's texts and user names (``quest_layout``): 0.9.0's seven columns. Any
    other: per text column, log length, log line count and question marks (capped at 10).
    """
    task = load_task(task)
    if not quest_layout(task):
        texts = task.text_names
        return np.column_stack(
            [np.log1p(frame[c].str.len()) for c in texts]
            + [np.log1p(frame[c].str.count("\n")) for c in texts]
            + [frame[c].str.count(r"\?").clip(0, 10) for c in texts]
        ).astype(np.float64)
    asker, answerer = ASKER_COLUMNS
    return np.column_stack(
        [np.log1p(frame[c].str.len()) for c in TEXT_PARTS]
        + [np.log1p(frame[c].str.count("\n")) for c in (BODY, ANSWER)]
        + [
            frame[BODY].str.count(r"\?").clip(0, 10),
            # the asker answered: both names given and equal (two empty names are two unknowns)
            ((frame[asker] == frame[answerer]) & (frame[asker].str.strip() != "")).astype(float),
        ]
    ).astype(np.float64)


def _no_terms(part: str, counts: sp.csr_matrix, min_df: int) -> SettingsCannotFitError:
    """The error when ``min_df`` keeps no term of ``part``: the most any term reaches, what to do."""
    n_rows = counts.shape[0]
    top = int(np.bincount(counts.indices, minlength=1).max()) if counts.nnz else 0
    if top == 0:
        return SettingsCannotFitError(
            f"the {n_rows} training rows hold no {part} word of two letters or more: TF-IDF has nothing to fit"
        )
    return SettingsCannotFitError(
        f"model.params.min_df={min_df} leaves no {part} terms in the {n_rows} training rows "
        f"(the most common is in {top} of them): lower min_df to at most {top}"
    )


class TfidfModel(Model):
    """Word TF-IDF per text part + the feature columns one-hot + text statistics → multi-output ridge."""

    name = "tfidf"
    Params = TfidfParams

    def _features(self, frame: pd.DataFrame, fit: bool) -> sp.csr_matrix:
        p = self.params
        parts = self.task.text_names
        long = [c for c in parts if (frame[c].str.len() > MAX_TEXT_CHARS).any()]
        if long:  # read what the model reads (MAX_TEXT_CHARS), statistics included
            frame = frame.assign(**{c: read_part(frame[c].tolist()) for c in long})
        blocks = []
        for part in parts:
            counts = hashed_counts(frame[part].tolist(), p.ngram_max)
            if fit:
                self.columns_[part] = frequent_columns(counts, p.min_df, p.max_features)
                if not len(self.columns_[part]):
                    raise _no_terms(part, counts, p.min_df)
                self.idf_[part] = TfidfTransformer(sublinear_tf=True)
            counts = select_columns(counts, self.columns_[part])
            idf = self.idf_[part]
            blocks.append(idf.fit_transform(counts) if fit else idf.transform(counts))
        if self.task.features:
            cats = frame[list(self.task.features)]
            # Unseen values at predict time become all-zero rows, not a crash.
            onehot = self.onehot_.fit_transform(cats) if fit else self.onehot_.transform(cats)
            blocks.append(p.onehot_weight * onehot)
        if p.stats_weight > 0:
            stats = text_statistics(frame, self.task)
            stats = self.scaler_.fit_transform(stats) if fit else self.scaler_.transform(stats)
            blocks.append(sp.csr_matrix(p.stats_weight * stats))
        if p.style_weight > 0:
            style = column_features(frame, self.task.text_names)
            style = self.style_scaler_.fit_transform(style) if fit else self.style_scaler_.transform(style)
            blocks.append(sp.csr_matrix(p.style_weight * style))
        # float32 throughout: the kernel product and Cholesky solve take ~35% less time than in
        # float64, with no measurable change in CV.
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> TfidfModel:
        self.columns_: dict[str, np.ndarray] = {}
        self.idf_: dict[str, TfidfTransformer] = {}
        self.onehot_ = OneHotEncoder(handle_unknown="ignore")
        self.scaler_ = StandardScaler()
        self.style_scaler_ = StandardScaler()
        x = self._features(train, fit=True)
        y = train[list(self.task.target_names)].to_numpy(dtype=np.float64)
        self.target_mean_ = y.mean(axis=0)
        # Centre y and skip the intercept so sklearn can take the dual Cholesky path on sparse x.
        if self.params.alpha == "auto":
            # leave-one-out over the training rows only (one eigendecomposition of x x^T)
            self.ridge_ = RidgeCV(alphas=self.params.alphas, fit_intercept=False, alpha_per_target=True)
            self.ridge_.fit(x, (y - self.target_mean_).astype(np.float32))
            log.info["alpha"] = dict(zip(self.task.target_names, np.ravel(self.ridge_.alpha_).tolist(), strict=True))
        else:
            self.ridge_ = Ridge(alpha=self.params.alpha, fit_intercept=False, solver="cholesky")
            self.ridge_.fit(x, (y - self.target_mean_).astype(np.float32))
        train_pred = self._raw_predict(x)
        log.info.update(
            n_features=int(x.shape[1]),
            terms_per_part={part: len(c) for part, c in self.columns_.items()},
            fit="one closed-form ridge solve; no epochs",
        )
        log.log_epoch(epoch=1, train_loss=float(np.mean((train_pred - y) ** 2)))
        self.fitted_ = True
        return self

    def _raw_predict(self, x: sp.csr_matrix) -> np.ndarray:
        return x @ self.ridge_.coef_.T + self.target_mean_

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        # Ridge is unbounded; a strictly increasing squash into each target's range keeps every
        # rank (clipping would tie half the rows of a rare target at its low end).
        return to_target_range(self._raw_predict(self._features(frame, fit=False)), self.task)

    def _save_state(self, folder: Path) -> None:
        """Arrays in ``tfidf.npz``, the one-hot categories in ``tfidf.json``: no pickle, nothing to run."""
        parts = self.task.text_names
        arrays = {f"columns.{p}": self.columns_[p] for p in parts}
        arrays |= {f"idf.{p}": self.idf_[p].idf_ for p in parts}
        arrays |= {"ridge.coef": self.ridge_.coef_, "target_mean": self.target_mean_}
        if hasattr(self.scaler_, "mean_"):  # fitted only when the text statistics are used
            arrays |= {"scaler.mean": self.scaler_.mean_, "scaler.scale": self.scaler_.scale_}
            arrays |= {"scaler.var": self.scaler_.var_, "scaler.samples": np.asarray(self.scaler_.n_samples_seen_)}
        style = getattr(self, "style_scaler_", None)
        if style is not None and hasattr(style, "mean_"):  # fitted only when style_weight > 0
            arrays |= {"style.mean": style.mean_, "style.scale": style.scale_, "style.var": style.var_}
        np.savez(folder / STATE_ARRAYS, **arrays)
        features = list(self.task.features)
        found = self.onehot_.categories_ if features else []
        categories = {c: [str(v) for v in cats] for c, cats in zip(features, found, strict=True)}
        (folder / STATE_JSON).write_text(json.dumps({"format": STATE_FORMAT, "categories": categories}, indent=1))

    def _load_state(self, folder: Path) -> None:
        if not (folder / STATE_ARRAYS).exists() and (folder / LEGACY_STATE).exists():
            self._load_legacy(folder / LEGACY_STATE)
            return
        meta = json.loads((folder / STATE_JSON).read_text())
        features = list(self.task.features)
        if meta.get("format") != STATE_FORMAT or set(meta.get("categories", {})) != set(features):
            raise RunFormatError(f"{folder / STATE_JSON}: not a TF-IDF state this questlab reads; refit the run")
        with np.load(folder / STATE_ARRAYS, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        self.columns_, self.idf_ = {}, {}
        for part in self.task.text_names:
            self.columns_[part] = arrays[f"columns.{part}"]
            idf = TfidfTransformer(sublinear_tf=True)
            idf.idf_, idf.n_features_in_ = arrays[f"idf.{part}"], len(self.columns_[part])
            self.idf_[part] = idf
        # The encoder refitted on its own categories: the same categories_ (sorted uniques), the same output.
        self.onehot_ = OneHotEncoder(handle_unknown="ignore")
        if features:
            cats = [meta["categories"][c] for c in features]
            width = max(len(c) for c in cats)
            self.onehot_.fit(
                pd.DataFrame({col: c + [c[-1]] * (width - len(c)) for col, c in zip(features, cats, strict=True)})
            )
        self.scaler_ = StandardScaler()
        if "scaler.mean" in arrays:
            self.scaler_.mean_, self.scaler_.scale_ = arrays["scaler.mean"], arrays["scaler.scale"]
            self.scaler_.var_, self.scaler_.n_samples_seen_ = arrays["scaler.var"], arrays["scaler.samples"]
            self.scaler_.n_features_in_ = len(self.scaler_.mean_)
        self.style_scaler_ = StandardScaler()
        if "style.mean" in arrays:
            self.style_scaler_.mean_, self.style_scaler_.scale_ = arrays["style.mean"], arrays["style.scale"]
            self.style_scaler_.var_ = arrays["style.var"]
            self.style_scaler_.n_features_in_ = len(self.style_scaler_.mean_)
        # only coef_ predicts; alpha "auto" chose per-target alphas at fit
        alpha = self.params.alpha if self.params.alpha != "auto" else 1.0
        self.ridge_ = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky")
        self.ridge_.coef_, self.target_mean_ = arrays["ridge.coef"], arrays["target_mean"]

    def _load_legacy(self, path: Path) -> None:
        """State pickled by questlab <= 0.9.0, read through an allowlist (see legacy_pickle)."""
        state = load_legacy_joblib(path)
        if not isinstance(state, dict) or "columns" not in state:
            raise RunFormatError(
                f"{path.parent}: a TF-IDF model saved by questlab < 0.2 (vocabulary-based); "
                "re-run its config to refit it with this version"
            )
        self.columns_, self.idf_ = state["columns"], state["idf"]
        self.onehot_, self.scaler_ = state["onehot"], state["scaler"]
        self.ridge_, self.target_mean_ = state["ridge"], state["target_mean"]
