"""Content-addressed cache of text embeddings: one SQLite file for every encoder and setting.

Layout: ``<root>/embeddings/vectors.sqlite3``, table ``vectors(ns, key, dim, digest, vec)``;
``ns`` points to a namespace naming the encoder (fingerprint) and every setting that changes a
vector, ``key`` is the sha256 of the text (32 bytes), ``vec`` the float32 bytes. So another
run, another fold or another head never embeds the same text twice, and a change of encoder or
settings can never read stale vectors. One file instead of one per text: as files, the 11,968
texts of train + test take 49 MB of 4 KiB blocks for 20 MB of vectors.

- **concurrency**: WAL mode (readers never block the writer) and a busy timeout, so two runs can
  fill the cache at once; each batch of new vectors is one ``BEGIN IMMEDIATE`` transaction of
  ``INSERT OR IGNORE`` (the first writer of a key wins; both computed the same vector).
- **integrity**: each row holds the vector's dim and a blake2b digest of its float32 bytes. A
  row of the wrong size or digest is counted, deleted and recomputed, never read. A file that is
  not a database at all (truncated, overwritten) is moved aside and a new one started.

The per-text ``.vec`` files of questlab <= 0.3.0 (``<root>/embeddings/<namespace>/``) are read
into the database the first time their namespace is used, then ignored (delete them at will).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DB_NAME = "vectors.sqlite3"
BUSY_TIMEOUT_S = 60.0  # another process's transaction is a batch insert: seconds at most
CHUNK = 500  # keys per SELECT (SQLite's bound-parameter limit is 32766; small chunks stay fast)
SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS vectors (
    ns INTEGER NOT NULL REFERENCES namespaces(id), key BLOB NOT NULL, dim INTEGER NOT NULL,
    digest BLOB NOT NULL, vec BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS vectors_key ON vectors (ns, key);
"""
# A rowid table, not WITHOUT ROWID: a 1.6 KB vector row stays on its leaf page there, while a
# WITHOUT ROWID row that size spills to an overflow page (the file came out 2.8x larger).


def text_key(text: str) -> str:
    """sha256 of the text's UTF-8 bytes: the cache address of its vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _digest(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    corrupt_files: list[str] = field(default_factory=list)  # keys of dropped rows, or a moved-aside file


class EmbeddingCache:
    """Vectors of one encoder + settings (``namespace``) in ``<root>/embeddings/vectors.sqlite3``."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.folder = Path(root) / "embeddings"
        self.db_path = self.folder / DB_NAME
        self.namespace = namespace
        self.stats = CacheStats()

    # --- the database -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.folder.mkdir(parents=True, exist_ok=True)
        for attempt in range(2):
            conn = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("PRAGMA page_size=8192")  # before the first table; 5 vector rows per page, not 2
                self._wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses the last batch, never the file
                conn.executescript(SCHEMA)
                conn.execute("INSERT OR IGNORE INTO namespaces (name) VALUES (?)", [self.namespace])
                (self._ns,) = conn.execute("SELECT id FROM namespaces WHERE name = ?", [self.namespace]).fetchone()
                return conn
            except sqlite3.DatabaseError as exc:
                conn.close()
                if attempt or isinstance(exc, sqlite3.OperationalError):  # locked, disk full, read-only: not damage
                    raise
                self._move_aside(exc)
        raise AssertionError("unreachable")

    @staticmethod
    def _wal(conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent: once per file). The switch needs the file to itself
        and SQLite does not wait on the busy timeout for it, so while another process holds the
        file (creating it, writing a batch) it is retried here, up to the same timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _move_aside(self, exc: sqlite3.DatabaseError) -> None:
        """The file is not a readable database: keep it for inspection, start an empty one."""
        aside = self.db_path.with_name(f"{DB_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        self.db_path.replace(aside)
        for suffix in ("-wal", "-shm"):
            self.db_path.with_name(DB_NAME + suffix).unlink(missing_ok=True)
        self.stats.corrupt += 1
        self.stats.corrupt_files.append(f"{aside} ({exc})")

    def _read(self, conn: sqlite3.Connection, keys: list[str]) -> dict[str, np.ndarray]:
        found, bad = {}, []
        for i in range(0, len(keys), CHUNK):
            part = keys[i : i + CHUNK]
            marks = ",".join("?" * len(part))
            query = f"SELECT key, dim, digest, vec FROM vectors WHERE ns = ? AND key IN ({marks})"
            rows = conn.execute(query, [self._ns, *(bytes.fromhex(k) for k in part)])
            for key, dim, digest, blob in rows:
                if len(blob) != 4 * dim or _digest(blob) != digest:
                    bad.append(key.hex())
                else:
                    found[key.hex()] = np.frombuffer(blob, dtype="<f4").copy()
        if bad:
            self.stats.corrupt += len(bad)
            self.stats.corrupt_files += bad
            with _transaction(conn):
                conn.executemany(
                    "DELETE FROM vectors WHERE ns = ? AND key = ?", [(self._ns, bytes.fromhex(k)) for k in bad]
                )
        return found

    def _write(self, conn: sqlite3.Connection, items: Iterator[tuple[str, np.ndarray]]) -> None:
        rows = []
        for key, vec in items:
            blob = np.ascontiguousarray(vec, dtype="<f4").tobytes()
            rows.append((self._ns, bytes.fromhex(key), len(blob) // 4, _digest(blob), blob))
        with _transaction(conn):
            conn.executemany("INSERT OR IGNORE INTO vectors (ns, key, dim, digest, vec) VALUES (?, ?, ?, ?, ?)", rows)

    def _import_vec_files(self, conn: sqlite3.Connection) -> None:
        """Read a questlab <= 0.3.0 per-text folder of this namespace once (its first use here)."""
        old = self.folder / self.namespace
        if not old.is_dir():
            return
        if conn.execute("SELECT 1 FROM vectors WHERE ns = ? LIMIT 1", [self._ns]).fetchone():
            return
        vectors = ((p.stem, _decode_vec_file(p.read_bytes())) for p in old.glob("??/*.vec"))
        self._write(conn, ((k, v) for k, v in vectors if v is not None))

    # --- the interface the embedding model uses ----------------------------------------------
    def count(self) -> int:
        """Rows stored under this namespace."""
        with contextlib.closing(self._connect()) as conn:
            return conn.execute("SELECT COUNT(*) FROM vectors WHERE ns = ?", [self._ns]).fetchone()[0]

    def lookup(self, texts: Sequence[str], compute: Callable[[list[str]], np.ndarray]) -> np.ndarray:
        """Vectors for ``texts`` in order: cached ones read, the rest computed once each and stored.

        ``compute`` gets the distinct missing texts and returns their (m, dim) vectors.
        """
        keys = [text_key(t) for t in texts]
        distinct = dict(zip(keys, texts, strict=True))
        try:
            found = self._lookup(distinct, compute)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) or not self.db_path.exists():
                raise
            self._move_aside(exc)  # damage found past the header (a malformed page): start afresh once
            found = self._lookup(distinct, compute)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys])

    def _lookup(self, distinct: dict[str, str], compute: Callable[[list[str]], np.ndarray]) -> dict[str, np.ndarray]:
        with contextlib.closing(self._connect()) as conn:
            self._import_vec_files(conn)
            found = self._read(conn, list(distinct))
            missing = {k: t for k, t in distinct.items() if k not in found}
            if missing:
                vectors = np.asarray(compute(list(missing.values())), dtype=np.float32)
                if vectors.shape[0] != len(missing):
                    raise ValueError(f"compute returned {vectors.shape[0]} vectors for {len(missing)} texts")
                self._write(conn, zip(missing, vectors, strict=True))
                found.update(zip(missing, vectors, strict=True))
        self.stats.hits += len(distinct) - len(missing)
        self.stats.misses += len(missing)
        return found


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error): takes the write lock up front, so two
    writers queue on the busy timeout instead of one failing on a lock upgrade."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


_VEC_HEADER = struct.Struct("<4sI32s")  # questlab <= 0.3.0 .vec files: magic, dim, sha256 of the payload


def _decode_vec_file(data: bytes) -> np.ndarray | None:
    if len(data) < _VEC_HEADER.size:
        return None
    magic, dim, digest = _VEC_HEADER.unpack_from(data)
    payload = data[_VEC_HEADER.size :]
    if magic != b"QLE1" or len(payload) != 4 * dim or hashlib.sha256(payload).digest() != digest:
        return None
    return np.frombuffer(payload, dtype="<f4").copy()
