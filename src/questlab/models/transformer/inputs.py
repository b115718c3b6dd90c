"""Turn a task's rows into cross-encoder inputs: ``[CLS] t1 [SEP] t2 [SEP] ... [SEP]``.

The texts are the task's first segment in order, then its second (QUEST: ``[CLS] title [SEP]
body [SEP] answer [SEP]``; a one-text task such as ELL: ``[CLS] text [SEP]`` with the whole
budget). One token budget (``max_length``) is shared by the parts: each part gets an equal share, and
what a short part leaves unused flows to the longer ones (water-filling). A part longer than
its share keeps its head and its tail: the end of a post (the actual question, the summary of
an answer) matters as much as its beginning. Token type 0 marks the first segment (QUEST's
question), 1 the second (the answer).

Tokenising is done once per distinct text per tokenizer and process (``tokenize_texts``): the
folds of a run and the stages of a dual model see the same titles, bodies and answers again
(each row is a train row in four folds and a valid row in one), and the cut to a budget is
cheap list work done per call.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from questlab.models.parts import short_name
from questlab.tasks import Task, load_task


def split_budget(lengths: list[int], budget: int) -> list[int]:
    """Share ``budget`` tokens among parts of the given ``lengths``; unused shares flow onwards.

    Parts that fit in an equal share keep everything; the rest split what is left equally (the
    remainder of an uneven split goes to the earlier parts). Returns the kept length per part.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    kept = [0] * len(lengths)
    open_parts = [i for i, n in enumerate(lengths) if n > 0]
    left = budget
    while open_parts and left > 0:
        share, extra = divmod(left, len(open_parts))
        fits = [i for i in open_parts if lengths[i] <= share]
        if not fits:  # every remaining part is longer than its share: split and stop
            for rank, i in enumerate(open_parts):
                kept[i] = share + (1 if rank < extra else 0)
            return kept
        for i in fits:
            kept[i] = lengths[i]
            left -= lengths[i]
        open_parts = [i for i in open_parts if i not in fits]
    return kept


def head_tail(ids: list[int], keep: int, head_share: float = 0.5) -> list[int]:
    """Keep ``keep`` tokens of ``ids``: the first ``ceil(keep * head_share)`` and the last rest."""
    if keep >= len(ids):
        return list(ids)
    if keep <= 0:
        return []
    n_head = int(np.ceil(keep * head_share))
    n_tail = keep - n_head
    return list(ids[:n_head]) + (list(ids[-n_tail:]) if n_tail else [])


@dataclass
class EncodedPairs:
    """Token ids and token types per row, plus per-part token counts before and after the cut."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    n_tokens: dict[str, np.ndarray] = field(default_factory=dict)
    kept: dict[str, np.ndarray] = field(default_factory=dict)

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.input_ids], dtype=np.int64)


def build_input(
    parts: list[list[int]],
    max_length: int,
    cls_id: int,
    sep_id: int,
    head_share: float = 0.5,
    n_first: int | None = None,
) -> tuple[list[int], list[int], list[int]]:
    """One row's ids ``[CLS] p0 [SEP] p1 [SEP] ...`` within ``max_length``, its token types and kept lengths.

    Parts from index ``n_first`` on (the second segment) and their closing [SEP]s get token type 1.
    ``n_first`` None is 0.9.0's rule for QUEST: with three parts (title, body, answer) the answer
    is type 1; with two (title, body) everything is type 0.
    """
    if n_first is None:
        n_first = 2 if len(parts) == 3 else len(parts)
    n_special = 1 + len(parts)
    if max_length <= n_special:
        raise ValueError(f"max_length {max_length} leaves no room for text after {n_special} special tokens")
    kept = split_budget([len(p) for p in parts], max_length - n_special)
    ids, types = [cls_id], [0]
    for k, (part, keep) in enumerate(zip(parts, kept, strict=True)):
        segment = 1 if k >= n_first else 0
        piece = [*head_tail(part, keep, head_share), sep_id]
        ids += piece
        types += [segment] * len(piece)
    return ids, types, kept


# fingerprint of a tokenizer -> {text: its token ids (no special tokens)}; the two last used kept.
_TOKEN_CACHE: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
_CACHED_TOKENIZERS = 2
CACHE_STATS = {"hits": 0, "misses": 0}  # texts served from / added to the cache, this process


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash of everything that decides a tokenizer's output (its full serialised form)."""
    found = getattr(tokenizer, "_questlab_fingerprint", None)
    if found is not None:
        return found
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers: vocab, normaliser, rules
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(repr(sorted(tokenizer.get_vocab().items())).encode())
        h.update(repr(sorted((k, str(v)) for k, v in tokenizer.init_kwargs.items())).encode())
    found = h.hexdigest()[:16]
    with contextlib.suppress(AttributeError):  # hashing a 700 kB vocabulary once, not per call
        tokenizer._questlab_fingerprint = found
    return found


def clear_token_cache() -> None:
    """Forget every cached tokenisation (tests; or to free memory between runs)."""
    _TOKEN_CACHE.clear()
    CACHE_STATS.update(hits=0, misses=0)


def tokenize_texts(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids (no special tokens) of each text, tokenising only texts not seen before."""
    key = tokenizer_fingerprint(tokenizer)
    store = _TOKEN_CACHE.setdefault(key, {})
    _TOKEN_CACHE.move_to_end(key)
    while len(_TOKEN_CACHE) > _CACHED_TOKENIZERS:
        _TOKEN_CACHE.popitem(last=False)
    missing = list(dict.fromkeys(t for t in texts if t not in store))
    if missing:
        ids = tokenizer(missing, add_special_tokens=False, verbose=False)["input_ids"]
        store.update((t, np.asarray(i, dtype=np.int32)) for t, i in zip(missing, ids, strict=True))
    CACHE_STATS["misses"] += len(missing)
    CACHE_STATS["hits"] += len(texts) - len(missing)
    return [store[t] for t in texts]


def encode_frame(
    tokenizer,
    frame: pd.DataFrame,
    max_length: int,
    with_answer: bool,
    head_share: float = 0.5,
    task: Task | None = None,
) -> EncodedPairs:
    """Tokenise each row's first-segment texts (and, ``with_answer``, its second-segment texts)
    (cached: ``tokenize_texts``), then cut them to the budget. ``task`` None: QUEST (title, body, answer)."""
    task = load_task(task)
    first = list(task.segment("first"))
    columns = first + (list(task.segment("second")) if with_answer else [])
    names = [short_name(c) for c in columns]
    tokens = {
        name: tokenize_texts(tokenizer, frame[col].astype(str).tolist())
        for name, col in zip(names, columns, strict=True)
    }
    zeros = {n: np.zeros(len(frame), np.int64) for n in names}
    out = EncodedPairs([], [], {n: z.copy() for n, z in zeros.items()}, zeros)
    for row in range(len(frame)):
        parts = [tokens[n][row].tolist() for n in names]
        ids, types, kept = build_input(
            parts, max_length, tokenizer.cls_token_id, tokenizer.sep_token_id, head_share, n_first=len(first)
        )
        out.input_ids.append(ids)
        out.token_type_ids.append(types)
        for n, part, k in zip(names, parts, kept, strict=True):
            out.n_tokens[n][row] = len(part)
            out.kept[n][row] = k
    return out
