"""A fitted model scored on a labelled file of its user's: ``questlab evaluate`` and ``Run.evaluate``.

The rows are predicted (targets hidden from the predictor) and scored against their own targets
with the run's task metric (``task.scorer.score_cv``; QUEST: mean over the 30 targets of the
Spearman correlation, constant columns counting 0) and a 95% interval that resamples whole groups
of the task (:func:`questlab.tasks.grouping.group_ids`). The file is one fold: the same model
predicts every row.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from questlab.csvfile import CHUNK_ROWS
from questlab.data import Dataset
from questlab.errors import DataError
from questlab.predict import needs_whole_file, predict_frame
from questlab.predictors import Predictor
from questlab.recording import direction_note, score_label
from questlab.tasks import Task, TaskRef, load_task
from questlab.tasks.grouping import group_ids

N_BOOT = 200  # question resamples for the interval (a run's default `bootstrap`)


@dataclass
class Evaluation:
    """A model's score on labelled rows by the task's metric, its interval, and each target's."""

    score: float  # the task's metric (QUEST: mean Spearman over the 30 targets, constant columns count 0)
    ci: tuple[float, float]  # 95% interval, resampling groups (NaN with n_boot 0)
    per_target: pd.DataFrame  # index: target; columns: the metric's column (NaN where undefined), status
    n_rows: int
    n_questions: int  # groups of the task (QUEST: questions)
    run_id: str = ""
    source: str = ""  # the file's name, or "DataFrame"
    n_boot: int = N_BOOT
    notes: list[str] = field(default_factory=list)  # e.g. rows the model was trained on
    predictions: pd.DataFrame | None = field(default=None, repr=False)  # id + the task's targets
    task: Task = field(default_factory=load_task, repr=False)

    def summary(self) -> str:
        """One line: the metric's score, interval, rows and groups."""
        low, high = self.ci
        ci = f" (95% CI {low:.4f}..{high:.4f})" if not math.isnan(low) else ""
        who = f"run {self.run_id[:8]} on " if self.run_id else ""
        label, note = score_label(self.task), direction_note(self.task)
        return (
            f"{who}{self.source}: {label} {self.score:.4f}{ci}{note} over {self.n_rows} rows, {self.n_questions} groups"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (``strict_json`` writes the undefined ones as null)."""
        column = self.task.scorer.column
        return {
            "run_id": self.run_id,
            "input": self.source,
            "score": self.score,
            "ci_low": self.ci[0],
            "ci_high": self.ci[1],
            "n_rows": self.n_rows,
            "n_questions": self.n_questions,
            "n_boot": self.n_boot,
            "notes": self.notes,
            "task": self.task.name,
            "metric": self.task.metric,
            "per_target": [
                {"target": t, column: float(r[column]), "status": r["status"]} for t, r in self.per_target.iterrows()
            ],
        }

    def __repr__(self) -> str:
        low, high = self.ci
        return (
            f"Evaluation(score={self.score:.4f}, ci=({low:.4f}, {high:.4f}), n_rows={self.n_rows}, "
            f"source={self.source!r})"
        )

    def _repr_html_(self) -> str:
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        table = self.per_target.to_html(float_format=lambda v: f"{v:.4f}", na_rep="—")
        return f"<p><b>{html.escape(self.summary())}</b></p>{notes}{table}"


def evaluate(
    predictor: Predictor,
    data: Any,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    run_id: str | None = None,
    trained_on: Any = None,
    task: TaskRef = None,
) -> Evaluation:
    """Score ``predictor`` on labelled ``data`` (a train-format CSV path, DataFrame or Dataset).

    ``task``: the run's (default: the predictor's ``task``, else quest); the score is its metric's.
    ``trained_on``: the ids the model was fitted on, if known; rows among them are counted in a
    note (their score is optimistic). A file without the task's target columns is a ``DataError``.
    """
    task = load_task(task if task is not None else getattr(predictor, "task", None))
    dataset = read_labelled(data, task)
    frame = dataset.frame
    targets = list(task.target_names)
    inputs = [c for c in task.test_columns if c in frame.columns]
    predictions = _predict(predictor, frame[inputs])
    y_true = frame[targets].to_numpy(dtype=np.float64)
    y_pred = predictions[targets].to_numpy(dtype=np.float64)
    groups = group_ids(task, frame)
    folds = np.zeros(len(frame), dtype=np.int64)
    scores = task.scorer.score_cv(y_true, y_pred, folds, groups, task.target_names, n_boot=n_boot, seed=seed)
    notes = list(scores.notes)
    if trained_on is not None:
        seen = int(np.isin(frame[task.id].to_numpy(), np.asarray(trained_on)).sum())
        if seen:
            notes.append(
                f"{seen} of the {len(frame)} rows were in the run's train data: "
                "its models were fitted on them, so this score is optimistic"
            )
    return Evaluation(
        score=scores.score,
        ci=(scores.ci_low, scores.ci_high),
        per_target=scores.per_target,
        n_rows=len(frame),
        n_questions=len(np.unique(groups)),
        run_id=run_id or getattr(predictor, "run_id", "") or "",
        source=dataset.name,
        n_boot=n_boot,
        notes=notes,
        predictions=predictions,
        task=task,
    )


def read_labelled(data: Any, task: TaskRef = None) -> Dataset:
    """A labelled file or frame of ``task`` (None: quest), validated (a file without its targets: one
    ``DataError`` saying so)."""
    task = load_task(task)
    try:
        dataset = Dataset.read(data, "train", task=task)
    except DataError as exc:
        if exc.row is not None or not (exc.column in task.target_names or "no target columns" in exc.message):
            raise
        # target columns missing: say what evaluate needs (the train-format file's targets)
        hint = (
            "evaluate scores the predictions against the file's own targets: "
            f"give a labelled file (all {task.n_targets})"
        )
        raise DataError(exc.file, exc.message, column=exc.column, hint=hint) from None
    if len(dataset.frame) < 2:
        raise DataError(dataset.name, f"has 1 row: a {task.metric} score needs at least 2 rows")
    return dataset


def _predict(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """id + the task's predictions, in pieces of ``CHUNK_ROWS`` rows unless the predictor needs them all."""
    if needs_whole_file(predictor) or len(frame) <= CHUNK_ROWS:
        return predict_frame(predictor, frame)
    pieces = [predict_frame(predictor, frame.iloc[i : i + CHUNK_ROWS]) for i in range(0, len(frame), CHUNK_ROWS)]
    return pd.concat(pieces, ignore_index=True)
