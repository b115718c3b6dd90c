"""Leak-free pseudo-labels: a teacher run's soft labels for unlabelled pairs, used fold by fold.

``questlab pseudo-label TEACHER --unlabelled test.csv -o pseudo.csv`` (:mod:`questlab.teacher`)
writes, for every pair of a QUEST test-format file, the teacher's prediction from **each** fold model. A student run
(``questlab run CONFIG --train train.csv --pseudo pseudo.csv``) on the teacher's folds adds to
fold k's train rows the pseudo rows labelled by the teacher's fold-k model only: that model never
saw fold k's valid rows, so no label of a valid row can reach the student through the teacher.
Pseudo rows are never scored and never in ``oof.csv``.

The file (format 1), one row per pair::

    qa_id, the 10 input columns          the pair, as validated (missing optional inputs empty)
    <target> x 30                        the mean of the fold models' predictions (= questlab predict)
    fold_K.<target> x 30 per fold K      teacher fold K's prediction: what student fold K trains on

and beside it ``pseudo.csv.json`` (:class:`PseudoMeta`): the teacher run, its folds' sha256, the
unlabelled file's name and sha256, and the sha256 of the CSV itself (a changed file is refused).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from questlab import __version__
from questlab.console import Say, stderr
from questlab.csvfile import read_csv
from questlab.data import validate_frame
from questlab.errors import DataError, UsageError
from questlab.provenance import file_sha256
from questlab.rundir import TAG_PSEUDO_FILE, TAG_PSEUDO_SHA256, TAG_PSEUDO_TEACHER, RunMeta
from questlab.tasks import Task, TaskRef, load_task
from questlab.tasks.grouping import group_ids

FORMAT_VERSION = 1
SIDECAR_SUFFIX = ".json"  # pseudo.csv -> pseudo.csv.json


def fold_column(k: int, target: str) -> str:
    """The column of teacher fold ``k``'s prediction of ``target``."""
    return f"fold_{k}.{target}"


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def folds_sha256(folds: pd.DataFrame, task: TaskRef = None) -> str:
    """sha256 of the id -> fold assignment (sorted by id): equal iff the same rows sit in the same folds."""
    key = load_task(task).id
    table = folds[[key, "fold"]].copy()
    table["fold"] = table["fold"].astype(np.int64)
    if pd.api.types.is_numeric_dtype(table[key]):  # QUEST's qa_id: as 0.9.0 hashed it
        table[key] = table[key].astype(np.int64)
    return hashlib.sha256(table.sort_values(key, kind="stable").to_csv(index=False).encode()).hexdigest()


class PseudoMeta(BaseModel):
    """``pseudo.csv.json``: where the pseudo-labels come from."""

    format_version: int = FORMAT_VERSION
    teacher_run: str
    teacher_name: str = ""
    teacher_model: str = ""
    teacher_cv: float | None = None
    teacher_train_file: str | None = None
    teacher_train_sha256: str | None = None
    teacher_task: str = "quest"  # the teacher's task (0.9.0 files: quest)
    task: dict[str, Any] | None = None  # its resolved spec (Task.to_data())
    folds: list[int]  # the teacher's folds: one label column block per fold
    folds_sha256: str  # of the teacher's qa_id -> fold assignment (folds_sha256)
    unlabelled_file: str
    unlabelled_sha256: str
    rows: int
    csv_sha256: str  # of pseudo.csv itself
    questlab_version: str = __version__
    created_at: str = ""


# --- using them ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PseudoLabels:
    """A pseudo-label file, read and checked: the rows, each teacher fold's labels, the provenance."""

    frame: pd.DataFrame  # the id + the task's input columns
    labels: dict[int, np.ndarray]  # teacher fold -> (n, n_targets) labels, rows aligned to ``frame``
    meta: PseudoMeta
    name: str  # the file's name
    sha256: str  # the file's sha256
    dropped: int = 0  # rows dropped because their group (QUEST: question) is in the train data
    task: Task = field(default_factory=lambda: load_task(None))  # the teacher's task: its targets are the labels

    @classmethod
    def read(cls, path: str | Path, task: TaskRef = None) -> PseudoLabels:
        """Read ``pseudo.csv`` and its sidecar; anything missing, changed or out of range is a DataError.

        ``task`` (the student's, when known): a teacher of another task is refused, naming both.
        """
        path = Path(path)
        side = sidecar_path(path)
        if not path.is_file():
            raise DataError(path, "no such pseudo-label file", hint="make one with questlab pseudo-label")
        if not side.is_file():
            raise DataError(
                path, f"no {side.name} beside it: not a questlab pseudo-label file",
                hint="make one with questlab pseudo-label TEACHER_RUN --unlabelled FILE -o pseudo.csv",
            )  # fmt: skip
        try:
            meta = PseudoMeta.model_validate_json(side.read_text())
        except ValidationError as exc:
            raise DataError(
                side, f"not a pseudo-label description ({exc.errors(include_url=False)[0]['msg']})"
            ) from None
        if meta.format_version > FORMAT_VERSION:
            raise DataError(side, f"pseudo-label format {meta.format_version} is newer than this questlab's")
        sha = file_sha256(path)
        if sha != meta.csv_sha256:
            raise DataError(
                path, f"changed since questlab pseudo-label wrote it (sha256 differs from {side.name})",
                hint="make it again with questlab pseudo-label",
            )  # fmt: skip
        teacher = load_task(meta.task)  # no spec recorded: a 0.9.0 file, quest
        if task is not None:
            check_pseudo_task(teacher, load_task(task), path.name, meta.teacher_run)
        targets = teacher.target_names
        raw = read_csv(path)
        wanted = [fold_column(k, t) for k in meta.folds for t in targets]
        missing = [c for c in (*teacher.test_columns, *targets, *wanted) if c not in raw.columns]
        if missing:
            raise DataError(path, "missing column", column=missing[0], hint="make the file with questlab pseudo-label")
        inputs = [c for c in raw.columns if c in set(teacher.test_columns)]  # the file's order, as written
        frame = validate_frame(raw[inputs], "test", source=str(path), task=teacher)
        labels = {k: _labels(path, raw, [fold_column(k, t) for t in targets], frame, teacher) for k in meta.folds}
        return cls(frame, labels, meta, path.name, sha, task=teacher)

    def for_fold(self, k: int) -> pd.DataFrame:
        """The pseudo rows as train rows labelled by teacher fold ``k`` (the only labels student fold k may see)."""
        out = self.frame.copy()
        out[list(self.task.target_names)] = self.labels[k]
        return out[[*self.frame.columns, *self.task.target_names]]

    def provenance(self) -> dict[str, Any]:
        """What a student run records (run.json ``pseudo``)."""
        return {
            "file": self.name,
            "sha256": self.sha256,
            "teacher_run": self.meta.teacher_run,
            "teacher_name": self.meta.teacher_name,
            "teacher_model": self.meta.teacher_model,
            "teacher_task": self.task.name,
            "folds_sha256": self.meta.folds_sha256,
            "unlabelled_file": self.meta.unlabelled_file,
            "unlabelled_sha256": self.meta.unlabelled_sha256,
            "rows_used": len(self.frame),
            "rows_dropped": self.dropped,
        }

    def tags(self) -> dict[str, str]:
        """MLflow tags of a student run."""
        return pseudo_tags(self.provenance())


# --- a run's record of them (run.json ``pseudo``) ------------------------------------------------
def recorded_pseudo(meta: RunMeta) -> dict[str, Any] | None:
    """The ``pseudo`` record of a run (:meth:`PseudoLabels.provenance`), or None: made without."""
    return (meta.model_extra or {}).get("pseudo")


def pseudo_tags(record: dict[str, Any] | None) -> dict[str, str]:
    """The MLflow tags a run with this ``pseudo`` record carries (none without pseudo-labels)."""
    if not record:
        return {}
    return {
        TAG_PSEUDO_FILE: record["file"],
        TAG_PSEUDO_SHA256: record["sha256"],
        TAG_PSEUDO_TEACHER: record["teacher_run"],
    }


def describe_pseudo(record: dict[str, Any] | None, other: dict[str, Any] | None = None) -> str:
    """``--pseudo FILE (sha256 ...)`` or ``no --pseudo``, for messages; given the ``other`` record it
    is set against, and the same file, it also names the first entry where the two differ."""
    if not record:
        return "no --pseudo"
    text = f"--pseudo {record['file']} (sha256 {record['sha256'][:12]}...)"
    if other and other.get("sha256") == record["sha256"] and other != record:
        key = next(k for k in sorted({*record, *other}) if record.get(k) != other.get(k))
        text += f" with {key} {record.get(key)!r}"
    return text


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python value (an int id prints as before), anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def check_pseudo_task(teacher: Task, student: Task, name: str, teacher_run: str) -> None:
    """A UsageError when pseudo-labels of ``teacher``'s task would train a run of another task."""
    if teacher.fingerprint != student.fingerprint:
        same = " (same name, another spec)" if teacher.name == student.name else ""
        raise UsageError(
            f"the pseudo-labels in {name} come from run {teacher_run} of task {teacher.name!r}; this run is "
            f"task {student.name!r}{same}: pseudo-label with a teacher of task {student.name!r}"
        )


def _labels(path: Path, raw: pd.DataFrame, columns: list[str], frame: pd.DataFrame, task: Task) -> np.ndarray:
    """The label columns as floats in their target's [low, high]; a bad cell names its column and row."""
    out = np.empty((len(raw), len(columns)), dtype=np.float64)
    for j, (col, target) in enumerate(zip(columns, task.targets, strict=True)):
        values = pd.to_numeric(raw[col].str.strip(), errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values) | (values < target.low) | (values > target.high)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = f"label {raw[col].iloc[i]!r} is not a number in [{target.low:g}, {target.high:g}]"
            raise DataError(path, what, column=col, row=i + 1, qa_id=_plain(frame[task.id].iloc[i]), id_name=task.id)
        out[:, j] = values
    return out


def attach_pseudo(
    pseudo: PseudoLabels | None,
    train: pd.DataFrame,
    folds: pd.DataFrame,
    resumed: RunMeta | None = None,
    say: Say = stderr,
    task: TaskRef = None,
) -> PseudoLabels | None:
    """Check pseudo-labels against a student run and keep the rows it may train on.

    Refused: folds other than the teacher's (fold k's labels must come from a model that never
    saw fold k); a resumed run given other pseudo-labels than it started with (or none). Dropped,
    and said: pseudo rows whose question is also in ``train`` (a question must not sit on both
    sides of a fold, even with predicted labels). Refused too: a teacher of another task than
    ``task`` (the student's; None: quest), naming both.
    """
    recorded = recorded_pseudo(resumed) if resumed is not None else None
    if resumed is not None and (recorded or {}).get("sha256") != (pseudo.sha256 if pseudo else None):
        raise UsageError(f"run {resumed.run_id} was started with {describe_pseudo(recorded)}: resume it with the same")
    if pseudo is None:
        return None
    task = load_task(task)
    check_pseudo_task(pseudo.task, task, pseudo.name, pseudo.meta.teacher_run)
    key = task.id
    mine = folds_sha256(folds, task)
    if mine != pseudo.meta.folds_sha256:
        teacher = pseudo.meta.teacher_run
        raise UsageError(
            f"the pseudo-labels in {pseudo.name} come from run {teacher}, whose folds (sha256 "
            f"{pseudo.meta.folds_sha256[:12]}...) are not this run's ({mine[:12]}...): student fold k may "
            f"train only on teacher fold k's labels; use the teacher's folds: --set folds.from_run={teacher} "
            f"(folds: {{from_run: {teacher}}} in the config) with the teacher's train file"
        )
    cols = [c for c in task.test_columns if c in train.columns and c in pseudo.frame.columns]
    groups = group_ids(task, pd.concat([train[cols], pseudo.frame[cols]], ignore_index=True))
    in_train = np.isin(groups[len(train) :], groups[: len(train)])
    keep = ~in_train
    collide = np.isin(pseudo.frame[key].to_numpy(), train[key].to_numpy()) & keep
    if collide.any():
        first = pseudo.frame[key].to_numpy()[collide][0]
        what, hint = f"{int(collide.sum())} {key}(s) also appear in the train file", "use pairs the train data lacks"
        raise DataError(pseudo.name, what, column=key, qa_id=_plain(first), hint=hint, id_name=key)
    if not keep.any():
        raise UsageError(
            f"every pseudo row of {pseudo.name} shares a group (QUEST: a question) with the train data:"
            " none left to use"
        )
    kept = replace(
        pseudo,
        frame=pseudo.frame[keep].reset_index(drop=True),
        labels={k: v[keep] for k, v in pseudo.labels.items()},
        dropped=int(in_train.sum()),
    )
    why = ": their group is also in the train data" if task.groups is not None else " (the task has no groups)"
    say(
        f"pseudo-labels: {len(kept.frame)} rows of {pseudo.name} (teacher run {pseudo.meta.teacher_run[:8]}, "
        f"{len(pseudo.meta.folds)} folds); {kept.dropped} dropped{why}"
    )
    return kept


__all__ = [
    "PseudoLabels",
    "PseudoMeta",
    "attach_pseudo",
    "check_pseudo_task",
    "describe_pseudo",
    "folds_sha256",
    "pseudo_tags",
    "recorded_pseudo",
]
