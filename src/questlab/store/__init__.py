"""The only module that talks to MLflow: runs, their metrics, tags, artifacts and models.

Runs live in an MLflow tracking store: SQLite under the working folder by default
(``questlab-store/mlflow.db``, artifacts in ``questlab-store/artifacts``), or any URI given with
``--store`` or ``$QUESTLAB_STORE``, a tracking server (``http://host:5000``) included.

Artifacts: a run being written is a local folder (:meth:`Store.writer`). In a local store that
folder *is* the run's artifact folder, so what a crashed run had recorded stays on disk; with a
remote artifact store it is a staging folder whose parts are logged through MLflow's API as they
are finished (:meth:`Store.sync`: each fold, then the outputs). Reading a run
(:meth:`Store.folder`) gives its artifact folder, or a cached download of it.

A local store is relocatable: artifact folders are found from the database's own location, never
from the absolute paths MLflow records (a writable moved store also has those paths rewritten,
so ``mlflow ui`` and ``runs:/`` URIs follow). Opening a store for reading writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from questlab.errors import RunNotFoundError, StoreError, UsageError
from questlab.rundir import MLFLOW_MODEL_DIR, TAG_COMPLETE, TAG_ERROR, TAG_KIND, TAG_MODEL, RunFolder
from questlab.store.backend import (
    ENV_HTTP_RETRIES,
    ENV_HTTP_TIMEOUT,
    configure_http,
    current_user,
    first_line,
    local_path,
    open_sqlite,
    resolve_store_uri,
)

EXPERIMENT = "questlab"

__all__ = ["TAG_COMPLETE", "TAG_ERROR", "TAG_KIND", "TAG_MODEL", "RunRecord", "RunStopped", "Store", "as_store"]

_DOWNLOAD_MARK = ".questlab-download.json"


class RunStopped(Exception):
    """Raised inside :meth:`Store.recording` to stop a run on purpose (e.g. a pruned trial).

    The run is marked KILLED with the reason kept as a tag, and the exception goes on to the caller.
    """


def as_store(store: str | Path | Store | None, create: bool = False) -> Store:
    """``store`` if it is a Store, else the store at that URI or folder (see :func:`resolve_store_uri`)."""
    return store if isinstance(store, Store) else Store(store, create=create)


@dataclass
class RunRecord:
    """One run as the store knows it; ``folder`` (and ``dir``) read its artifacts."""

    run_id: str
    name: str
    status: str  # RUNNING, FINISHED, FAILED, KILLED
    start_time: float
    end_time: float | None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    store: Store | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        return self.tags.get(TAG_KIND, "cv")

    @property
    def folder(self) -> RunFolder:
        """The run's artifacts as a local folder (downloaded once from a remote store)."""
        if self.store is None:
            raise RuntimeError(f"run {self.run_id}: a record without a store has no folder")
        return self.store.folder(self.run_id)

    @property
    def dir(self) -> Path:
        return self.folder.path


class Store:
    """A questlab view of an MLflow tracking store.

    ``create=False`` opens an existing store only (reading commands: a mistyped ``--store`` is an
    error, not a new empty store) and writes nothing to it.
    """

    def __init__(self, uri: str | Path | None = None, *, create: bool = True) -> None:
        import logging

        import mlflow  # slow import (~2 s): only when a store is actually used

        # MLflow logs "Creating initial MLflow database tables..." on every new store: noise on stderr
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        self.uri = resolve_store_uri(uri)
        self.root: Path | None = None  # a local store's folder (artifacts under root/artifacts)
        self._experiments: dict[str, str] = {}
        self._staged: dict[str, Path] = {}  # runs this process writes through a staging folder
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            self.root = db.parent
            self.client = open_sqlite(MlflowClient, self.uri, db, create)
        else:
            if urlparse(self.uri).scheme in ("http", "https"):
                configure_http()
            self.client = MlflowClient(tracking_uri=self.uri)
            try:
                self.client.search_experiments(max_results=1)
            except Exception as exc:  # any failure to talk to the server: one line, not a traceback
                raise StoreError(
                    f"cannot reach the tracking store {self.uri} ({first_line(exc)}); requests retried "
                    f"{os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '?')} times "
                    f"(set ${ENV_HTTP_RETRIES} / ${ENV_HTTP_TIMEOUT} to wait longer)"
                ) from None

    @property
    def is_local(self) -> bool:
        """True for a SQLite store whose artifacts are a folder beside the database."""
        return self.root is not None

    # --- experiments and runs ---------------------------------------------------------------
    def experiment_id(self, name: str = EXPERIMENT) -> str:
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                location = (self.root / "artifacts" / name).resolve().as_uri() if self.root else None
                exp_id = self.client.create_experiment(name, artifact_location=location)
            else:
                exp_id = exp.experiment_id
            self._experiments[name] = exp_id
        return self._experiments[name]

    def create_run(self, name: str, tags: dict[str, str], experiment: str = EXPERIMENT) -> str:
        """A new RUNNING run with questlab's tags and MLflow's standard ones (user, name, commit)."""
        from questlab.provenance import git_commit

        commit = git_commit()
        standard = {"mlflow.runName": name, "mlflow.user": current_user(), "mlflow.source.name": "questlab"}
        if commit != "unknown":
            standard["mlflow.source.git.commit"] = commit.removesuffix("+dirty")
        run = self.client.create_run(self.experiment_id(experiment), run_name=name, tags={**standard, **tags})
        return run.info.run_id

    def _artifact_path(self, run_id: str, artifact_uri: str) -> Path | None:
        """The run's local artifact folder, found from this store's location; None if remote."""
        path = local_path(artifact_uri)
        if path is None:
            return None
        parts = path.parts
        if self.root is not None and len(parts) >= 3 and parts[-1] == "artifacts" and parts[-2] == run_id:
            return self.root / "artifacts" / parts[-3] / run_id / "artifacts"
        return path

    def writer(self, run_id: str) -> RunFolder:
        """The local folder a run is written into; call :meth:`sync` for each finished part."""
        uri = self.client.get_run(run_id).info.artifact_uri
        path = self._artifact_path(run_id, uri)
        if path is None:
            path = self._staged.get(run_id) or self._cache_dir("staging", run_id)
            self._staged[run_id] = path
        path.mkdir(parents=True, exist_ok=True)
        return RunFolder(path, run_id)

    def sync(self, run_id: str, *parts: str) -> None:
        """Log the named files or folders of a staged run's folder through MLflow (remote stores).

        A local store's writer folder is the artifact folder itself: nothing to do.
        """
        staged = self._staged.get(run_id)
        if staged is None:
            return
        for part in parts:
            src = staged / part
            if src.is_dir():
                self.client.log_artifacts(run_id, str(src), part)
            elif src.exists():
                parent = str(Path(part).parent)
                self.client.log_artifact(run_id, str(src), None if parent == "." else parent)

    def folder(self, run_id: str, models: bool = False) -> RunFolder:
        """The run's artifacts as a local folder to read.

        Local store: the artifact folder. Remote: a download into questlab's cache, refreshed
        when the run changed; fold models (``models=True``) only when asked for.
        """
        run = self.client.get_run(run_id)
        path = self._artifact_path(run_id, run.info.artifact_uri)
        if path is not None:
            return RunFolder(path, run_id)
        if run_id in self._staged:  # written by this process: the staging folder is complete
            return RunFolder(self._staged[run_id], run_id)
        dst = self._cache_dir("downloads", run_id)
        mark = {"status": run.info.status, "end_time": run.info.end_time}
        mark_path = dst / _DOWNLOAD_MARK
        if mark_path.exists():
            old = json.loads(mark_path.read_text())
            same = old.get("end_time") == mark["end_time"] and old.get("status") == mark["status"] == "FINISHED"
            if same and (old.get("models") or not models):
                return RunFolder(dst, run_id)
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        self._download(run_id, "", dst, models)
        mark_path.write_text(json.dumps({**mark, "models": models}))
        return RunFolder(dst, run_id)

    def attach(self, run_id: str, text: str, name: str) -> Path:
        """Add a text file (a report) to a run's artifacts; return where it was written.

        A read-only store cannot take it: it is then written to the working folder instead.
        """
        path = self.folder(run_id).path / name
        try:
            path.write_text(text, encoding="utf-8")
        except OSError:
            path = Path.cwd() / f"{Path(name).stem}-{run_id[:8]}{Path(name).suffix}"
            path.write_text(text, encoding="utf-8")
            return path
        if self._artifact_path(run_id, self.client.get_run(run_id).info.artifact_uri) is None:
            self.client.log_artifact(run_id, str(path))
        return path

    def _download(self, run_id: str, path: str, dst: Path, models: bool) -> None:
        for entry in self.client.list_artifacts(run_id, path or None):
            name = entry.path.rsplit("/", 1)[-1]
            if entry.is_dir:
                fold_model = entry.path.startswith("folds/") and name == "model"
                if entry.path == MLFLOW_MODEL_DIR or (fold_model and not models):
                    continue  # the MLflow model duplicates the fold models; fold models only to predict
                self._download(run_id, entry.path, dst, models)
            else:
                target = dst / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_artifacts(run_id, entry.path, str(target.parent))

    def _cache_dir(self, kind: str, run_id: str) -> Path:
        from questlab.models.pretrained import cache_root

        key = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        return cache_root() / "store" / key / kind / run_id

    def resolve_id(self, run_id: str, experiment: str = EXPERIMENT) -> str:
        """Accept a full run id or a unique prefix of one (as git does for commits)."""
        try:
            return self.client.get_run(run_id).info.run_id
        except Exception:  # MLflow raises MlflowException (or its subclasses) for unknown ids
            pass
        matches = [r.run_id for r in self.list_runs(experiment) if r.run_id.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RunNotFoundError(f"no run {run_id!r} in store {self.uri} (list them with: questlab runs)")
        raise RunNotFoundError(f"run id prefix {run_id!r} matches {len(matches)} runs; give more characters")

    def get(self, run_id: str) -> RunRecord:
        run = self.client.get_run(self.resolve_id(run_id))
        return self._record(run)

    def list_runs(self, experiment: str = EXPERIMENT) -> list[RunRecord]:
        """All runs of the experiment, newest first."""
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        runs = self.client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=5000)
        return [self._record(r) for r in runs]

    def _record(self, run: Any) -> RunRecord:
        info, data = run.info, run.data
        return RunRecord(
            run_id=info.run_id,
            name=info.run_name or "",
            status=info.status,
            start_time=(info.start_time or 0) / 1000,
            end_time=(info.end_time / 1000) if info.end_time else None,
            tags={k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
            params=dict(data.params),
            metrics=dict(data.metrics),
            store=self,
        )

    # --- recording ----------------------------------------------------------------------------
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]  # NaN is not logged
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def reopen(self, run_id: str) -> None:
        """Mark a failed, killed or dead run as running again (``--resume``); refuse a live one."""
        from questlab.store import liveness

        record = self.get(run_id)
        alive = liveness.TAG_HEARTBEAT in record.tags and not liveness.is_dead(record.status, record.tags)
        if record.status == "RUNNING" and alive:
            raise UsageError(
                f"run {run_id} is still running ({liveness.describe(record.tags)}): "
                "resume it only once that process is gone"
            )
        self.client.update_run(run_id, status="RUNNING")

    @contextmanager
    def recording(self, run_id: str) -> Iterator[None]:
        """Mark the run FINISHED on success, KILLED on Ctrl-C / SIGTERM, FAILED on any error.

        A run is never left looking finished when it was not; the error is kept as a tag. While
        the block runs, the run holds its lock and a heartbeat (:mod:`questlab.store.liveness`).
        """
        from mlflow.tracking import MlflowClient

        from questlab.store import liveness

        record = self.get(run_id)
        with (
            liveness.run_lock(self.writer(run_id).path, run_id, record.tags),
            liveness.heartbeat(lambda: MlflowClient(tracking_uri=self.uri), run_id),
            self._marking_the_end(run_id),
        ):
            yield

    @contextmanager
    def _marking_the_end(self, run_id: str) -> Iterator[None]:
        try:
            yield
        except RunStopped as exc:
            self._fail(run_id, "KILLED", f"stopped: {exc}")
            raise
        except (KeyboardInterrupt, SystemExit) as exc:
            self._fail(run_id, "KILLED", f"interrupted ({type(exc).__name__})")
            raise
        except BaseException as exc:
            self._fail(run_id, "FAILED", f"{type(exc).__name__}: {exc}")
            raise
        else:
            self.finish(run_id, "FINISHED")

    def _fail(self, run_id: str, status: str, message: str) -> None:
        try:
            self.set_tags(run_id, {TAG_ERROR: message[:5000]})
        finally:
            self.finish(run_id, status)
