"""Hand-made features beside the embeddings, in named groups so each group's CV gain can be measured.

The task (``quest`` by default) says which texts and feature columns there are. Groups
(``FEATURE_GROUPS``):

- ``lengths``: per text, log characters / words / lines; for a pair task, the log ratio of the
  words of the second segment's last text to the first segment's last text (QUEST: answer to body).
- ``counts``: per text, question marks, exclamation marks, links, code-like lines, list items,
  first-person words, digit and upper-case shares. A task with QUEST's texts keeps 0.9.0's
  layout: body and answer counts, and the title's question marks.
- ``features``: one-hot of every feature column of the task (values seen ``host_min_count``
  times in train; anything else maps to "unknown").
- ``category``, ``host``: QUEST's two feature columns one-hot (category: every value seen in
  train; host: those seen ``host_min_count`` times), where the task has those columns.
- ``question_words``: which question word the first text uses (how / why / what / which / ...) and
  "difference", "vs", "or": cheap cues for QUEST's question_type_* targets.
- ``similarity``: cosine similarities between the embedded parts present (needs the vectors).
- ``asker``: whether the asker wrote the answer (QUEST's user-name columns must exist).
- ``ids``: log of the question id (from the url) and of the asker's and answerer's user ids (from
  their pages): per-site sequence numbers, so proxies of question age and account age. A value
  that does not parse is set to 0 with a ``*_missing`` flag beside it, not silently. Needs
  QUEST's url and user-page columns.
- ``style``: generic grammar and spelling features per text (``questlab.models.text_features``).

A config that asks for a group whose columns the task lacks is a ``ConfigError`` naming both.
Vocabularies are learned from the TRAIN rows only. Numeric columns are standardised with train
means and deviations; one-hots are left as 0/1.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pandas as pd

from questlab.errors import ConfigError
from questlab.models.parts import (
    ANSWER,
    ASKER_COLUMNS,
    BODY,
    CATEGORY,
    HOST,
    ID_COLUMNS,
    TITLE,
    asker_answered,
    has_columns,
    quest_layout,
    require_columns,
    short_name,
)
from questlab.tasks import Task, load_task

FeatureGroup = Literal[
    "lengths", "counts", "asker", "category", "host", "question_words", "similarity", "ids", "features", "style"
]
FEATURE_GROUPS: tuple[str, ...] = FeatureGroup.__args__
# What held up in grouped CV on QUEST (docs/embedding.md): every QUEST group but ids and question_words.
DEFAULT_FEATURE_GROUPS: tuple[str, ...] = ("lengths", "counts", "asker", "category", "host", "similarity")
UNKNOWN = "unknown"
SIMILARITY_PAIRS = (
    ("title", "body"),
    ("title", "title_body"),
    ("title", "answer"),
    ("body", "answer"),
    ("title_body", "answer"),
)

_LINK = re.compile(r"https?://|www\.")
# A line that looks like code: ends in ; { } or ), or holds =, ->, ::, <tag>, $ prompt, def/import.
_CODE_LINE = re.compile(
    r"([;{}]\s*$|\)\s*$|^\s*[$#>]\s|\w+\s*=\s*\S|->|::|</?\w+[^>]*>|^\s*(def|import|from|class|return|if|for)\b)"
)
_LIST_ITEM = re.compile(r"^\s*([-*•]|\d+[.)])\s+")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|my|me)\b", re.IGNORECASE)
_QUESTION_WORDS = ("how", "what", "why", "which", "when", "where", "who", "is", "can", "does", "do", "should")
_TITLE_CUES = {"difference": r"\bdifferen", "versus": r"\b(?:vs\.?|versus)\b", "or": r"\bor\b", "mean": r"\bmean"}


def _text_stats(text: pd.Series, prefix: str) -> dict[str, np.ndarray]:
    lines = text.str.split("\n")
    n_lines = lines.str.len().to_numpy(float)
    chars = np.maximum(text.str.len().to_numpy(float), 1)
    # the costliest scan of the group: once, for both columns that use it
    code_lines = lines.map(lambda ls: sum(bool(_CODE_LINE.search(x)) for x in ls)).to_numpy(float)
    return {
        f"{prefix}_question_marks": np.log1p(text.str.count(r"\?").to_numpy(float)),
        f"{prefix}_exclamations": np.log1p(text.str.count("!").to_numpy(float)),
        f"{prefix}_links": np.log1p(text.str.count(_LINK).to_numpy(float)),
        f"{prefix}_code_lines": np.log1p(code_lines),
        f"{prefix}_code_share": code_lines / np.maximum(n_lines, 1),
        f"{prefix}_list_items": np.log1p(
            lines.map(lambda ls: sum(bool(_LIST_ITEM.match(x)) for x in ls)).to_numpy(float)
        ),
        f"{prefix}_first_person": np.log1p(text.str.count(_FIRST_PERSON).to_numpy(float)),
        f"{prefix}_digit_share": text.str.count(r"\d").to_numpy(float) / chars,
        f"{prefix}_upper_share": text.str.count(r"[A-Z]").to_numpy(float) / chars,
    }


def available_groups(task: Task) -> tuple[str, ...]:
    """The feature groups ``task``'s columns allow (``style`` needs ``questlab.models.text_features``)."""
    ok = {"lengths", "counts", "similarity", "question_words", "style"}
    ok |= {"features"} if task.features else set()
    ok |= {g for g, col in (("category", CATEGORY), ("host", HOST)) if col in task.features}
    ok |= {"asker"} if has_columns(task, ASKER_COLUMNS) else set()
    ok |= {"ids"} if has_columns(task, ID_COLUMNS) else set()
    return tuple(g for g in FEATURE_GROUPS if g in ok)


def default_groups(task: Task) -> list[str]:
    """The groups used when a config names none: QUEST's defaults the task allows, and a one-hot
    of the task's feature columns where neither ``category`` nor ``host`` covers them."""
    ok = available_groups(task)
    groups = [g for g in DEFAULT_FEATURE_GROUPS if g in ok]
    covered = {c for g, c in (("category", CATEGORY), ("host", HOST)) if g in groups}
    if set(task.features) - covered:
        groups.append("features")
    return groups


def check_groups(task: Task, groups: list[str] | tuple[str, ...]) -> None:
    """A ``ConfigError`` for a group the task's columns do not allow, naming the group and the task."""
    for group in groups:
        if group in ("category", "host"):
            col = CATEGORY if group == "category" else HOST
            if col not in task.features:
                raise ConfigError(
                    f"model.params.features: group {group!r} one-hot encodes column {col!r}, "
                    f"which is not a feature column of task {task.name!r} (use 'features')"
                )
        elif group == "features" and not task.features:
            raise ConfigError(f"model.params.features: group 'features': task {task.name!r} has no feature columns")
        elif group == "asker":
            require_columns(task, ASKER_COLUMNS, "feature group 'asker'", "features")
        elif group == "ids":
            require_columns(task, ID_COLUMNS, "feature group 'ids'", "features")


def _lengths(frame: pd.DataFrame, task: Task) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for col in task.text_names:
        text, name = frame[col], short_name(col)
        out[f"{name}_log_chars"] = np.log1p(text.str.len().to_numpy(float))
        out[f"{name}_log_words"] = np.log1p(text.str.split().str.len().to_numpy(float))
        out[f"{name}_log_lines"] = np.log1p(text.str.count("\n").to_numpy(float))
    if task.is_pair:  # QUEST: answer_body_log_ratio
        first, second = short_name(task.segment("first")[-1]), short_name(task.segment("second")[-1])
        out[f"{second}_{first}_log_ratio"] = out[f"{second}_log_words"] - out[f"{first}_log_words"]
    return out


def _counts(frame: pd.DataFrame, task: Task) -> dict[str, np.ndarray]:
    if not quest_layout(task):
        out: dict[str, np.ndarray] = {}
        for col in task.text_names:
            out |= _text_stats(frame[col], short_name(col))
        return out
    out = _text_stats(frame[BODY], "body") | _text_stats(frame[ANSWER], "answer")
    out["title_question_marks"] = frame[TITLE].str.count(r"\?").to_numpy(float)
    return out


def _question_words(frame: pd.DataFrame, task: Task) -> dict[str, np.ndarray]:
    col = task.segment("first")[0]  # QUEST: the title
    name, text = short_name(col), frame[col].str.lower()
    first = text.str.extract(r"^\W*(\w+)", expand=False).fillna("")
    out = {f"{name}_starts_{w}": (first == w).to_numpy(float) for w in _QUESTION_WORDS}
    out |= {f"{name}_has_{w}": text.str.contains(w, regex=True).to_numpy(float) for w in _QUESTION_WORDS[:6]}
    out |= {f"{name}_cue_{k}": text.str.contains(p, regex=True).to_numpy(float) for k, p in _TITLE_CUES.items()}
    return out


def _ids(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    url, asker_page, answerer_page = ID_COLUMNS
    for name, col, pattern in (
        ("question_id", url, r"/questions/(\d+)"),
        ("asker_id", asker_page, r"/users/(-?\d+)"),
        ("answerer_id", answerer_page, r"/users/(-?\d+)"),
    ):
        raw = pd.to_numeric(frame[col].str.extract(pattern, expand=False), errors="coerce").to_numpy(float)
        missing = ~np.isfinite(raw) | (raw < 0)
        out[f"log_{name}"] = np.where(missing, 0.0, np.log1p(np.where(missing, 0.0, raw)))
        out[f"{name}_missing"] = missing.astype(float)
    out["answerer_older_than_asker"] = (out["log_answerer_id"] < out["log_asker_id"]).astype(float)
    return out


def _style_group(frame: pd.DataFrame, task: Task) -> dict[str, np.ndarray]:
    """Generic grammar, spelling and structure features of every text of the task
    (``questlab.models.text_features``; standardised with the other numeric groups)."""
    from questlab.models.text_features import GENERIC_FEATURE_NAMES, column_features

    values = column_features(frame, task.text_names)
    names = [f"{short_name(col)}_{f}" for col in task.text_names for f in GENERIC_FEATURE_NAMES]
    return {name: values[:, k] for k, name in enumerate(names)}


def numeric_group(frame: pd.DataFrame, group: str, task: Task | None = None) -> dict[str, np.ndarray]:
    """The raw (unscaled) numeric columns of one stateless group of ``task`` (None: quest)."""
    task = load_task(task)
    if group == "lengths":
        return _lengths(frame, task)
    if group == "counts":
        return _counts(frame, task)
    if group == "asker":
        return {"asker_answered": asker_answered(frame)}
    if group == "question_words":
        return _question_words(frame, task)
    if group == "ids":
        return _ids(frame)
    if group == "style":
        return _style_group(frame, task)
    raise ValueError(f"{group!r} is not a stateless numeric group")


def similarity_features(vectors: dict[str, np.ndarray], task: Task | None = None) -> dict[str, np.ndarray]:
    """Cosine similarity of each pair of embedded parts present in ``vectors``.

    QUEST's texts: 0.9.0's pairs (``SIMILARITY_PAIRS``); any other task: every pair, in part order.
    """
    names = list(vectors)
    pairs = (
        SIMILARITY_PAIRS
        if quest_layout(load_task(task))
        else [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    )
    out = {}
    for a, b in pairs:
        if a in vectors and b in vectors:
            va, vb = vectors[a], vectors[b]
            norm = np.maximum(np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1), 1e-12)
            out[f"cos_{a}_{b}"] = (va * vb).sum(1) / norm
    return out


class FeatureExtractor:
    """Learn vocabularies and scaling on train rows; turn any frame into a feature matrix."""

    def __init__(self, groups: list[str] | tuple[str, ...], host_min_count: int = 10, task: Task | None = None) -> None:
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown:
            raise ValueError(f"unknown feature group(s) {unknown}; known: {', '.join(FEATURE_GROUPS)}")
        self.task = load_task(task)
        check_groups(self.task, groups)
        self.groups = list(groups)
        self.host_min_count = host_min_count
        self.feature_vocab_: dict[str, list[str]] = {}

    def _numeric(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for g in self.groups:
            if g == "similarity":
                if vectors is None:
                    raise ValueError("the similarity group needs the part vectors")
                out |= similarity_features(vectors, self.task)
            elif g not in ("category", "host", "features"):
                out |= numeric_group(frame, g, self.task)
        return out

    def fit(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray] | None = None) -> FeatureExtractor:
        """Learn the category/host vocabularies and the numeric means/deviations from train rows."""
        self.categories_ = sorted(frame[CATEGORY].unique()) if "category" in self.groups else []
        counts = frame[HOST].value_counts() if "host" in self.groups else pd.Series(dtype=int)
        self.hosts_ = sorted(counts.index[counts >= self.host_min_count]) if "host" in self.groups else []
        self.feature_vocab_ = {}
        for col in self.task.features if "features" in self.groups else []:
            seen = frame[col].value_counts()
            self.feature_vocab_[col] = sorted(seen.index[seen >= self.host_min_count])
        numeric = self._numeric(frame, vectors)
        self.numeric_names_ = list(numeric)
        mat = np.column_stack(list(numeric.values())) if numeric else np.zeros((len(frame), 0))
        self.mean_ = mat.mean(0).tolist()
        # A constant column (e.g. no links in a tiny slice) gets std 1: scaled to 0, not to NaN.
        std = mat.std(0)
        self.std_ = np.where(std > 1e-8, std, 1.0).tolist()
        return self

    @property
    def names(self) -> list[str]:
        return (
            self.numeric_names_
            + [f"category={c}" for c in [*self.categories_, UNKNOWN] if self.categories_]
            + [f"host={h}" for h in [*self.hosts_, UNKNOWN] if self.hosts_]
            + [f"{col}={v}" for col, vocab in self.feature_vocab_.items() for v in [*vocab, UNKNOWN]]
        )

    def transform(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """(n, n_features) float32 matrix, columns in ``names`` order."""
        numeric = self._numeric(frame, vectors)
        if list(numeric) != self.numeric_names_:
            raise ValueError("features differ from the fitted ones (were the same parts given?)")
        blocks = []
        if numeric:
            mat = np.column_stack(list(numeric.values()))
            blocks.append((mat - np.array(self.mean_)) / np.array(self.std_))
        if self.categories_:
            blocks.append(_one_hot(frame[CATEGORY], self.categories_))
        if self.hosts_:
            blocks.append(_one_hot(frame[HOST], self.hosts_))
        for col, vocab in self.feature_vocab_.items():
            blocks.append(_one_hot(frame[col], vocab))
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.hstack(blocks).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "host_min_count": self.host_min_count,
            "categories": self.categories_,
            "hosts": self.hosts_,
            "numeric_names": self.numeric_names_,
            "mean": self.mean_,
            "std": self.std_,
        } | ({"feature_vocab": self.feature_vocab_} if self.feature_vocab_ else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any], task: Task | None = None) -> FeatureExtractor:
        fx = cls(data["groups"], data["host_min_count"], task)
        fx.feature_vocab_ = {c: list(v) for c, v in data.get("feature_vocab", {}).items()}
        fx.categories_, fx.hosts_ = list(data["categories"]), list(data["hosts"])
        fx.numeric_names_, fx.mean_, fx.std_ = list(data["numeric_names"]), data["mean"], data["std"]
        return fx


def _one_hot(values: pd.Series, vocab: list[str]) -> np.ndarray:
    """One column per vocabulary entry plus a last "unknown" column for anything unseen in train."""
    index = {v: i for i, v in enumerate(vocab)}
    codes = values.map(lambda v: index.get(v, len(vocab))).to_numpy()
    out = np.zeros((len(values), len(vocab) + 1), dtype=np.float32)
    out[np.arange(len(values)), codes] = 1.0
    return out
