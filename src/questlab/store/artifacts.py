"""Where a run's files live: the folder it is written into, and the folder it is read from.

Part of :mod:`questlab.store` (the only MLflow tracking client). A run being written is a
local folder (:meth:`Artifacts.writer`). In a local store that folder *is* the run's artifact
folder, so what a crashed run had recorded stays on disk; with a remote artifact store it is a
staging folder whose parts are logged through MLflow's artifact API as they are finished
(:meth:`Artifacts.sync`: each fold, then the outputs). Reading a run (:meth:`Artifacts.folder`)
gives its artifact folder, or a cached download of it under questlab's cache.

A local store is relocatable: a run's artifact folder is found from the store's own location,
never from the absolute path MLflow recorded (see :func:`questlab.store.backend.relocate`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from questlab.rundir import MLFLOW_MODEL_DIR, RunFolder
from questlab.store.backend import local_path

__all__ = ["Artifacts"]

_DOWNLOAD_MARK = ".questlab-download.json"


class Artifacts:
    """The artifact folders of one store's runs.

    ``client`` is the store's MLflow client, ``uri`` its tracking URI (the cache key) and ``root``
    a local store's folder (artifacts under ``root/artifacts``), None for a remote one.
    """

    def __init__(self, client: Any, uri: str, root: Path | None) -> None:
        self.client = client
        self.uri = uri
        self.root = root
        self._staged: dict[str, Path] = {}  # runs this process writes through a staging folder

    def local_dir(self, run_id: str, artifact_uri: str) -> Path | None:
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
        path = self.local_dir(run_id, uri)
        if path is None:
            path = self._staged.get(run_id) or self.cache_dir("staging", run_id)
            self._staged[run_id] = path
        path.mkdir(parents=True, exist_ok=True)
        return RunFolder(path, run_id)

    def sync(self, run_id: str, *parts: str) -> None:
        """Log the named parts of a staged run's folder through MLflow (remote stores).

        ``parts`` are names of files or folders relative to the run folder, as the run format
        in :mod:`questlab.rundir` names them (``run.json``, ``fold_part(k)`` = ``folds/fold_<k>``).
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
        path = self.local_dir(run_id, run.info.artifact_uri)
        if path is not None:
            return RunFolder(path, run_id)
        if run_id in self._staged:  # written by this process: the staging folder is complete
            return RunFolder(self._staged[run_id], run_id)
        dst = self.cache_dir("downloads", run_id)
        if run.info.status != "FINISHED":
            # Downloaded afresh on every read, as it may change: into this process's own folder,
            # since other processes on this machine (a study's workers) refresh theirs meanwhile.
            dst = dst.with_name(f"{run_id}.pid{os.getpid()}")
        mark = {"status": run.info.status, "end_time": run.info.end_time}
        mark_path = dst / _DOWNLOAD_MARK
        if mark_path.exists():
            old = json.loads(mark_path.read_text())
            same = old.get("end_time") == mark["end_time"] and old.get("status") == mark["status"] == "FINISHED"
            if same and (old.get("models") or not models):
                return RunFolder(dst, run_id)
        # Downloaded beside it, then renamed into place: a reader never sees half a folder.
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
        try:
            self._download(run_id, "", tmp, models)
            (tmp / _DOWNLOAD_MARK).write_text(json.dumps({**mark, "models": models}))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(dst, ignore_errors=True)
        try:
            tmp.rename(dst)
        except OSError:  # another process on this machine renamed its download of the finished run there first
            shutil.rmtree(tmp, ignore_errors=True)
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
        if self.local_dir(run_id, self.client.get_run(run_id).info.artifact_uri) is None:
            self.client.log_artifact(run_id, str(path))
        return path

    def cache_dir(self, kind: str, run_id: str) -> Path:
        """This store's folder of ``kind`` (``staging``, ``downloads``) for a run, in questlab's cache."""
        from questlab.models.pretrained import cache_root

        key = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        return cache_root() / "store" / key / kind / run_id

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
