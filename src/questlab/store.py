"""The only module that talks to MLflow: runs, their metrics, tags and artifact folders.

Runs live in an MLflow tracking store: SQLite under the working folder by default
(``questlab-store/mlflow.db``, artifacts in ``questlab-store/artifacts``), or any URI given with
``--store`` or ``$QUESTLAB_STORE``. ``mlflow ui --backend-store-uri <uri>`` shows them. questlab
writes a run's artifacts straight into its local artifact folder as it goes, so what a crashed
run had recorded stays on disk; remote artifact stores are therefore not supported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

ENV_STORE = "QUESTLAB_STORE"
DEFAULT_STORE_DIR = "questlab-store"
EXPERIMENT = "questlab"
# Findings live in their own experiment of the same store: they travel with the runs, and
# deleting (or failing) a CV run never touches them.
FINDINGS_EXPERIMENT = "questlab-findings"
MAX_FINDING_CHARS = 5000  # MLflow tag values are capped (5000 chars in older MLflow versions)

# Tags questlab sets on every run.
TAG_KIND = "questlab.kind"  # "cv" (a CV run) or "ensemble"
TAG_MODEL = "questlab.model"
TAG_COMPLETE = "questlab.complete"  # "true" once every fold of the run is in
TAG_ERROR = "questlab.error"


class RunNotFoundError(LookupError):
    """No run matches the given id (or prefix)."""


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


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


@dataclass
class RunRecord:
    """One run as the store knows it."""

    run_id: str
    name: str
    status: str  # RUNNING, FINISHED, FAILED, KILLED
    start_time: float
    end_time: float | None
    dir: Path
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.tags.get(TAG_KIND, "cv")


@dataclass
class Finding:
    """One entry of the findings log: what was learned, when, about which runs."""

    finding_id: str
    text: str
    time: float
    runs: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    source: str = "user"  # "user" or "diagnose"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.finding_id,
            "text": self.text,
            "time": self.time,
            "runs": self.runs,
            "tags": self.tags,
            "source": self.source,
        }


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


class Store:
    """A questlab view of an MLflow tracking store."""

    def __init__(self, uri: str | Path | None = None) -> None:
        import mlflow  # slow import (~2 s): only when a store is actually used
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        self.uri = resolve_store_uri(uri)
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri.removeprefix("sqlite:///"))
            db.parent.mkdir(parents=True, exist_ok=True)
            self.artifact_root: str | None = (db.parent / "artifacts").resolve().as_uri()
            # MLflow creates and migrates a new database on first use; two processes doing it at
            # once (DDP ranks, two runs started together) collide ("duplicate column name").
            with _exclusive(db.with_name(db.name + ".lock")):
                self.client = MlflowClient(tracking_uri=self.uri)
                self.client.search_experiments(max_results=1)  # forces the schema into being
        else:
            self.artifact_root = None
            self.client = MlflowClient(tracking_uri=self.uri)
        self._experiments: dict[str, str] = {}

    # --- experiments and runs ---------------------------------------------------------------
    def experiment_id(self, name: str = EXPERIMENT) -> str:
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                exp_id = self.client.create_experiment(
                    name, artifact_location=f"{self.artifact_root}/{name}" if self.artifact_root else None
                )
            else:
                exp_id = exp.experiment_id
            self._experiments[name] = exp_id
        return self._experiments[name]

    def create_run(self, name: str, tags: dict[str, str], experiment: str = EXPERIMENT) -> str:
        run = self.client.create_run(self.experiment_id(experiment), run_name=name, tags=tags)
        self.run_dir(run.info.run_id).mkdir(parents=True, exist_ok=True)
        return run.info.run_id

    def run_dir(self, run_id: str) -> Path:
        """The run's local artifact folder (questlab writes into it directly)."""
        uri = self.client.get_run(run_id).info.artifact_uri
        path = _local_path(uri)
        if path is None:
            raise RuntimeError(f"run {run_id} stores artifacts at {uri}: questlab needs a local artifact folder")
        return path

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
        path = _local_path(info.artifact_uri)
        return RunRecord(
            run_id=info.run_id,
            name=info.run_name or "",
            status=info.status,
            start_time=(info.start_time or 0) / 1000,
            end_time=(info.end_time / 1000) if info.end_time else None,
            dir=path if path is not None else Path(info.artifact_uri),
            tags={k: v for k, v in data.tags.items() if not k.startswith("mlflow.")},
            params=dict(data.params),
            metrics=dict(data.metrics),
        )

    # --- findings -------------------------------------------------------------------------------
    def add_finding(self, text: str, runs: list[str], tags: list[str] | None = None, source: str = "user") -> str:
        """Record a finding about ``runs`` (full ids) as a finished run of the findings experiment."""
        text = text.strip()
        if not text:
            raise ValueError("a finding needs some text")
        if len(text) > MAX_FINDING_CHARS:
            raise ValueError(f"a finding holds at most {MAX_FINDING_CHARS} characters (got {len(text)})")
        bad = [t for t in tags or [] if "," in t or not t.strip()]
        if bad:
            raise ValueError(f"tag {bad[0]!r}: tags must be non-empty and contain no comma")
        finding_id = self.create_run(
            text.splitlines()[0][:60],  # the run name the MLflow UI shows
            tags={
                "questlab.finding.text": text,
                "questlab.finding.runs": ",".join(runs),
                "questlab.finding.tags": ",".join(t.strip() for t in tags or []),
                "questlab.finding.source": source,
            },
            experiment=FINDINGS_EXPERIMENT,
        )
        self.finish(finding_id)
        return finding_id

    def list_findings(self, run_id: str | None = None) -> list[Finding]:
        """The findings log, newest first; with ``run_id`` (full id) only those about that run."""
        found = []
        for r in self.list_runs(FINDINGS_EXPERIMENT):
            runs = [x for x in r.tags.get("questlab.finding.runs", "").split(",") if x]
            if run_id is not None and run_id not in runs:
                continue
            found.append(
                Finding(
                    finding_id=r.run_id,
                    text=r.tags.get("questlab.finding.text", ""),
                    time=r.start_time,
                    runs=runs,
                    tags=[x for x in r.tags.get("questlab.finding.tags", "").split(",") if x],
                    source=r.tags.get("questlab.finding.source", "user"),
                )
            )
        return found

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
        """Mark a failed or killed run as running again (``--resume``)."""
        self.client.update_run(run_id, status="RUNNING")

    @contextmanager
    def recording(self, run_id: str) -> Iterator[None]:
        """Mark the run FINISHED on success, KILLED on Ctrl-C / SIGTERM, FAILED on any error.

        A run is never left looking finished when it was not; the error is kept as a tag.
        """
        try:
            yield
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
