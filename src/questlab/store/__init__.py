"""The only code that talks to MLflow as a tracking client: runs, their metrics, tags and artifacts.

Runs live in an MLflow tracking store: SQLite under the working folder by default
(``questlab-store/mlflow.db``, artifacts in ``questlab-store/artifacts``), or any URI given with
``--store`` or ``$QUESTLAB_STORE``, a tracking server (``http://host:5000``) included.

:class:`Store` is the one object the rest of questlab uses; it is made of the package's parts:

- :mod:`questlab.store.backend`: where a store lives and how it is opened (URIs, SQLite creation
  and relocation, HTTP settings);
- :mod:`questlab.store.tracking`: the MLflow tracking client side (experiments, creating runs,
  finding them by id, id prefix or tags, :class:`RunRecord`, params, metrics, tags, ending runs);
- :mod:`questlab.store.artifacts`: where a run's files live. A run being written is a local folder
  (:meth:`Store.writer`). In a local store that folder *is* the run's artifact folder, so what a
  crashed run had recorded stays on disk; with a remote artifact store it is a staging folder
  whose parts are logged through MLflow's API as they are finished (:meth:`Store.sync`: each fold,
  then the outputs). Reading a run (:meth:`Store.folder`) gives its artifact folder, or a cached
  download of it;
- :mod:`questlab.store.liveness`: who runs a run (lock, host, pid, heartbeat); :meth:`Store.recording`
  holds them while a run is recorded and marks how it ended.

A local store is relocatable: artifact folders are found from the database's own location, never
from the absolute paths MLflow records (a writable moved store also has those paths rewritten,
so ``mlflow ui`` and ``runs:/`` URIs follow). Opening a store for reading writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from questlab.errors import StoreError, StoreUnreachable
from questlab.rundir import TAG_COMPLETE, TAG_ERROR, TAG_KIND, TAG_MODEL, RunFolder
from questlab.store import liveness
from questlab.store.artifacts import Artifacts
from questlab.store.backend import unreachable_kind
from questlab.store.tracking import EXPERIMENT, RunRecord, Tracking

__all__ = [
    "EXPERIMENT",
    "TAG_COMPLETE",
    "TAG_ERROR",
    "TAG_KIND",
    "TAG_MODEL",
    "RunRecord",
    "RunStopped",
    "Store",
    "StoreError",
    "as_store",
]


class RunStopped(Exception):
    """Raised inside :meth:`Store.recording` to stop a run on purpose (e.g. a pruned trial).

    The run is marked KILLED with the reason kept as a tag, and the exception goes on to the caller.
    """


class _LazyClient:
    """The tracking client, opened when first used (listing a local store needs no MLflow)."""

    def __init__(self, tracking: Tracking) -> None:
        self._tracking = tracking

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracking.client, name)


def as_store(store: str | Path | Store | None, create: bool = False) -> Store:
    """``store`` if it is a Store, else the store at that URI or folder.

    See :func:`~questlab.store.backend.resolve_store_uri` for what a URI or folder may be.
    """
    return store if isinstance(store, Store) else Store(store, create=create)


class Store:
    """A questlab view of an MLflow tracking store: its :class:`Tracking` and :class:`Artifacts`.

    ``create=False`` opens an existing store only (reading commands: a mistyped ``--store`` is an
    error, not a new empty store) and writes nothing to it.
    """

    def __init__(self, uri: str | Path | None = None, *, create: bool = True) -> None:
        self.tracking = Tracking(uri, create=create, reader=self)
        self.artifacts = Artifacts(_LazyClient(self.tracking), self.tracking.uri, self.tracking.root)

    @property
    def uri(self) -> str:
        """The store's tracking URI (``sqlite:///…/mlflow.db`` for a local store)."""
        return self.tracking.uri

    @property
    def root(self) -> Path | None:
        """A local store's folder (artifacts under ``root/artifacts``); None for a remote store."""
        return self.tracking.root

    @property
    def client(self) -> Any:
        """The underlying ``MlflowClient`` (for tests and inspection; questlab code uses the methods)."""
        return self.tracking.client

    @property
    def is_local(self) -> bool:
        """True for a SQLite store whose artifacts are a folder beside the database."""
        return self.root is not None

    # --- experiments and runs (questlab.store.tracking) ---------------------------------------
    def experiment_id(self, name: str = EXPERIMENT) -> str:
        """The id of experiment ``name``, created if missing."""
        return self.tracking.experiment_id(name)

    def create_run(self, name: str, tags: dict[str, str], experiment: str = EXPERIMENT) -> str:
        """A new RUNNING run with questlab's tags and MLflow's standard ones (user, name, commit)."""
        return self.tracking.create_run(name, tags, experiment)

    def resolve_id(self, run_id: str, experiment: str = EXPERIMENT) -> str:
        """Accept a full run id or a unique prefix of one (as git does for commits)."""
        return self.tracking.resolve_id(run_id, experiment)

    def get(self, run_id: str) -> RunRecord:
        """The run with this id or unique id prefix."""
        return self.tracking.get(run_id)

    def list_runs(self, experiment: str = EXPERIMENT) -> list[RunRecord]:
        """All runs of the experiment, newest first."""
        return self.tracking.list_runs(experiment)

    def find_run(self, tags: dict[str, str], experiment: str = EXPERIMENT) -> str | None:
        """The id of a run of the experiment having all these tags (the newest), or None."""
        return self.tracking.find_run(tags, experiment)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log params (values as text)."""
        self.tracking.log_params(run_id, params)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Log metrics at ``step`` (NaN values are left out)."""
        self.tracking.log_metrics(run_id, metrics, step)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a run."""
        self.tracking.set_tags(run_id, tags)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark the run ended with ``status`` (FINISHED, FAILED or KILLED)."""
        self.tracking.finish(run_id, status)

    def reopen(self, run_id: str) -> None:
        """Mark a failed, killed or dead run as running again (``--resume``); refuse a live one."""
        self.tracking.reopen(run_id)

    def delete_run(self, run_id: str) -> None:
        """Delete a run given by its full id (MLflow marks it deleted; listings leave it out)."""
        self.tracking.delete_run(run_id)

    # --- a run's files (questlab.store.artifacts) ---------------------------------------------
    def writer(self, run_id: str) -> RunFolder:
        """The local folder a run is written into; call :meth:`sync` for each finished part."""
        return self.artifacts.writer(run_id)

    def sync(self, run_id: str, *parts: str) -> None:
        """Log the named parts of a run's writer folder through MLflow (remote stores only).

        ``parts`` are the run format's names from :mod:`questlab.rundir`: files or folders relative
        to the run folder, e.g. ``run.json`` (``META_FILE``) or ``folds/fold_0`` (``fold_part(0)``).
        A local store's writer folder is the artifact folder itself: nothing to do.
        """
        self.artifacts.sync(run_id, *parts)

    def folder(self, run_id: str, models: bool = False) -> RunFolder:
        """The run's artifacts as a local folder to read (a cached download from a remote store;
        fold models only with ``models=True``)."""
        return self.artifacts.folder(run_id, models)

    def attach(self, run_id: str, text: str, name: str) -> Path:
        """Add a text file (a report) to a run's artifacts; return where it was written (the
        working folder when the store is read-only)."""
        return self.artifacts.attach(run_id, text, name)

    # --- recording ----------------------------------------------------------------------------
    @contextmanager
    def recording(self, run_id: str) -> Iterator[None]:
        """Mark the run FINISHED on success, KILLED on Ctrl-C / SIGTERM, FAILED on any error.

        A run is never left looking finished when it was not; the error is kept as a tag. While
        the block runs, the run holds its lock and a heartbeat (:mod:`questlab.store.liveness`).
        """
        record = self.get(run_id)
        with (
            liveness.run_lock(self.writer(run_id).path, run_id, record.tags),
            liveness.heartbeat(self.tracking.new_client, run_id),
            self._marking_the_end(run_id, record.kind),
        ):
            yield

    @contextmanager
    def _marking_the_end(self, run_id: str, kind: str = "cv") -> Iterator[None]:
        try:
            yield
        except RunStopped as exc:
            self._fail(run_id, "KILLED", f"stopped: {exc}")
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            self._fail(run_id, "KILLED", f"interrupted ({type(exc).__name__})")
            raise
        except BaseException as exc:
            interrupt = liveness.interrupted_by(exc)
            if interrupt is not None:  # a signal that landed inside MLflow's own calls
                self._fail(run_id, "KILLED", "interrupted (KeyboardInterrupt)")
                raise interrupt from None
            unreachable = unreachable_kind(exc)
            if unreachable is None:
                self._fail(run_id, "FAILED", f"{type(exc).__name__}: {exc}")
                raise
            # Marking the run would wait for the server again: it stays RUNNING, DEAD once this
            # process is gone (its heartbeat), and resumable.
            resume = f": resume it with questlab run --resume {run_id} --train TRAIN.csv" if kind == "cv" else ""
            raise StoreUnreachable(
                f"the tracking store {self.uri} stopped answering while run {run_id} was recorded "
                f"({unreachable}); what was recorded is kept{resume}"
            ) from None
        else:
            self.finish(run_id, "FINISHED")

    def _fail(self, run_id: str, status: str, message: str) -> None:
        try:
            self.set_tags(run_id, {TAG_ERROR: message[:5000]})
        finally:
            self.finish(run_id, status)
