"""Hand-made features beside the embeddings, in named groups so each group's CV gain can be measured.

Groups (``FEATURE_GROUPS``):

- ``lengths``: log characters / words / lines of title, body and answer, answer-to-body ratio.
- ``counts``: per body and answer, question marks, exclamation marks, links, code-like lines,
  list items, first-person words, digit and upper-case shares; title question marks.
- ``asker``: whether the asker wrote the answer (the user names match).
- ``category``: one-hot category; ``host``: one-hot site (hosts seen ``host_min_count`` times).
  Both vocabularies are learned from the TRAIN rows only; anything else maps to "unknown".
- ``question_words``: which question word the title uses (how / why / what / which / ...) and
  "difference", "vs", "or": cheap cues for the question_type_* targets.
- ``similarity``: cosine similarities between the embedded parts present (needs the vectors).
- ``ids``: log of the question id (from the url) and of the asker's and answerer's user ids (from
  their pages): per-site sequence numbers, so proxies of question age and account age. A value
  that does not parse is set to 0 with a ``*_missing`` flag beside it, not silently.

Numeric columns are standardised with train means and deviations; one-hots are left as 0/1.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pandas as pd

from questlab.schema import ANSWER, BODY, CATEGORY, HOST, TITLE

FeatureGroup = Literal["lengths", "counts", "asker", "category", "host", "question_words", "similarity", "ids"]
FEATURE_GROUPS: tuple[str, ...] = FeatureGroup.__args__
# What held up in grouped CV (docs/embedding.md): every group but ids and question_words.
DEFAULT_FEATURE_GROUPS: tuple[str, ...] = tuple(g for g in FEATURE_GROUPS if g not in ("ids", "question_words"))
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


def numeric_group(frame: pd.DataFrame, group: str) -> dict[str, np.ndarray]:
    """The raw (unscaled) numeric columns of one stateless group."""
    if group == "lengths":
        out: dict[str, np.ndarray] = {}
        for col, name in ((TITLE, "title"), (BODY, "body"), (ANSWER, "answer")):
            text = frame[col]
            out[f"{name}_log_chars"] = np.log1p(text.str.len().to_numpy(float))
            out[f"{name}_log_words"] = np.log1p(text.str.split().str.len().to_numpy(float))
            out[f"{name}_log_lines"] = np.log1p(text.str.count("\n").to_numpy(float))
        out["answer_body_log_ratio"] = out["answer_log_words"] - out["body_log_words"]
        return out
    if group == "counts":
        out = _text_stats(frame[BODY], "body") | _text_stats(frame[ANSWER], "answer")
        out["title_question_marks"] = frame[TITLE].str.count(r"\?").to_numpy(float)
        return out
    if group == "asker":
        asker = frame["question_user_name"].str.strip()
        same = (asker == frame["answer_user_name"].str.strip()) & (asker != "")  # two empty names: two unknowns
        return {"asker_answered": same.to_numpy(float)}
    if group == "question_words":
        title = frame[TITLE].str.lower()
        first = title.str.extract(r"^\W*(\w+)", expand=False).fillna("")
        out = {f"title_starts_{w}": (first == w).to_numpy(float) for w in _QUESTION_WORDS}
        out |= {f"title_has_{w}": title.str.contains(w, regex=True).to_numpy(float) for w in _QUESTION_WORDS[:6]}
        out |= {f"title_cue_{k}": title.str.contains(p, regex=True).to_numpy(float) for k, p in _TITLE_CUES.items()}
        return out
    if group == "ids":
        out = {}
        for name, col, pattern in (
            ("question_id", "url", r"/questions/(\d+)"),
            ("asker_id", "question_user_page", r"/users/(-?\d+)"),
            ("answerer_id", "answer_user_page", r"/users/(-?\d+)"),
        ):
            raw = pd.to_numeric(frame[col].str.extract(pattern, expand=False), errors="coerce").to_numpy(float)
            missing = ~np.isfinite(raw) | (raw < 0)
            out[f"log_{name}"] = np.where(missing, 0.0, np.log1p(np.where(missing, 0.0, raw)))
            out[f"{name}_missing"] = missing.astype(float)
        out["answerer_older_than_asker"] = (out["log_answerer_id"] < out["log_asker_id"]).astype(float)
        return out
    raise ValueError(f"{group!r} is not a stateless numeric group")


def similarity_features(vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cosine similarity of each pair of embedded parts present in ``vectors``."""
    out = {}
    for a, b in SIMILARITY_PAIRS:
        if a in vectors and b in vectors:
            va, vb = vectors[a], vectors[b]
            norm = np.maximum(np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1), 1e-12)
            out[f"cos_{a}_{b}"] = (va * vb).sum(1) / norm
    return out


class FeatureExtractor:
    """Learn vocabularies and scaling on train rows; turn any frame into a feature matrix."""

    def __init__(self, groups: list[str] | tuple[str, ...], host_min_count: int = 10) -> None:
        unknown = [g for g in groups if g not in FEATURE_GROUPS]
        if unknown:
            raise ValueError(f"unknown feature group(s) {unknown}; known: {', '.join(FEATURE_GROUPS)}")
        self.groups = list(groups)
        self.host_min_count = host_min_count

    def _numeric(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for g in self.groups:
            if g == "similarity":
                if vectors is None:
                    raise ValueError("the similarity group needs the part vectors")
                out |= similarity_features(vectors)
            elif g not in ("category", "host"):
                out |= numeric_group(frame, g)
        return out

    def fit(self, frame: pd.DataFrame, vectors: dict[str, np.ndarray] | None = None) -> FeatureExtractor:
        """Learn the category/host vocabularies and the numeric means/deviations from train rows."""
        self.categories_ = sorted(frame[CATEGORY].unique()) if "category" in self.groups else []
        counts = frame[HOST].value_counts()
        self.hosts_ = sorted(counts.index[counts >= self.host_min_count]) if "host" in self.groups else []
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
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureExtractor:
        fx = cls(data["groups"], data["host_min_count"])
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
