"""The run format: the one module that knows a run folder's names, layout and ``run.json`` schema.

Every run (a CV run, an ensemble, a post-processed run) is a folder::

    run.json             RunMeta: format version, kind, task, model, config, data file names +
                         sha256, git commit, questlab version, folds, timings, members
    task.json            the resolved task spec the run was made under (absent before 0.10: QUEST)
    config.yaml          the resolved config (CV runs)
    folds.csv            id, group, fold: reusable by a later run (folds.from_run)
    folds/fold_K/        model/, fit_log.json, valid_pred.csv, test_pred.csv, work/ (checkpoints),
                         fold.json (written last: the fold is done, --resume skips it)
    oof.csv              id, group, fold and the task's out-of-fold predictions
    oof_truth.csv        id and the task's true ratings of the scored rows
    scores.json          CVScore by the task's metric: overall, per target, per fold, interval
    per_target.csv       the per-target table, for eyes and spreadsheets
    submission.csv       test predictions, sample_submission order
    ensemble.json        ensembles: members, averaging, weights, the nested report
    postprocess.json     ensembles with post-processing: the fitted maps
    model/               the run as an MLflow model (pyfunc), holding an export bundle

No path inside a run folder is absolute: a folder can be moved, copied or mounted read-only. Runs of
questlab 0.2.0 (format 1) load. JSON files are strict (an undefined number is ``null``; older ``NaN`` reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from questlab.errors import RunFormatError
from questlab.folds import FOLDS_FILE
from questlab.provenance import file_sha256
from questlab.run_meta import RunMeta, parse_meta
from questlab.strictjson import strict_json
from questlab.tasks import Task, TaskRef, load_task, parse_task

META_FILE = "run.json"
CONFIG_FILE = "config.yaml"
OOF_FILE = "oof.csv"
TRUTH_FILE = "oof_truth.csv"
SCORES_FILE = "scores.json"
PER_TARGET_FILE = "per_target.csv"
SUBMISSION_FILE = "submission.csv"
ENSEMBLE_FILE = "ensemble.json"
POSTPROCESS_FILE = "postprocess.json"
MLFLOW_MODEL_DIR = "model"  # the run as an MLflow model
TASK_FILE = "task.json"  # the resolved task spec (Task.to_data())
# The run-level files later stages read, checked against run.json's checksums (fold files have fold.json).
CHECKED_FILES = (
    TASK_FILE, CONFIG_FILE, FOLDS_FILE, OOF_FILE, TRUTH_FILE, SCORES_FILE, PER_TARGET_FILE, SUBMISSION_FILE,
    ENSEMBLE_FILE, POSTPROCESS_FILE,
)  # fmt: skip
FOLDS_DIR = "folds"
# Inside folds/fold_K/:
FOLD_MODEL_DIR = "model"
FIT_LOG_FILE = "fit_log.json"
VALID_PRED_FILE = "valid_pred.csv"
TEST_PRED_FILE = "test_pred.csv"
FOLD_DONE_FILE = "fold.json"
WORK_DIR = "work"


def fold_part(k: int) -> str:
    """The part (relative folder) holding fold ``k``: what :meth:`Store.sync` is given for a fold."""
    return f"{FOLDS_DIR}/fold_{k}"


# Tags every run carries in the tracking store (MLflow): the run record's names, defined here only.
TAG_KIND = "questlab.kind"  # "cv" (a CV run) or "ensemble"
TAG_MODEL = "questlab.model"
TAG_TASK = "questlab.task"  # the task's name (quest, ell, a spec's name)
TAG_METRIC = "questlab.metric"  # the task's metric: which way the leaderboard ranks the run
TAG_COMPLETE = "questlab.complete"  # "true" once every fold of the run is in
TAG_ERROR = "questlab.error"  # why a run failed or was stopped
TAG_FOLDS_DONE = "questlab.folds_done"  # the folds scored, comma-separated
TAG_MEMBERS = "questlab.members"  # ensembles: member run ids, comma-separated
TAG_COLLECTED_FROM = "questlab.collected_from"  # collect: the single-fold runs merged
TAG_GIT_COMMIT = "questlab.git_commit"
TAG_VERSION = "questlab.version"
TAG_PSEUDO_FILE = "questlab.pseudo_file"
TAG_PSEUDO_SHA256 = "questlab.pseudo_sha256"
TAG_PSEUDO_TEACHER = "questlab.pseudo_teacher"
# What makes two runs' scores comparable (the leaderboard ranks together only runs that share all three):
TAG_ROWS = "questlab.rows"  # the number of out-of-fold rows scored
TAG_DATA = "questlab.data"  # the train file's sha256, short (:func:`short_sha`)
TAG_SPLIT = "questlab.folds_id"  # sha256 of the row id -> fold assignment (:func:`folds_fingerprint`), short
SHORT_SHA = 12  # hex digits kept of a fingerprint


def short_sha(digest: str | None) -> str:
    """A sha256 as the leaderboard shows it: its first 12 hex digits ("" for none)."""
    return (digest or "")[:SHORT_SHA]


def folds_fingerprint(frame: pd.DataFrame) -> str:
    """sha256 (short) of a row id -> fold assignment (folds.csv, or an OOF frame's id column and ``fold``),
    independent of row order: two runs with the same fingerprint were split the same way."""
    import hashlib

    key = frame.columns[0]  # the task's id column: folds.csv and OOF frames start with it
    rows = frame[[key, "fold"]]  # integer ids (QUEST) hashed as 0.9.0 did, other ids as text
    rows = rows.astype("int64" if pd.api.types.is_integer_dtype(rows[key]) else {key: str, "fold": "int64"})
    rows = rows.sort_values(key, kind="stable")  # as recipes' folds_key
    return short_sha(hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest())


def comparability(folder: RunFolder, oof: pd.DataFrame | None = None) -> dict[str, str]:
    """The tags saying what a run was scored on: rows scored, data (train sha256) and folds
    fingerprints, from its files (``oof`` when already read); a part that cannot be read is left out."""
    out: dict[str, str] = {}
    try:
        task = read_task(folder)
        if oof is None and folder.has(OOF_FILE):
            oof = pd.read_csv(folder / OOF_FILE, usecols=[task.id, "fold"])
        if oof is not None:
            out[TAG_ROWS] = str(len(oof))
        folds = pd.read_csv(folder / FOLDS_FILE, usecols=[task.id, "fold"]) if folder.has(FOLDS_FILE) else oof
        if folds is not None:
            out[TAG_SPLIT] = folds_fingerprint(folds)
        if folder.has(META_FILE):
            data = short_sha(folder.read_meta().train_sha256)
            if data:
                out[TAG_DATA] = data
    except (OSError, ValueError, KeyError, RunFormatError):
        pass
    return out


# --- predictions ------------------------------------------------------------------------------
def predictions_frame(ids: Any, pred: np.ndarray, task: TaskRef = None) -> pd.DataFrame:
    """The task's id + its targets in submission order: the one format predictions are saved in."""
    task = load_task(task)
    frame = pd.DataFrame(np.asarray(pred), columns=list(task.target_names))
    frame.insert(0, task.id, np.asarray(ids))
    return frame


def read_predictions(path: Path, task: TaskRef = None) -> pd.DataFrame:
    """Read a predictions CSV (id + the task's targets); a missing column is a RunFormatError."""
    task, frame = load_task(task), pd.read_csv(path)
    wanted = [task.id, *task.target_names]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise RunFormatError(f"{path}: no column {missing[0]!r}: not a questlab predictions file of task {task.name}")
    return frame[wanted]


def read_task(folder: RunFolder | Path) -> Task:
    """The task a run was made under (its ``task.json``); runs recorded before tasks are QUEST's."""
    run = folder if isinstance(folder, RunFolder) else RunFolder(Path(folder))
    if not run.has(TASK_FILE):
        return load_task(None)
    path = run.verified(TASK_FILE)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunFormatError(f"run {run.run_id}: {TASK_FILE} is not valid JSON ({exc})") from None
    return parse_task(data, f"run {run.run_id} ({TASK_FILE})")


class RunFolder:
    """A run folder on local disk: typed reads and writes of everything a run records."""

    def __init__(self, path: Path, run_id: str = "") -> None:
        self.path = Path(path)
        self.run_id = run_id or self.path.name

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def write_task(self, task: Task) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_text(self.path / TASK_FILE, strict_json(task.to_data()))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def has(self, *names: str) -> bool:
        return all((self.path / n).exists() for n in names)

    def _need(self, *names: str) -> None:
        missing = [n for n in names if not (self.path / n).exists()]
        if missing:
            raise RunFormatError(f"run {self.run_id} has no {', '.join(missing)}: it did not finish scoring")

    def checksums(self) -> dict[str, str]:
        """The sha256 of each run-level file that run.json recorded when the run was scored."""
        try:
            recorded = json.loads((self.path / META_FILE).read_text()).get("checksums") or {}
        except (OSError, json.JSONDecodeError, AttributeError):
            return {}
        return recorded if isinstance(recorded, dict) else {}

    def take_checksums(self) -> dict[str, str]:
        """The sha256 of the run-level files present now (what :meth:`verified` checks later)."""
        return {n: file_sha256(self.path / n) for n in CHECKED_FILES if (self.path / n).is_file()}

    def verified(self, name: str) -> Path:
        """The path of run-level file ``name``, which must exist and match its recorded sha256."""
        self._need(name)
        path = self.path / name
        digest = self.checksums().get(name)
        if digest is not None and file_sha256(path) != digest:
            raise RunFormatError(
                f"run {self.run_id}: {name} changed since the run was recorded (sha256 differs): "
                "it cannot be trusted; re-run the run (or restore the file)"
            )
        return path

    # --- run.json and config -----------------------------------------------------------------
    def read_meta(self) -> RunMeta:
        self._need(META_FILE)
        try:
            data = json.loads((self.path / META_FILE).read_text())
        except json.JSONDecodeError as exc:
            raise RunFormatError(f"run {self.run_id}: {META_FILE} is not valid JSON ({exc})") from None
        return parse_meta(data, f"run {self.run_id} ({META_FILE})")

    def write_meta(self, meta: RunMeta) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_text(self.path / META_FILE, meta.model_dump_json(indent=1))

    def update_meta(self, **updates: Any) -> RunMeta:
        meta = self.read_meta().model_copy(update=updates)
        self.write_meta(meta)
        return meta

    def write_config(self, yaml_text: str) -> None:
        _write_text(self.path / CONFIG_FILE, yaml_text)

    def config_dict(self) -> dict[str, Any] | None:
        """The resolved config (run.json, else config.yaml), or None for runs without one."""
        import yaml

        if self.has(META_FILE):
            meta = self.read_meta()
            if meta.config is not None:
                return meta.config
        if self.has(CONFIG_FILE):
            return yaml.safe_load((self.path / CONFIG_FILE).read_text()) or {}
        return None

    # --- folds ---------------------------------------------------------------------------------
    def fold_dir(self, k: int) -> Path:
        return self.path / FOLDS_DIR / f"fold_{k}"

    def fold_problems(self, k: int, verify: bool = True) -> list[str]:
        """Why fold ``k`` does not count as done: missing marker, missing or changed files.

        ``fold.json`` records the sha256 of every file the fold wrote; a fold whose files are
        gone or changed is not done (``--resume`` refits it, predict refuses it). Folds recorded
        before checksums existed need fold.json and a saved model.
        """
        d = self.fold_dir(k)
        if not (d / FOLD_DONE_FILE).exists():
            return [f"fold_{k} is not finished (no {FOLD_DONE_FILE})"]
        try:
            files = json.loads((d / FOLD_DONE_FILE).read_text()).get("files")
        except json.JSONDecodeError:
            return [f"fold_{k}/{FOLD_DONE_FILE} is not valid JSON"]
        if files is None:
            ok = (d / FOLD_MODEL_DIR / "model.json").exists()
            return [] if ok else [f"fold_{k}/{FOLD_MODEL_DIR}/model.json is missing"]
        problems = []
        for rel, digest in files.items():
            path = d / rel
            if not path.is_file():
                problems.append(f"fold_{k}/{rel} is missing")
            elif verify and file_sha256(path) != digest:
                problems.append(f"fold_{k}/{rel} changed since the fold was recorded (sha256 differs)")
        return problems

    def fold_started(self, k: int) -> bool:
        """Whether fold ``k`` was ever recorded as done (its files may have changed since)."""
        return (self.fold_dir(k) / FOLD_DONE_FILE).exists()

    def read_fold_summary(self, k: int) -> dict[str, Any]:
        """Fold ``k``'s ``fold.json``: its score, timings and files' sha256."""
        return json.loads((self.fold_dir(k) / FOLD_DONE_FILE).read_text())

    def fold_is_done(self, k: int, verify: bool = True) -> bool:
        return not self.fold_problems(k, verify)

    def done_folds(self) -> list[int]:
        return sorted(
            int(p.parent.name.removeprefix("fold_")) for p in (self.path / FOLDS_DIR).glob(f"fold_*/{FOLD_DONE_FILE}")
        )

    def fold_model_dirs(self, folds: list[int]) -> list[Path]:
        """The fitted models of ``folds``, checked against their recorded sha256; else a RunFormatError."""
        problems = [p for k in folds for p in self.fold_problems(k)]
        if problems:
            raise RunFormatError(
                f"run {self.run_id} cannot predict: {'; '.join(problems[:3])}"
                f"{f' (and {len(problems) - 3} more)' if len(problems) > 3 else ''}; "
                f"resume it to refit those folds (questlab run --resume {self.run_id} --train ...)"
            )
        return [self.fold_dir(k) / FOLD_MODEL_DIR for k in folds]

    def write_fold_outputs(
        self,
        k: int,
        valid: pd.DataFrame,
        test: pd.DataFrame | None,
        fit_log: dict[str, Any],
        summary: dict[str, Any],
    ) -> None:
        """Write a fold's predictions and log, then ``fold.json`` last: it marks the fold done and
        records the sha256 of every file the fold wrote (its model included; checkpoints aside)."""
        d = self.fold_dir(k)
        valid.to_csv(d / VALID_PRED_FILE, index=False)
        if test is not None:
            test.to_csv(d / TEST_PRED_FILE, index=False)
        _write_text(d / FIT_LOG_FILE, strict_json(fit_log))
        files = {
            p.relative_to(d).as_posix(): file_sha256(p)
            for p in sorted(d.rglob("*"))
            if p.is_file() and p.relative_to(d).parts[0] not in (WORK_DIR, FOLD_DONE_FILE)
        }
        _write_text(d / FOLD_DONE_FILE, strict_json({**summary, "files": files}))

    def read_fold_predictions(self, k: int, which: Literal["valid", "test"]) -> pd.DataFrame | None:
        path = self.fold_dir(k) / (VALID_PRED_FILE if which == "valid" else TEST_PRED_FILE)
        return read_predictions(path, read_task(self)) if path.exists() else None

    def read_fit_logs(self) -> dict[int, dict[str, Any]]:
        """Fold -> fit_log.json contents, for every fold that wrote one."""
        logs = {}
        for path in sorted((self.path / FOLDS_DIR).glob(f"fold_*/{FIT_LOG_FILE}")):
            logs[int(path.parent.name.removeprefix("fold_"))] = json.loads(path.read_text())
        return dict(sorted(logs.items()))

    def read_fold_test_predictions(self) -> dict[int, pd.DataFrame]:
        out = {}
        for path in sorted((self.path / FOLDS_DIR).glob(f"fold_*/{TEST_PRED_FILE}")):
            out[int(path.parent.name.removeprefix("fold_"))] = read_predictions(path, read_task(self))
        return dict(sorted(out.items()))

    def read_folds(self) -> pd.DataFrame:
        """folds.csv as recorded (the task's id, group, fold)."""
        return pd.read_csv(self.verified(FOLDS_FILE))

    # --- scored outputs ------------------------------------------------------------------------
    def write_outputs(
        self, oof: pd.DataFrame, truth: pd.DataFrame, scores: dict[str, Any], per_target: pd.DataFrame
    ) -> None:
        oof.to_csv(self.path / OOF_FILE, index=False)
        truth.to_csv(self.path / TRUTH_FILE, index=False)
        _write_text(self.path / SCORES_FILE, strict_json(scores))
        per_target.to_csv(self.path / PER_TARGET_FILE)

    def has_oof(self) -> bool:
        return self.has(OOF_FILE, TRUTH_FILE)

    def read_oof(self) -> pd.DataFrame:
        """id, group, fold and the task's OOF predictions, in recorded (train) row order."""
        frame = pd.read_csv(self.verified(OOF_FILE))
        task = read_task(self)
        missing = [c for c in (task.id, "group", "fold", *task.target_names) if c not in frame.columns]
        if missing:
            raise RunFormatError(f"run {self.run_id}: {OOF_FILE} has no column {missing[0]!r}; re-run it")
        return frame

    def read_truth(self, ids: pd.Series | None = None) -> pd.DataFrame:
        """id + the task's ratings of the scored rows; aligned row by row to ``ids`` when given."""
        truth = pd.read_csv(self.verified(TRUTH_FILE))
        if ids is not None:
            key = read_task(self).id
            truth = pd.DataFrame({key: np.asarray(ids)}).merge(truth, on=key, how="left")
        return truth

    def read_scores(self) -> dict[str, Any]:
        """scores.json as written: ``null`` where a number is undefined (``NaN`` in older runs)."""
        return json.loads(self.verified(SCORES_FILE).read_text())

    def write_submission(self, frame: pd.DataFrame) -> None:
        frame.to_csv(self.path / SUBMISSION_FILE, index=False)

    def read_submission(self) -> pd.DataFrame | None:
        path = self.path / SUBMISSION_FILE
        return read_predictions(self.verified(SUBMISSION_FILE), read_task(self)) if path.exists() else None

    # --- ensembles -----------------------------------------------------------------------------
    def write_ensemble(self, spec: dict[str, Any]) -> None:
        _write_text(self.path / ENSEMBLE_FILE, strict_json(spec))

    def read_ensemble(self) -> dict[str, Any]:
        return json.loads(self.verified(ENSEMBLE_FILE).read_text())


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename: a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
