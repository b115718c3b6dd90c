"""Read and validate a task's CSVs at the boundary (QUEST's by default).

Every problem becomes a ``DataError`` naming the file, the column and, where it applies, the row
(1-based data row, i.e. the CSV line minus the header, plus its id), with a hint on how to fix
it. The columns, their roles and the targets' ranges and levels come from the task
(``questlab.tasks``); the CLI prints an error on one line and exits with code 2; nothing
downstream re-validates.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from questlab.csvfile import read_csv
from questlab.errors import DataError
from questlab.provenance import file_sha256
from questlab.tasks import Task, TaskRef, builtin_task_names, load_task

Kind = Literal["train", "test"]


@dataclass(frozen=True)
class DataSummary:
    """What ``questlab check`` prints; built by ``summarize``."""

    kind: Kind
    rows: int
    questions: int  # groups of rows (QUEST: questions); every row its own where the task has no groups
    answers_per_question: dict[str, float]  # rows per group: mean, max, share_with_several
    text_lengths: pd.DataFrame  # rows: the task's texts; cols: mean, p50, p90, max (characters)
    targets: pd.DataFrame | None  # rows: targets; cols: distinct, majority_share, mean
    blank_bodies: int  # texts after the first of a segment that are whitespace only (allowed, worth knowing)


def load(path: str | Path, kind: Kind, task: TaskRef = None) -> pd.DataFrame:
    """Load and validate a train (id, inputs, targets) or test (id, inputs) CSV of ``task``.

    Returns a frame with the id column (int64 when the ids are whole numbers, else text), inputs
    as str, targets as float64, in the task's column order. Raises ``DataError`` on any problem.
    """
    path, task = Path(path), load_task(task)
    return _validate(read_csv(path, task), kind, path, task)


def validate_frame(frame: pd.DataFrame, kind: Kind, source: str = "DataFrame", task: TaskRef = None) -> pd.DataFrame:
    """Validate an in-memory frame with exactly the rules a file gets; return a clean copy.

    Values are taken as their text (as a CSV would hold them; a missing value is empty text), so
    errors name the same column and row (1-based position) they would in a file; ``source``
    stands where a file name would.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(source, f"expected a pandas DataFrame, got {type(frame).__name__}")
    text = pd.DataFrame(
        {str(c).strip(): [_cell_text(v) for v in frame[c]] for c in frame.columns}, index=range(len(frame))
    )
    if len(set(text.columns)) != len(frame.columns):  # the dict above merged repeated names
        cols = [str(c).strip() for c in frame.columns]
        raise DataError(source, "the frame repeats a column", column=next(c for c in cols if cols.count(c) > 1))
    return _validate(text, kind, source, load_task(task))


def _cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _validate(frame: pd.DataFrame, kind: Kind, path: str | Path, task: Task) -> pd.DataFrame:
    _check_columns(path, frame, kind, task)
    if len(frame) == 0:
        raise DataError(path, "the file has a header but no rows")
    if kind == "test":
        frame = frame.assign(**{c: "" for c in _may_leave_out(task, kind) if c not in frame.columns})
    frame = frame[column_order(task, kind)].copy()
    _check_ids(path, frame, task)
    _check_text(path, frame, task, kind)
    if kind == "train":
        _check_targets(path, frame, task)
    return frame.reset_index(drop=True)


def load_train(path: str | Path, task: TaskRef = None) -> pd.DataFrame:
    """Load a labelled CSV of ``task`` (QUEST: ``qa_id``, 10 inputs, 30 targets)."""
    return load(path, "train", task)


def load_test(path: str | Path, task: TaskRef = None) -> pd.DataFrame:
    """Load an unlabelled CSV of ``task`` (QUEST: ``qa_id`` and the 10 inputs)."""
    return load(path, "test", task)


def check_pair(train: pd.DataFrame, test: pd.DataFrame, test_path: str | Path, task: TaskRef = None) -> None:
    """Cross-file checks: a test file must not repeat train ids (a leak or a mix-up)."""
    key = load_task(task).id
    shared = np.intersect1d(train[key].to_numpy(), test[key].to_numpy())
    if len(shared):
        row = int(np.flatnonzero(test[key].to_numpy() == shared[0])[0]) + 1
        raise DataError(
            test_path,
            f"{len(shared)} {key}(s) also appear in the train file",
            column=key,
            row=row,
            qa_id=shared[0],
            hint="test rows must be pairs the model was not trained on",
            id_name=key,
        )


def detect_kind(path: str | Path, task: TaskRef = None) -> Kind:
    """Guess whether a CSV is a train or a test file from its header: does it carry the task's targets."""
    task = load_task(task)
    frame = read_csv(path, task)
    return "train" if any(t in frame.columns for t in task.target_names) else "test"


def column_order(task: TaskRef, kind: Kind) -> list[str]:
    """A validated frame's columns, in order: the task's ``train_columns`` / ``test_columns``
    (the spec's ``columns`` key keeps a file's own order: QUEST's frames and hashes are 0.9.0's)."""
    task = load_task(task)
    return list(task.train_columns if kind == "train" else task.test_columns)


def _may_leave_out(task: Task, kind: Kind) -> tuple[str, ...]:
    """Columns a file may lack (read as empty cells): a test file's optional and group-only columns;
    a train file needs every input column (grouping reads them)."""
    return (*task.optional, *task.group_columns) if kind == "test" else ()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def looks_like(columns: list[str], task: Task) -> str | None:
    """The built-in task (other than ``task``) whose id and required inputs ``columns`` all hold, if any."""
    for name in builtin_task_names():
        other = load_task(name)
        if other.name != task.name and {other.id, *other.required_inputs} <= set(columns):
            return other.name
    return None


def _check_columns(path: Path, frame: pd.DataFrame, kind: Kind, task: Task) -> None:
    cols = list(frame.columns)  # never repeated: read_csv and validate_frame refuse that
    other = None if {task.id, *task.required_inputs} <= set(cols) else looks_like(cols, task)
    if other is not None:
        missing = [c for c in (task.id, *task.required_inputs) if c not in cols]
        raise DataError(
            path,
            f"missing {'input' if missing[0] != task.id else 'id'} column: not a {task.name!r} file",
            column=missing[0],
            hint=f"these columns look like task {other!r}: pass --task {other}",
        )
    present_targets = [t for t in task.target_names if t in cols]
    n_in, n_t = len(task.input_columns), task.n_targets
    if kind == "train" and not present_targets:
        raise DataError(
            path,
            "has no target columns: this looks like a test file, where a train file is expected",
            hint=f"give the labelled train.csv ({task.id}, {_plural(n_in, 'input')}, {_plural(n_t, 'target')})",
        )
    if kind == "test" and present_targets:
        raise DataError(
            path,
            f"carries {len(present_targets)} target columns: this looks like a train file, where a "
            "test file is expected",
            column=present_targets[0],
            hint=f"give an unlabelled file ({task.id} and the {_plural(n_in, 'input column')})",
        )
    expected = column_order(task, kind)
    # Rows to predict may leave out the optional inputs (QUEST: user names and pages, url): empty cells.
    optional = _may_leave_out(task, kind)
    missing = [c for c in expected if c not in cols and c not in optional]
    if missing:
        what = "target" if missing[0] in task.target_names else "id" if missing[0] == task.id else "input"
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:4])}{'...' if len(missing) > 4 else ''})"
        more = more if len(missing) > 1 else ""
        req = task.required_inputs
        needs = (
            f"{task.id} and the {_plural(len(req), 'required input')} ({', '.join(req)})"
            if kind == "test"
            else f"{', '.join(expected[:4])}, ... (see: questlab task show {task.name})"
        )
        raise DataError(path, f"missing {what} column{more}", column=missing[0], hint=f"a {kind} file needs {needs}")
    unknown = [c for c in cols if c not in expected]
    if unknown:
        raise DataError(
            path,
            f"unknown column ({len(unknown)} unknown: {', '.join(unknown[:5])})",
            column=unknown[0],
            hint=f"a {kind} file holds only {task.id}, the {_plural(n_in, 'input column')}"
            + (f" and the {_plural(n_t, 'target')}" if kind == "train" else ""),
        )


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:0|[1-9][0-9]*)(?:\.0*)?")  # no leading zero: "007" is a name, not 7
_INT64 = np.iinfo(np.int64)


def _integer_ids(ids: pd.Series) -> bool:
    """Whether a file's ids are integers: most of them are whole numbers without leading zeros.

    QUEST's qa_ids are; ELL's text_ids are hex names ("0016926B079C"), a few of them all digits:
    those stay text, so no id loses a leading zero. Under integer ids every one must be an int64.
    """
    return bool(ids.str.fullmatch(_PLAIN_NUMBER.pattern).mean() >= 0.5)


def _check_ids(path: Path, frame: pd.DataFrame, task: Task) -> None:
    """Ids unique and non-empty; integer ids to int64 exactly (``12.0`` read as 12, ``1e30`` refused)."""
    key = task.id
    texts = frame[key].astype(str).str.strip()
    if _integer_ids(texts):
        ids = []
        for i, text in enumerate(texts):
            if not _WHOLE_NUMBER.fullmatch(text):
                hint = f"write each {key} as a whole number in digits, e.g. 1234"
                raise DataError(path, f"{key} {text!r} is not an integer", column=key, row=i + 1, hint=hint)
            value = int(text.partition(".")[0])  # exact: never through a float
            if not _INT64.min <= value <= _INT64.max:
                raise DataError(path, f"{key} {text!r} is outside the 64-bit integer range", column=key, row=i + 1)
            ids.append(value)
        frame[key] = np.array(ids, dtype=np.int64)
    else:
        empty = texts == ""
        if empty.any():
            i = int(np.flatnonzero(empty.to_numpy())[0])
            hint = f"each row needs its own {key}"
            raise DataError(path, f"empty {key} ({int(empty.sum())} such rows)", column=key, row=i + 1, hint=hint)
        frame[key] = texts.to_numpy(dtype=object)
    dup = frame[key].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((frame[key] == frame[key].iloc[i]).to_numpy())[0])
        raise DataError(
            path,
            f"duplicate {key} (first seen at row {first + 1})",
            column=key,
            row=i + 1,
            qa_id=frame[key].iloc[i],
            hint=f"each row must have its own {key}",
            id_name=key,
        )


def _raise_at_first(
    path: Path, frame: pd.DataFrame, task: Task, bad: pd.Series, column: str, message, hint: str | None = None
) -> None:
    """If any row is flagged in ``bad``, raise a DataError at the first one.

    ``message`` is a string or a function of the row position (to quote the bad value).
    """
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        text = message(i) if callable(message) else message
        row_id = frame[task.id].iloc[i]
        row_id = int(row_id) if isinstance(row_id, np.integer) else row_id
        raise DataError(path, text, column=column, row=i + 1, qa_id=row_id, hint=hint, id_name=task.id)


def _listed(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _check_text(path: Path, frame: pd.DataFrame, task: Task, kind: Kind) -> None:
    for col in task.input_columns:
        frame[col] = frame[col].fillna("").astype(str)
    # The first text of each segment and every feature need visible text. A later text of a
    # segment may be whitespace only, not empty: QUEST's real train.csv has two bodies whose post
    # was an image, and the title carries the question.
    later = {t for role in ("first", "second") for t in task.segment(role)[1:]}
    for col in task.required_inputs:
        empty = (frame[col] == "") if col in later else (frame[col].str.strip() == "")
        _raise_at_first(
            path, frame, task, empty, col, f"empty or missing text ({int(empty.sum())} such rows)",
            hint=f"every row needs {_listed(task.required_inputs)}",
        )  # fmt: skip
    if kind == "train":  # folds group train rows by these: an empty cell would join nothing
        for col in task.group_columns:
            empty = frame[col].str.strip() == ""
            _raise_at_first(
                path, frame, task, empty, col, f"empty group value ({int(empty.sum())} such rows)",
                hint=f"the task {task.name!r} groups rows by {col}: fill it in every train row",
            )  # fmt: skip


def _check_targets(path: Path, frame: pd.DataFrame, task: Task) -> None:
    for target in task.targets:
        col, lo, hi = target.name, target.low, target.high
        raw = frame[col].astype(str).str.strip()
        _raise_at_first(path, frame, task, raw == "", col, "missing target value")
        values = pd.to_numeric(raw, errors="coerce")
        _raise_at_first(
            path, frame, task, values.isna(), col, lambda i, raw=raw: f"non-numeric target value {raw.iloc[i]!r}"
        )
        outside = (values < lo) | (values > hi) | ~np.isfinite(values)
        _raise_at_first(
            path, frame, task, outside, col,
            lambda i, v=values, lo=lo, hi=hi: f"target value {v.iloc[i]:g} outside [{lo:g}, {hi:g}]",
            hint=f"task {task.name!r} rates {col} in [{lo:g}, {hi:g}]",
        )  # fmt: skip
        if target.levels:
            levels = np.asarray(target.levels, dtype=np.float64)
            gap = np.abs(values.to_numpy(dtype=np.float64)[:, None] - levels[None, :]).min(axis=1)
            shown = ", ".join(f"{v:g}" for v in levels) if len(levels) <= 6 else (
                f"{levels[0]:g}, {levels[1]:g}, ..., {levels[-1]:g}"
            )  # fmt: skip
            _raise_at_first(
                path, frame, task, pd.Series(gap > 1e-6), col,
                lambda i, v=values, shown=shown: f"target value {v.iloc[i]:g} is not one of its levels ({shown})",
                hint=f"task {task.name!r} rates {col} on ordinal levels",
            )  # fmt: skip
        frame[col] = values.astype(np.float64)


def summarize(frame: pd.DataFrame, kind: Kind, task: TaskRef = None) -> DataSummary:
    """Rows, groups (QUEST: questions), rows per group, text lengths and per-target level statistics."""
    from questlab.tasks.grouping import group_ids

    task = load_task(task)
    per_q = pd.Series(group_ids(task, frame)).value_counts()
    lengths = pd.DataFrame(
        {
            col: frame[col].str.len().describe(percentiles=[0.5, 0.9])[["mean", "50%", "90%", "max"]].to_numpy()
            for col in task.text_names
        },
        index=["mean", "p50", "p90", "max"],
    ).T
    targets = None
    if kind == "train":
        rows = []
        for col in task.target_names:
            counts = frame[col].round(6).value_counts()
            rows.append(
                {
                    "target": col,
                    "distinct": len(counts),
                    "majority_share": counts.iloc[0] / len(frame),
                    "majority_value": counts.index[0],
                    "mean": frame[col].mean(),
                }
            )
        targets = pd.DataFrame(rows).set_index("target")
    later = [t for role in ("first", "second") for t in task.segment(role)[1:]]
    return DataSummary(
        kind=kind,
        rows=len(frame),
        questions=int(per_q.size),
        answers_per_question={
            "mean": float(per_q.mean()),
            "max": float(per_q.max()),
            "share_with_several": float((per_q > 1).mean()),
        },
        text_lengths=lengths,
        targets=targets,
        blank_bodies=int(sum((frame[c].str.strip() == "").sum() for c in later)),
    )


@dataclass(frozen=True)
class Dataset:
    """A validated input and its identity: the name and sha256 a run records."""

    frame: pd.DataFrame
    name: str  # the file's name, or "DataFrame"
    sha256: str  # of the file's bytes; of a frame, of its validated CSV text

    @classmethod
    def read(cls, source: Data, kind: Kind, task: TaskRef = None) -> Dataset:
        """Load and validate a file, or validate a frame exactly as a file would be (a Dataset: as is)."""
        if isinstance(source, Dataset):
            return source
        if isinstance(source, pd.DataFrame):
            frame = validate_frame(
                source, kind, source=f"{'train' if kind == 'train' else 'test'} DataFrame", task=task
            )
            digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
            return cls(frame, "DataFrame", digest)
        path = Path(source)
        return cls(load(path, kind, task), path.name, file_sha256(path))


Data = str | Path | pd.DataFrame | Dataset  # a task's CSV file, a frame with its columns, or one already read
