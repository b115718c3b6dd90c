"""Predictions for new pairs from any predictor (:mod:`questlab.predictors`), nothing refitted.

Predictors are loaded from a store (:func:`~questlab.predictors.load_predictor`) or from a saved
folder (a bundle, :func:`questlab.bundle.load_bundle`); ``questlab predict``, ``questlab serve``
and the MLflow pyfunc model all predict through the functions here.

Files are read in pieces (:func:`read_test_chunks`, ``CHUNK_ROWS`` rows at a time) and their
predictions written piece by piece (:func:`stream_predictions`), so any size of file predicts in
flat memory. Each piece is validated with the rules of a whole file, row numbers counting from the
top of the file, and an id repeated across pieces is refused like one repeated inside one.

Every file is read against the predictor's task (``predictor.task``): its id and input columns,
and the submission is ``[task.id, *task.target_names]``. A file whose columns are another built-in
task's (none of this task's texts, all of the other's) is refused naming both tasks.

A labelled (train-format) file predicts too: its target columns are dropped before validation,
and the ``say`` callback is told so once (``questlab evaluate`` is what scores against them).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from questlab import console
from questlab.console import Say
from questlab.csvfile import CHUNK_ROWS, iter_csv
from questlab.data import validate_frame
from questlab.errors import DataError, UsageError
from questlab.predictors import EnsemblePredictor, FoldAverage, Predictor, load_predictor, task_of
from questlab.tasks import Task, TaskRef, builtin_task_names, load_task

__all__ = [
    "EnsemblePredictor",
    "FoldAverage",
    "Predictor",
    "check_file_task",
    "iter_predictions",
    "load_predictor",
    "predict_file",
    "predict_frame",
    "read_test_chunks",
    "stream_predictions",
    "without_targets",
    "writing",
]


def predict_frame(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """The id + the task's predictions, submission column order, for a validated test-format frame."""
    task = task_of(predictor)
    return task_predictions_frame(task, frame[task.id], predictor.predict(frame))


def task_predictions_frame(task: Task, ids: object, pred: np.ndarray) -> pd.DataFrame:
    """``[task.id, *task.target_names]``: the one format predictions are written in (QUEST: qa_id + 30)."""
    out = pd.DataFrame(np.asarray(pred), columns=list(task.target_names))
    out.insert(0, task.id, np.asarray(ids))
    return out


def check_file_task(columns: object, task: Task, source: str | Path, who: str = "this bundle") -> None:
    """A UsageError when a file's columns belong to another built-in task, naming both tasks.

    "Belongs to another task": the file has none of ``task``'s text columns but every text and
    feature column of another built-in task. Anything else is left to the data checks (which name
    the missing column).
    """
    names = {str(c).strip() for c in columns}  # type: ignore[union-attr]
    if names & set(task.text_names):
        return
    for name in builtin_task_names():
        other = load_task(name)
        if other.fingerprint != task.fingerprint and set(other.required_inputs) <= names:
            raise UsageError(
                f"{source}: {who} predicts task {task.name!r}; the file looks like task {other.name!r} "
                f"(it has {', '.join(other.text_names)}, none of {', '.join(task.text_names)}): "
                f"predict it with a run of task {other.name!r}"
            )


def labelled_note(source: str | Path, n_targets: int) -> str:
    """The one line said when pairs to predict carry target columns."""
    return (
        f"note: {source} carries {n_targets} target column{'s' if n_targets > 1 else ''}: ignored for predicting "
        "(questlab evaluate scores predictions against them)"
    )


def without_targets(frame: pd.DataFrame, source: str | Path, say: Say | None, task: TaskRef = None) -> pd.DataFrame:
    """``frame`` without the task's target columns, saying so (``say`` None: the frame as it is, for
    the test-format check to refuse)."""
    targets = set(load_task(task).target_names)
    labelled = [c for c in frame.columns if str(c).strip() in targets]
    if not labelled or say is None:
        return frame
    say(labelled_note(source, len(labelled)))
    return frame.drop(columns=labelled)


def read_test_chunks(
    path: str | Path,
    chunk_rows: int = CHUNK_ROWS,
    say: Say | None = None,
    task: TaskRef = None,
    who: str = "this bundle",
) -> Iterator[pd.DataFrame]:
    """A test-format CSV of ``task`` as validated pieces of at most ``chunk_rows`` rows (``load_test``'s rules).

    Errors name the row in the whole file; an id seen in an earlier piece is a duplicate (the ids
    seen are kept as one sorted array). With ``say``, a labelled file is read too: its target
    columns are dropped and ``say`` is told once; without, it is refused. A file of another
    built-in task is refused naming both (``who`` is what predicts ``task``).
    """
    task = load_task(task)
    key = task.id
    seen: np.ndarray | None = None
    id_chunks: list[np.ndarray] = []
    for first_row, text in iter_csv(path, chunk_rows):
        if seen is None:
            check_file_task(text.columns, task, path, who)
        text = without_targets(text, path, say, task)
        say = console.quiet if say is not None else None  # told once, on the first piece
        try:
            frame = validate_frame(text, "test", source=str(path), task=task)
        except DataError as exc:
            raise _shifted(exc, first_row - 1) from None
        ids = frame[key].to_numpy()
        if seen is None:
            seen = ids[:0]
        again = np.isin(ids, seen)
        if again.any():
            i = int(np.flatnonzero(again)[0])
            first = int(np.flatnonzero(np.concatenate(id_chunks) == ids[i])[0])
            raise DataError(
                path,
                f"duplicate {key} (first seen at row {first + 1})",
                column=key,
                row=first_row + i,
                qa_id=ids[i].item() if hasattr(ids[i], "item") else ids[i],
                hint=f"each row must have its own {key}",
                id_name=key,
            )
        id_chunks.append(ids)
        seen = np.union1d(seen, ids)
        yield frame


def _shifted(exc: DataError, offset: int) -> DataError:
    """A piece's error with its rows counted from the top of the file."""
    if not offset or exc.row is None:
        return exc
    message = re.sub(r"first seen at row (\d+)", lambda m: f"first seen at row {int(m[1]) + offset}", exc.message)
    return DataError(exc.file, message, exc.column, exc.row + offset, exc.qa_id, exc.hint, id_name=exc.id_name)


def needs_whole_file(predictor: Predictor) -> bool:
    """Whether a predictor's output for a row depends on other rows of the same question (an
    ensemble, or one of its members, with a question share)."""
    combiner = getattr(predictor, "combiner", None)
    if combiner is not None and combiner.question_share is not None:
        return True
    return any(needs_whole_file(m) for m in getattr(predictor, "members", []))


def iter_predictions(
    predictor: Predictor, input_path: str | Path, chunk_rows: int = CHUNK_ROWS, say: Say = console.stderr
) -> Iterator[pd.DataFrame]:
    """The id + the task's predictions for each piece of a test-format CSV, in file order.

    Rows are predicted independently by every model questlab has, with two exceptions. An
    ensemble's constant-column fallback (see ``EnsemblePredictor.predict``) is decided per piece.
    An ensemble with a question share averages over a question's answers wherever they are in the
    file, so such a predictor reads the file as one piece (memory then grows with the file).
    A labelled file's targets are ignored, and ``say`` told so once.
    """
    if needs_whole_file(predictor):
        chunk_rows = sys.maxsize
    who = f"run {predictor.run_id}"
    for frame in read_test_chunks(input_path, chunk_rows, say=say, task=task_of(predictor), who=who):
        yield predict_frame(predictor, frame)


@contextmanager
def writing(path: Path) -> Iterator[TextIO]:
    """A text file written through a temporary file beside it, renamed into place only when the
    block finishes: an error (bad row in a later piece, Ctrl-C) leaves no half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            yield fh
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def stream_predictions(
    predictor: Predictor,
    input_path: str | Path,
    output: str | Path | TextIO,
    chunk_rows: int = CHUNK_ROWS,
    say: Say = console.stderr,
) -> int:
    """Predict a test-format CSV piece by piece into ``output`` (a path, written atomically, or an
    open text stream such as stdout); return the number of rows. Memory holds one piece."""
    if isinstance(output, (str, Path)):
        with writing(Path(output)) as fh:
            return stream_predictions(predictor, input_path, fh, chunk_rows, say)
    rows = 0
    for out in iter_predictions(predictor, input_path, chunk_rows, say):
        out.to_csv(output, header=rows == 0, index=False)
        rows += len(out)
    if output is sys.stdout:
        output.flush()
    return rows


def predict_file(
    predictor: Predictor,
    input_path: Path,
    output_path: Path | None,
    chunk_rows: int = CHUNK_ROWS,
    say: Say = console.stderr,
) -> pd.DataFrame:
    """Validate ``input_path`` (a test-format CSV), predict; write the id + targets to ``output_path``
    (when given) and return them. The input is read in pieces; the predictions are held in
    memory to be returned (``stream_predictions`` holds none)."""
    out = pd.concat(list(iter_predictions(predictor, input_path, chunk_rows, say)), ignore_index=True)
    if output_path is not None:
        with writing(Path(output_path)) as fh:
            out.to_csv(fh, index=False)
    return out
