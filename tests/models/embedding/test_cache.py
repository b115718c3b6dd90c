"""The embedding cache (one SQLite file): hit/miss, namespaces, corrupt rows and a corrupt file
detected and rebuilt, two processes filling it at once, old per-text .vec folders read once."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import sqlite3
import struct
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
    assert [p.name for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))] == [
        "vectors.sqlite3"
    ]


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
    assert EmbeddingCache(tmp_path, "encoder-1-t256").count() == 1


def _damage(db: Path, text: str, how: str) -> None:
    key = bytes.fromhex(text_key(text))
    with sqlite3.connect(db) as conn:
        (blob,) = conn.execute("SELECT vec FROM vectors WHERE key = ?", [key]).fetchone()
        if how == "truncate":
            conn.execute("UPDATE vectors SET vec = ? WHERE key = ?", [blob[:-5], key])
        elif how == "garble":  # one flipped byte: size is right, digest is not
            conn.execute(
                "UPDATE vectors SET vec = ? WHERE key = ?", [blob[:-3] + bytes([blob[-3] ^ 0xFF]) + blob[-2:], key]
            )
        elif how == "dim":
            conn.execute("UPDATE vectors SET dim = dim + 1 WHERE key = ?", [key])
        elif how == "empty":
            conn.execute("UPDATE vectors SET vec = ? WHERE key = ?", [b"", key])


def test_corrupt_rows_are_detected_deleted_and_rebuilt(tmp_path):
    texts = ["t0", "t1", "t2", "t3", "t4"]
    cache = EmbeddingCache(tmp_path, "ns")
    good = cache.lookup(texts, fake_vectors)
    for text, how in zip(texts[:4], ["truncate", "garble", "dim", "empty"], strict=True):
        _damage(cache.db_path, text, how)

    compute = Counting()
    fresh = EmbeddingCache(tmp_path, "ns")
    got = fresh.lookup(texts, compute)
    assert fresh.stats.corrupt == 4
    assert sorted(compute.calls[0]) == ["t0", "t1", "t2", "t3"]  # only the damaged ones, and all of them
    np.testing.assert_array_equal(got, good)
    third = EmbeddingCache(tmp_path, "ns")  # rebuilt: a third reader finds every entry valid
    third.lookup(texts, Counting())
    assert (third.stats.hits, third.stats.corrupt) == (5, 0)


def test_a_file_that_is_not_a_database_is_moved_aside_and_rebuilt(tmp_path):
    cache = EmbeddingCache(tmp_path, "ns")
    cache.lookup(["a", "b"], fake_vectors)
    for suffix in ("-wal", "-shm"):
        Path(str(cache.db_path) + suffix).unlink(missing_ok=True)
    cache.db_path.write_bytes(b"this is not sqlite" * 300)  # overwritten / half-copied

    compute = Counting()
    fresh = EmbeddingCache(tmp_path, "ns")
    np.testing.assert_array_equal(fresh.lookup(["a", "b"], compute), fake_vectors(["a", "b"]))
    assert fresh.stats.corrupt == 1 and compute.calls == [["a", "b"]]
    assert len(list(tmp_path.glob("embeddings/vectors.sqlite3.corrupt-*"))) == 1


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
        p.join(120)
        assert p.exitcode == 0
    cache = EmbeddingCache(tmp_path, "shared")
    got = cache.lookup(texts, Counting())
    assert (cache.stats.hits, cache.stats.misses, cache.stats.corrupt) == (400, 0, 0)
    np.testing.assert_array_equal(got, fake_vectors(texts))
    assert cache.count() == 400
    with sqlite3.connect(cache.db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _old_vec_file(folder: Path, text: str, vec: np.ndarray, damaged: bool = False) -> None:
    payload = np.ascontiguousarray(vec, dtype="<f4").tobytes()
    data = struct.pack("<4sI32s", b"QLE1", len(vec), hashlib.sha256(payload).digest()) + payload
    key = text_key(text)
    (folder / key[:2]).mkdir(parents=True, exist_ok=True)
    (folder / key[:2] / f"{key}.vec").write_bytes(data[:-4] if damaged else data)


def test_an_old_per_text_folder_is_read_once(tmp_path):
    old = tmp_path / "embeddings" / "ns"
    texts = ["old one", "old two", "broken"]
    for text, vec in zip(texts, fake_vectors(texts), strict=True):
        _old_vec_file(old, text, vec, damaged=text == "broken")
    compute = Counting()
    cache = EmbeddingCache(tmp_path, "ns")
    np.testing.assert_array_equal(cache.lookup(texts, compute), fake_vectors(texts))
    assert compute.calls == [["broken"]]  # the two valid files were imported, the damaged one recomputed
    assert EmbeddingCache(tmp_path, "other").count() == 0
