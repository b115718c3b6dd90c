"""The embedding cache: hit/miss, corrupt entries detected and rebuilt, two processes filling it at once."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from pathlib import Path

import numpy as np

from questlab.models.embedding.cache import EmbeddingCache, text_key

DIM = 8


def fake_vectors(texts: list[str]) -> np.ndarray:
    """A deterministic 'encoder': each text's vector comes from its hash."""
    seeds = [int(hashlib.md5(t.encode()).hexdigest()[:8], 16) for t in texts]
    return np.stack([np.random.default_rng(s).standard_normal(DIM).astype(np.float32) for s in seeds])


class Counting:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return fake_vectors(texts)


def test_miss_then_hit_and_duplicates_embedded_once(tmp_path):
    texts = ["a question", "an answer", "a question", "ünïcode ✓"]
    compute = Counting()
    cache = EmbeddingCache(tmp_path, "enc-A")
    first = cache.lookup(texts, compute)
    assert compute.calls == [["a question", "an answer", "ünïcode ✓"]]  # the repeat is computed once
    assert (cache.stats.hits, cache.stats.misses) == (0, 3)
    np.testing.assert_array_equal(first, fake_vectors(texts))

    again = EmbeddingCache(tmp_path, "enc-A")  # a new run / another fold
    second = again.lookup(texts[::-1], compute)
    assert len(compute.calls) == 1  # nothing recomputed
    assert (again.stats.hits, again.stats.misses) == (3, 0)
    np.testing.assert_array_equal(second, first[::-1])


def test_partial_hit_computes_only_the_new_texts(tmp_path):
    compute = Counting()
    EmbeddingCache(tmp_path, "ns").lookup(["x", "y"], compute)
    EmbeddingCache(tmp_path, "ns").lookup(["y", "z", "x"], compute)
    assert compute.calls[1] == ["z"]


def test_another_namespace_never_reads_these_vectors(tmp_path):
    compute = Counting()
    EmbeddingCache(tmp_path, "encoder-1-t256").lookup(["same text"], compute)
    other = EmbeddingCache(tmp_path, "encoder-1-t128")
    other.lookup(["same text"], compute)
    assert other.stats.misses == 1 and len(compute.calls) == 2


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) - 5]))
    elif how == "garble":
        data[-3] ^= 0xFF  # one flipped byte in the payload: size is right, checksum is not
        path.write_bytes(bytes(data))
    elif how == "magic":
        path.write_bytes(b"XXXX" + bytes(data[4:]))
    elif how == "empty":
        path.write_bytes(b"")


def test_corrupt_entries_are_detected_deleted_and_rebuilt(tmp_path):
    texts = ["t0", "t1", "t2", "t3", "t4"]
    cache = EmbeddingCache(tmp_path, "ns")
    good = cache.lookup(texts, fake_vectors)
    for text, how in zip(texts[:4], ["truncate", "garble", "magic", "empty"], strict=True):
        _damage(cache.path(text_key(text)), how)

    compute = Counting()
    fresh = EmbeddingCache(tmp_path, "ns")
    got = fresh.lookup(texts, compute)
    assert fresh.stats.corrupt == 4
    assert sorted(compute.calls[0]) == ["t0", "t1", "t2", "t3"]  # only the damaged ones, and all of them
    np.testing.assert_array_equal(got, good)
    # Rebuilt on disk: a third reader finds every entry valid.
    third = EmbeddingCache(tmp_path, "ns")
    assert third.lookup(texts, Counting()) is not None and third.stats.hits == 5 and third.stats.corrupt == 0


def _fill(root: str, texts: list[str], barrier) -> None:
    cache = EmbeddingCache(Path(root), "shared")
    barrier.wait()  # start together so the writes really interleave
    for i in range(0, len(texts), 7):
        cache.lookup(texts[i : i + 7], fake_vectors)


def test_two_processes_filling_the_same_cache_leave_only_valid_entries(tmp_path):
    texts = [f"text number {i}" for i in range(400)]
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    # Same texts, opposite orders: both write many of the same keys at the same time.
    procs = [ctx.Process(target=_fill, args=(str(tmp_path), t, barrier)) for t in (texts, texts[::-1])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = EmbeddingCache(tmp_path, "shared")
    got = cache.lookup(texts, Counting())
    assert (cache.stats.hits, cache.stats.misses, cache.stats.corrupt) == (400, 0, 0)
    np.testing.assert_array_equal(got, fake_vectors(texts))
    assert not list(cache.folder.rglob("*.tmp"))  # no temp files left behind
