"""Read and validate QUEST-format CSVs at the boundary.

Every problem becomes a ``DataError`` naming the file, the column and, where it applies, the row
(1-based data row, i.e. the CSV line minus the header, plus its ``qa_id``), with a hint on how to
fix it. The CLI prints it on one line and exits with code 2; nothing downstream re-validates.
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
from questlab.schema import (
    BODY,
    ID,
    INPUT_COLUMNS,
    OPTIONAL_INPUTS,
    REQUIRED_TEXT,
    TARGETS,
    TEST_COLUMNS,
    TRAIN_COLUMNS,
)
from questlab.tasks import Task, TaskRef, load_task

Kind = Literal["train", "test"]


@dataclass(frozen=True)
class DataSummary:
    """What ``questlab check`` prints; built by ``summarize``."""

    kind: Kind
    rows: int
    questions: int
    answers_per_question: dict[str, float]
    text_lengths: pd.DataFrame  # rows: title/body/answer; cols: mean, p50, p90, max (characters)
    targets: pd.DataFrame | None  # rows: targets; cols: distinct, majority_share, mean
    blank_bodies: int  # bodies that are whitespace only (allowed, but worth knowing)


def load(path: str | Path, kind: Kind) -> pd.DataFrame:
    """Load and validate a train (inputs + 30 targets) or test (inputs only) QUEST CSV.

    Returns a frame with ``qa_id`` as int, text columns as str, targets as float64, in the
    canonical column order. Raises ``DataError`` on any problem.
    """
    path = Path(path)
    return _validate(read_csv(path), kind, path)


def validate_frame(frame: pd.DataFrame, kind: Kind, source: str = "DataFrame") -> pd.DataFrame:
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
    return _validate(text, kind, source)


def _cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _validate(frame: pd.DataFrame, kind: Kind, path: str | Path) -> pd.DataFrame:
    _check_columns(path, frame, kind)
    if len(frame) == 0:
        raise DataError(path, "the file has a header but no rows")
    if kind == "test":
        frame = frame.assign(**{c: "" for c in OPTIONAL_INPUTS if c not in frame.columns})
    frame = frame[list(TRAIN_COLUMNS if kind == "train" else TEST_COLUMNS)].copy()
    _check_ids(path, frame)
    _check_text(path, frame)
    if kind == "train":
        _check_targets(path, frame)
    return frame.reset_index(drop=True)


def load_train(path: str | Path) -> pd.DataFrame:
    """Load a labelled QUEST CSV (``qa_id``, 10 inputs, 30 targets)."""
    return load(path, "train")


def load_test(path: str | Path) -> pd.DataFrame:
    """Load an unlabelled QUEST CSV (``qa_id`` and the 10 inputs)."""
    return load(path, "test")


def check_pair(train: pd.DataFrame, test: pd.DataFrame, test_path: str | Path, task: TaskRef = None) -> None:
    """Cross-file checks: a test file must not repeat train ``qa_id``s (a leak or a mix-up)."""
    ID = load_task(task).id
    shared = np.intersect1d(train[ID].to_numpy(), test[ID].to_numpy())
    if len(shared):
        row = int(np.flatnonzero(test[ID].to_numpy() == shared[0])[0]) + 1
        raise DataError(
            test_path,
            f"{len(shared)} qa_id(s) also appear in the train file",
            column=ID,
            row=row,
            qa_id=shared[0],
            hint="test rows must be pairs the model was not trained on",
        )


def detect_kind(path: str | Path) -> Kind:
    """Guess whether a CSV is a train or a test file from its header (for ``questlab check``)."""
    frame = read_csv(path)
    return "train" if any(t in frame.columns for t in TARGETS) else "test"


def _check_columns(path: Path, frame: pd.DataFrame, kind: Kind) -> None:
    cols = list(frame.columns)  # never repeated: read_csv and validate_frame refuse that
    present_targets = [t for t in TARGETS if t in cols]
    if kind == "train" and not present_targets:
        raise DataError(
            path,
            "has no target columns: this looks like a test file, where a train file is expected",
            hint="give the labelled train.csv (qa_id, 10 inputs, 30 targets)",
        )
    if kind == "test" and present_targets:
        raise DataError(
            path,
            f"carries {len(present_targets)} target columns: this looks like a train file, where a "
            "test file is expected",
            column=present_targets[0],
            hint="give an unlabelled file (qa_id and the 10 input columns)",
        )
    expected = TRAIN_COLUMNS if kind == "train" else TEST_COLUMNS
    # Pairs to predict may leave out the optional inputs (user names and pages, url): empty cells.
    optional = OPTIONAL_INPUTS if kind == "test" else ()
    missing = [c for c in expected if c not in cols and c not in optional]
    if missing:
        what = "target" if missing[0] in TARGETS else "input"
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:4])}{'...' if len(missing) > 4 else ''})"
        more = more if len(missing) > 1 else ""
        needs = (
            "qa_id and the 5 required inputs (title, body, answer, category, host)"
            if kind == "test"
            else (f"{', '.join(expected[:4])}, ... (see questlab.schema)")
        )
        raise DataError(path, f"missing {what} column{more}", column=missing[0], hint=f"a {kind} file needs {needs}")
    unknown = [c for c in cols if c not in expected]
    if unknown:
        raise DataError(
            path,
            f"unknown column ({len(unknown)} unknown: {', '.join(unknown[:5])})",
            column=unknown[0],
            hint=f"a {kind} file holds only qa_id, the 10 input columns"
            + (" and the 30 targets" if kind == "train" else ""),
        )


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_INT64 = np.iinfo(np.int64)


def _check_ids(path: Path, frame: pd.DataFrame) -> None:
    """qa_ids to int64, exactly: digits, ``12.0`` read as 12 as always; ``1e30``/``1.2E+11`` lose digits: refused."""
    ids = []
    for i, text in enumerate(frame[ID].astype(str).str.strip()):
        if not _WHOLE_NUMBER.fullmatch(text):
            hint = "write each qa_id as a whole number in digits, e.g. 1234"
            raise DataError(path, f"qa_id {text!r} is not an integer", column=ID, row=i + 1, hint=hint)
        value = int(text.partition(".")[0])  # exact: never through a float
        if not _INT64.min <= value <= _INT64.max:
            raise DataError(path, f"qa_id {text!r} is outside the 64-bit integer range", column=ID, row=i + 1)
        ids.append(value)
    frame[ID] = np.array(ids, dtype=np.int64)
    dup = frame[ID].duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        first = int(np.flatnonzero((frame[ID] == frame[ID].iloc[i]).to_numpy())[0])
        raise DataError(
            path,
            f"duplicate qa_id (first seen at row {first + 1})",
            column=ID,
            row=i + 1,
            qa_id=int(frame[ID].iloc[i]),
            hint="each row must have its own qa_id",
        )


def _raise_at_first(
    path: Path, frame: pd.DataFrame, bad: pd.Series, column: str, message, hint: str | None = None
) -> None:
    """If any row is flagged in ``bad``, raise a DataError at the first one.

    ``message`` is a string or a function of the row position (to quote the bad value).
    """
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        text = message(i) if callable(message) else message
        raise DataError(path, text, column=column, row=i + 1, qa_id=int(frame[ID].iloc[i]), hint=hint)


def _check_text(path: Path, frame: pd.DataFrame) -> None:
    for col in INPUT_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str)
    for col in REQUIRED_TEXT:
        # A body may be whitespace only (the real train.csv has two, whose post was an image): the
        # title carries the question. Every other required column needs visible text.
        empty = (frame[col] == "") if col == BODY else (frame[col].str.strip() == "")
        _raise_at_first(
            path, frame, empty, col, f"empty or missing text ({int(empty.sum())} such rows)",
            hint="every pair needs a title, body, answer, category and host",
        )  # fmt: skip


def _check_targets(path: Path, frame: pd.DataFrame) -> None:
    for col in TARGETS:
        raw = frame[col].astype(str).str.strip()
        _raise_at_first(path, frame, raw == "", col, "missing target value")
        values = pd.to_numeric(raw, errors="coerce")
        _raise_at_first(path, frame, values.isna(), col, lambda i, raw=raw: f"non-numeric target value {raw.iloc[i]!r}")
        outside = (values < 0) | (values > 1)
        _raise_at_first(
            path, frame, outside, col, lambda i, v=values: f"target value {v.iloc[i]:g} outside [0, 1]",
            hint="targets are fractions of raters",
        )  # fmt: skip
        frame[col] = values.astype(np.float64)


def summarize(frame: pd.DataFrame, kind: Kind) -> DataSummary:
    """Rows, questions, answers per question, text lengths and per-target level statistics."""
    from questlab.folds import question_groups

    groups = question_groups(frame)
    per_q = pd.Series(groups).value_counts()
    lengths = pd.DataFrame(
        {
            col: frame[col].str.len().describe(percentiles=[0.5, 0.9])[["mean", "50%", "90%", "max"]].to_numpy()
            for col in ("question_title", "question_body", "answer")
        },
        index=["mean", "p50", "p90", "max"],
    ).T
    targets = None
    if kind == "train":
        rows = []
        for col in TARGETS:
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
        blank_bodies=int((frame[BODY].str.strip() == "").sum()),
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
        resolved = load_task(task)
        if resolved.fingerprint != load_task(None).fingerprint:  # TEMP (helper RUN): helper DATA validates
            return cls._read_other_task(source, kind, resolved)
        if isinstance(source, pd.DataFrame):
            frame = validate_frame(source, kind, source=f"{'train' if kind == 'train' else 'test'} DataFrame")
            digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
            return cls(frame, "DataFrame", digest)
        path = Path(source)
        return cls(load(path, kind), path.name, file_sha256(path))

    @classmethod
    def _read_other_task(cls, source: Data, kind: Kind, task: Task) -> Dataset:
        """TEMP (helper RUN): columns checked only; helper DATA's version validates every cell."""
        if isinstance(source, pd.DataFrame):
            frame, name = source.copy(), "DataFrame"
            digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()
        else:
            path = Path(source)
            frame, name, digest = pd.read_csv(path), path.name, file_sha256(path)
        columns = task.train_columns if kind == "train" else task.test_columns
        frame = frame.assign(**{c: "" for c in task.optional if c not in frame.columns})
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(name, f"no column {missing[0]!r} (task {task.name})", column=missing[0])
        frame = frame[list(columns)].reset_index(drop=True)
        frame[task.id] = frame[task.id].astype(str)
        for t in task.target_names if kind == "train" else ():
            frame[t] = frame[t].astype(np.float64)
        return cls(frame, name, digest)


Data = str | Path | pd.DataFrame | Dataset  # a QUEST CSV file, a frame with its columns, or one already read
