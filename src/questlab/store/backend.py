"""Where a store lives and how it is opened: URIs, SQLite creation and relocation, HTTP settings.

Part of :mod:`questlab.store` (the only MLflow tracking client).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from questlab.errors import StoreError

ENV_STORE = "QUESTLAB_STORE"
ENV_HTTP_RETRIES = "QUESTLAB_HTTP_RETRIES"  # retries of a failed request to a tracking server
ENV_HTTP_TIMEOUT = "QUESTLAB_HTTP_TIMEOUT"  # seconds before one request to a tracking server fails
DEFAULT_HTTP_RETRIES = 2
DEFAULT_HTTP_TIMEOUT = 15
DEFAULT_STORE_DIR = "questlab-store"


def resolve_store_uri(uri: str | Path | None = None) -> str:
    """``uri``, else ``$QUESTLAB_STORE``, else SQLite under ./questlab-store (absolute)."""
    uri = str(uri) if uri else os.environ.get(ENV_STORE)
    if uri:
        if "://" not in uri and not uri.startswith("sqlite:"):
            # A bare path: a SQLite file (*.db), or a folder holding (or to hold) mlflow.db.
            path = Path(uri).expanduser().resolve()
            return f"sqlite:///{path if path.suffix == '.db' else path / 'mlflow.db'}"
        return uri
    return f"sqlite:///{(Path.cwd() / DEFAULT_STORE_DIR / 'mlflow.db').resolve()}"


def local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def configure_http() -> None:
    """Fail fast on an unreachable server: MLflow's own defaults retry for minutes.

    MLflow's variables win where the user set them; questlab's set the defaults.
    """
    retries = os.environ.get(ENV_HTTP_RETRIES, str(DEFAULT_HTTP_RETRIES))
    timeout = os.environ.get(ENV_HTTP_TIMEOUT, str(DEFAULT_HTTP_TIMEOUT))
    for name, value in ((ENV_HTTP_RETRIES, retries), (ENV_HTTP_TIMEOUT, timeout)):
        if not value.isdigit():
            raise StoreError(f"${name}={value!r}: give a whole number")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", retries)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", timeout)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_API_FAILED = re.compile(r"API request to \S+ failed with (timeout )?exception")


def unreachable_kind(exc: BaseException) -> str | None:
    """``ConnectionError`` or ``Timeout`` when ``exc`` comes of a tracking server that stopped
    answering (refused, reset, no answer in time, errors on every retry); else None."""
    try:
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import RetryError, Timeout
    except ImportError:  # no MLflow, so no tracking server
        return None
    for e in _chain(exc):
        if isinstance(e, Timeout):
            return "Timeout"
        if isinstance(e, RequestsConnectionError | RetryError):
            return "ConnectionError"
        found = _API_FAILED.search(str(e)) if type(e).__name__ == "MlflowException" else None
        if found:
            return "Timeout" if found.group(1) else "ConnectionError"
    return None


def is_read_only_error(exc: BaseException) -> bool:
    """SQLite refusing to write (a store on a read-only mount, or a read-only copy)."""
    return any("readonly database" in str(e) or "read-only file system" in str(e).lower() for e in _chain(exc))


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return str(os.getuid())


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created) for the block."""
    import fcntl

    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_mlflow_tables(db: Path) -> None:
    """Refuse, before MLflow adds its tables, an SQLite database that is not an MLflow store."""
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as exc:
        raise StoreError(f"{db}: cannot be read as an SQLite database ({exc})") from None
    if tables and "experiments" not in tables:
        raise StoreError(f"{db} is an SQLite database of something else (no MLflow tables): give the store's mlflow.db")


def check_sqlite(db: Path, create: bool) -> None:
    """Refuse, in one line, what cannot be this store's database (before MLflow touches it)."""
    if not db.exists():
        if not create:
            raise StoreError(
                f"no questlab store at {db.parent} (no {db.name}): nothing was recorded there; "
                f"check --store or ${ENV_STORE}"
            )
        db.parent.mkdir(parents=True, exist_ok=True)
    elif db.is_dir():
        raise StoreError(f"{db} is a folder, not an MLflow SQLite database")
    else:
        with db.open("rb") as fh:
            head = fh.read(16)
        if head and head != b"SQLite format 3\x00":
            raise StoreError(f"{db} is not an SQLite database, so not an MLflow store (give another --store)")
        if not create and head:
            _check_mlflow_tables(db)


def open_sqlite(client_class: Any, uri: str, db: Path, create: bool) -> Any:
    check_sqlite(db, create)
    writable = os.access(db.parent, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))
    try:
        if writable:
            # MLflow creates and migrates a new database on first use; two processes doing it at
            # once (DDP ranks, two runs started together) collide ("duplicate column name").
            with _exclusive(db.with_name(db.name + ".lock")):
                client = client_class(tracking_uri=uri)
                client.search_experiments(max_results=1)  # forces the schema into being
                relocate(db)
        else:  # a read-only copy (e.g. a Kaggle dataset): read as it is
            client = client_class(tracking_uri=uri)
            client.search_experiments(max_results=1)
    except StoreError:
        raise
    except Exception as exc:
        raise StoreError(f"{db}: cannot be opened as an MLflow store ({first_line(exc)})") from None
    return client


def relocate(db: Path) -> None:
    """Point recorded artifact locations at this store's folder after it was moved or copied.

    questlab never follows those paths itself (see :meth:`.Artifacts.local_dir`); rewriting them
    keeps MLflow's own readers (``mlflow ui``, ``runs:/`` model URIs) working too.
    """
    new_root = (db.parent / "artifacts").resolve().as_uri()
    with sqlite3.connect(db) as con:
        for name, location in con.execute("SELECT name, artifact_location FROM experiments").fetchall():
            if not location or not location.startswith("file://") or not location.endswith(f"/{name}"):
                continue  # not laid out by questlab: leave it alone
            old_root = location.removesuffix(f"/{name}")
            if old_root == new_root or not old_root.endswith("/artifacts"):
                continue
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
                con.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} LIKE ?",
                    (new_root, len(old_root) + 1, old_root + "/%"),
                )
