"""The MLflow tracking side of a store: opening it, experiments, runs, their params, metrics and tags.

Part of :mod:`questlab.store` (the only MLflow tracking client). A :class:`Tracking` opens the
tracking store at a URI (SQLite under the working folder by default, or a tracking server; see
:mod:`questlab.store.backend`), creates runs, finds them (by id, by a unique id prefix, or by
tags), reads them as :class:`RunRecord` and records into them. Where a run's files live is
:mod:`questlab.store.artifacts`.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from questlab.errors import RunNotFoundError, StoreError, UsageError
from questlab.rundir import TAG_KIND, RunFolder
from questlab.store.backend import (
    ENV_HTTP_RETRIES,
    ENV_HTTP_TIMEOUT,
    check_sqlite,
    configure_http,
    current_user,
    first_line,
    open_sqlite,
    resolve_store_uri,
)

if TYPE_CHECKING:
    from questlab.store import Store

EXPERIMENT = "questlab"

__all__ = ["EXPERIMENT", "RunRecord", "Tracking"]


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
        """The run's kind tag (``cv`` when untagged)."""
        return self.tags.get(TAG_KIND, "cv")

    @property
    def folder(self) -> RunFolder:
        """The run's artifacts as a local folder (downloaded once from a remote store)."""
        if self.store is None:
            raise RuntimeError(f"run {self.run_id}: a record without a store has no folder")
        return self.store.folder(self.run_id)

    @property
    def dir(self) -> Path:
        """The path of :attr:`folder`."""
        return self.folder.path


def _mlflow_client() -> Any:
    """MLflow's client class (a slow import: only when MLflow itself is needed)."""
    import logging

    from mlflow.tracking import MlflowClient

    # MLflow logs "Creating initial MLflow database tables..." on every new store: noise on stderr
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    return MlflowClient


class Tracking:
    """An MLflow tracking client on one store, speaking in questlab's terms.

    ``create=False`` opens an existing store only and writes nothing to it. ``reader`` is what
    the records this returns read their artifacts through (the :class:`~questlab.store.Store`
    this is part of).
    """

    def __init__(self, uri: str | Path | None = None, *, create: bool = True, reader: Store | None = None) -> None:
        self.uri = resolve_store_uri(uri)
        self.root: Path | None = None  # a local store's folder (artifacts under root/artifacts)
        self.reader = reader
        self._experiments: dict[str, str] = {}
        self._client: Any = None
        self._db: Path | None = None
        self.read_only = False
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            self.root, self._db = db.parent, db
            if create:
                self._client = open_sqlite(_mlflow_client(), self.uri, db, create)
            else:
                # Reading commands (``runs``, ``findings``) list runs straight from SQLite (see
                # ``list_runs``): MLflow (~1.5 s to import and open) loads on first other use.
                check_sqlite(db, create)
            # a read-only mount or copy (a Kaggle dataset): read, never recorded into
            self.read_only = db.exists() and not (os.access(db.parent, os.W_OK) and os.access(db, os.W_OK))
        else:
            if urlparse(self.uri).scheme in ("http", "https"):
                configure_http()
            self._client = _mlflow_client()(tracking_uri=self.uri)
            try:
                self.client.search_experiments(max_results=1)
            except Exception as exc:  # any failure to talk to the server: one line, not a traceback
                raise StoreError(
                    f"cannot reach the tracking store {self.uri} ({first_line(exc)}); requests retried "
                    f"{os.environ.get('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '?')} times "
                    f"(set ${ENV_HTTP_RETRIES} / ${ENV_HTTP_TIMEOUT} to wait longer)"
                ) from None

    @property
    def client(self) -> Any:
        """The MLflow client on this store (opened on first use for a store opened to read)."""
        if self._client is None:
            assert self._db is not None
            self._client = open_sqlite(_mlflow_client(), self.uri, self._db, False)
        return self._client

    def new_client(self) -> Any:
        """A fresh MLflow client on this store (for another thread, e.g. the heartbeat)."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def check_writable(self, what: str) -> None:
        """Refuse, in one line, to ``what`` in a read-only local store."""
        if self.read_only:
            raise StoreError(
                f"the store at {self.root} is read-only (a read-only mount or copy): it can be read, "
                f"not written, so cannot {what} there; give a writable --store (or a copy of it)"
            )

    # --- experiments and runs ---------------------------------------------------------------
    def experiment_id(self, name: str = EXPERIMENT) -> str:
        """The id of experiment ``name``, created (artifacts beside a local store) if missing."""
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

        self.check_writable("record a new run")

        commit = git_commit()
        standard = {"mlflow.runName": name, "mlflow.user": current_user(), "mlflow.source.name": "questlab"}
        if commit != "unknown":
            standard["mlflow.source.git.commit"] = commit.removesuffix("+dirty")
        from questlab.store import liveness

        # Who creates it, from the start: a process killed before its first heartbeat leaves a
        # run that shows DEAD (resumable), not one RUNNING for ever.
        alive = liveness.first_beat()
        run = self.client.create_run(self.experiment_id(experiment), run_name=name, tags={**standard, **alive, **tags})
        return run.info.run_id

    def run_info(self, run_id: str) -> Any:
        """MLflow's ``RunInfo`` of a run given by its full id (artifact URI, status, end time)."""
        return self.client.get_run(run_id).info

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
        """The run with this id or unique id prefix."""
        run = self.client.get_run(self.resolve_id(run_id))
        return self._record(run)

    def list_runs(self, experiment: str = EXPERIMENT) -> list[RunRecord]:
        """All runs of the experiment, newest first."""
        if self._client is None and self._db is not None:
            try:
                return self._list_runs_sqlite(experiment)
            except sqlite3.Error:  # a schema this reader does not know: ask MLflow
                pass
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            return []
        runs = self.client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=5000)
        return [self._record(r) for r in runs]

    def _list_runs_sqlite(self, experiment: str) -> list[RunRecord]:
        """``list_runs`` read from a local store's tables, read-only, without importing MLflow.

        The same rows as MLflow's ``search_runs`` (active runs, newest first, latest metrics).
        """
        assert self._db is not None
        uri = f"{self._db.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
            exp = con.execute("SELECT experiment_id FROM experiments WHERE name = ?", (experiment,)).fetchone()
            if exp is None:
                return []
            where = "SELECT run_uuid FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active'"
            rows = con.execute(
                "SELECT run_uuid, name, status, start_time, end_time FROM runs WHERE experiment_id = ? "
                "AND lifecycle_stage = 'active' ORDER BY start_time DESC, run_uuid LIMIT 5000",
                (exp[0],),
            ).fetchall()
            tags: dict[str, dict[str, str]] = {r[0]: {} for r in rows}
            params: dict[str, dict[str, str]] = {r[0]: {} for r in rows}
            metrics: dict[str, dict[str, float]] = {r[0]: {} for r in rows}
            for run_id, key, value in con.execute(
                f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({where})", exp
            ):
                tags.get(run_id, {})[key] = value
            for run_id, key, value in con.execute(
                f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({where})", exp
            ):
                params.get(run_id, {})[key] = value
            for run_id, key, value, is_nan in con.execute(
                f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({where})", exp
            ):
                metrics.get(run_id, {})[key] = math.nan if is_nan else float(value)
        return [
            RunRecord(
                run_id=run_id,
                name=name or "",
                status=status,
                start_time=(start or 0) / 1000,
                end_time=(end / 1000) if end else None,
                tags={k: v for k, v in tags[run_id].items() if not k.startswith("mlflow.")},
                params=params[run_id],
                metrics=metrics[run_id],
                store=self.reader,
            )
            for run_id, name, status, start, end in rows
        ]

    def find_run(self, tags: dict[str, str], experiment: str = EXPERIMENT) -> str | None:
        """The id of a run of the experiment having all these tags (the newest), or None.

        Tag values are compared as strings and must not contain a single quote.
        """
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = self.client.search_runs([self.experiment_id(experiment)], filter_string=where, max_results=1)
        return found[0].info.run_id if found else None

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
            store=self.reader,
        )

    # --- recording ----------------------------------------------------------------------------
    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Log params (values as text, cut at 6000 characters), 100 a request."""
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i : i + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Log metrics at ``step`` (NaN values are left out), 500 a request."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v == v]  # NaN is not logged
        for i in range(0, len(items), 500):
            self.client.log_batch(run_id, metrics=items[i : i + 500])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a run (values as text)."""
        for k, v in tags.items():
            self.client.set_tag(run_id, k, str(v))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """Mark the run ended with ``status`` (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(run_id, status=status)

    def delete_run(self, run_id: str) -> None:
        """Delete a run (by its full id): MLflow marks it deleted, listings no longer show it."""
        self.check_writable(f"delete run {run_id}")
        self.client.delete_run(run_id)

    def reopen(self, run_id: str) -> None:
        """Mark a failed, killed or dead run as running again (``--resume``); refuse a live one."""
        from questlab.store import liveness

        self.check_writable(f"resume run {run_id}")
        record = self.get(run_id)
        alive = liveness.TAG_HEARTBEAT in record.tags and not liveness.is_dead(record.status, record.tags)
        if record.status == "RUNNING" and alive:
            raise UsageError(
                f"run {run_id} is still running ({liveness.describe(record.tags)}): "
                "resume it only once that process is gone"
            )
        self.client.update_run(run_id, status="RUNNING")
