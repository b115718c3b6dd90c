"""Content-addressed on-disk cache of text embeddings.

Layout: ``<root>/embeddings/<namespace>/<h[:2]>/<h>.vec`` where ``namespace`` names the encoder
(fingerprint) and every setting that changes a vector, and ``h`` is the sha256 of the text. So
another run, another fold or another head never embeds the same text twice, and a change of
encoder or settings can never read stale vectors.

One file per text keeps the two hard properties simple:

- **concurrency**: a writer writes a private temp file in the same folder and ``os.replace``s it
  into place (atomic on POSIX). Two runs filling the cache at once at worst both compute a
  vector and the last rename wins; a reader sees a complete old file, a complete new one, or none.
- **integrity**: each file is ``MAGIC | dim (u32) | sha256(payload) | payload (float32)``. A file
  of the wrong size, wrong magic or wrong checksum (truncated, garbled, half-copied) is counted,
  deleted and recomputed, never read.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"QLE1"
_HEADER = struct.Struct("<4sI32s")  # magic, dim, sha256 of the payload


def text_key(text: str) -> str:
    """sha256 of the text's UTF-8 bytes: the cache address of its vector."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    corrupt_files: list[str] = field(default_factory=list)


class EmbeddingCache:
    """Vectors of one encoder + settings (``namespace``) under ``root``."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.folder = Path(root) / "embeddings" / namespace
        self.stats = CacheStats()

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.vec"

    def get(self, key: str) -> np.ndarray | None:
        """The cached vector for ``key``, or None if absent or corrupt (a corrupt file is deleted)."""
        p = self.path(key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        vec = _decode(data)
        if vec is None:
            self.stats.corrupt += 1
            self.stats.corrupt_files.append(str(p))
            p.unlink(missing_ok=True)
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        """Write atomically: temp file in the same folder, fsync-free, then ``os.replace``."""
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{key[:8]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(_encode(vec))
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def lookup(
        self,
        texts: Sequence[str],
        compute: Callable[[list[str]], np.ndarray],
    ) -> np.ndarray:
        """Vectors for ``texts`` in order: cached ones read, the rest computed once each and stored.

        ``compute`` gets the distinct missing texts and returns their (m, dim) vectors.
        """
        keys = [text_key(t) for t in texts]
        found: dict[str, np.ndarray] = {}
        missing: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in missing:
                continue
            vec = self.get(key)
            if vec is None:
                missing[key] = text
            else:
                found[key] = vec
        self.stats.hits += len(found)
        self.stats.misses += len(missing)
        if missing:
            vectors = np.asarray(compute(list(missing.values())), dtype=np.float32)
            if vectors.shape[0] != len(missing):
                raise ValueError(f"compute returned {vectors.shape[0]} vectors for {len(missing)} texts")
            for key, vec in zip(missing, vectors, strict=True):
                self.put(key, vec)
                found[key] = vec
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys])


def _encode(vec: np.ndarray) -> bytes:
    payload = np.ascontiguousarray(vec, dtype="<f4").tobytes()
    return _HEADER.pack(MAGIC, vec.shape[0], hashlib.sha256(payload).digest()) + payload


def _decode(data: bytes) -> np.ndarray | None:
    if len(data) < _HEADER.size:
        return None
    magic, dim, digest = _HEADER.unpack_from(data)
    payload = data[_HEADER.size :]
    if magic != MAGIC or len(payload) != 4 * dim or hashlib.sha256(payload).digest() != digest:
        return None
    return np.frombuffer(payload, dtype="<f4").copy()
