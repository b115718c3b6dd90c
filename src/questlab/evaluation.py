"""A fitted model scored on a labelled file of its user's: ``questlab evaluate`` and ``Run.evaluate``.

The rows are predicted (targets hidden from the predictor) and scored against their own targets
with the run's metric, :func:`questlab.metric.score_cv`: mean over the 30 targets of the Spearman
correlation, constant columns counting 0, and a 95% interval that resamples whole questions
(:func:`questlab.folds.question_groups`). The file is one fold: the same model predicts every row.
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
from questlab.folds import question_groups
from questlab.metric import score_cv
from questlab.predict import needs_whole_file, predict_frame
from questlab.predictors import Predictor
from questlab.schema import ID, TARGETS, TEST_COLUMNS

N_BOOT = 200  # question resamples for the interval (a run's default `bootstrap`)


@dataclass
class Evaluation:
    """A model's score on labelled rows: the mean Spearman, its interval, and each target's."""

    score: float  # mean Spearman over the 30 targets (constant columns count 0)
    ci: tuple[float, float]  # 95% interval, resampling questions (NaN with n_boot 0)
    per_target: pd.DataFrame  # index: target; columns: spearman (NaN where undefined), status
    n_rows: int
    n_questions: int
    run_id: str = ""
    source: str = ""  # the file's name, or "DataFrame"
    n_boot: int = N_BOOT
    notes: list[str] = field(default_factory=list)  # e.g. rows the model was trained on
    predictions: pd.DataFrame | None = field(default=None, repr=False)  # qa_id + 30 columns

    def summary(self) -> str:
        """One line: score, interval, rows and questions."""
        low, high = self.ci
        ci = f" (95% CI {low:.4f}..{high:.4f})" if not math.isnan(low) else ""
        who = f"run {self.run_id[:8]} on " if self.run_id else ""
        return (
            f"{who}{self.source}: mean Spearman {self.score:.4f}{ci} over {self.n_rows} rows, "
            f"{self.n_questions} questions"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON (``strict_json`` writes the undefined ones as null)."""
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
            "per_target": [
                {"target": t, "spearman": float(r.spearman), "status": r.status} for t, r in self.per_target.iterrows()
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
) -> Evaluation:
    """Score ``predictor`` on labelled ``data`` (a train-format CSV path, DataFrame or Dataset).

    ``trained_on``: the qa_ids the model was fitted on, if known; rows among them are counted in a
    note (their score is optimistic). A file without the 30 target columns is a ``DataError``.
    """
    dataset = read_labelled(data)
    frame = dataset.frame
    predictions = _predict(predictor, frame[list(TEST_COLUMNS)])
    y_true = frame[list(TARGETS)].to_numpy(dtype=np.float64)
    y_pred = predictions[list(TARGETS)].to_numpy(dtype=np.float64)
    groups = question_groups(frame)
    scores = score_cv(y_true, y_pred, np.zeros(len(frame), dtype=np.int64), groups, n_boot=n_boot, seed=seed)
    notes = list(scores.notes)
    if trained_on is not None:
        seen = int(np.isin(frame[ID].to_numpy(), np.asarray(trained_on)).sum())
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
    )


def read_labelled(data: Any) -> Dataset:
    """A labelled file or frame, validated (a file without its targets: one ``DataError`` saying so)."""
    try:
        dataset = Dataset.read(data, "train")
    except DataError as exc:
        if exc.row is not None or not (exc.column in TARGETS or "no target columns" in exc.message):
            raise
        # target columns missing: say what evaluate needs (the train-format file's 30 targets)
        hint = "evaluate scores the predictions against the file's own targets: give a labelled file (all 30)"
        raise DataError(exc.file, exc.message, column=exc.column, hint=hint) from None
    if len(dataset.frame) < 2:
        raise DataError(dataset.name, "has 1 row: a Spearman correlation needs at least 2 rows")
    return dataset


def _predict(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """qa_id + 30 predictions, in pieces of ``CHUNK_ROWS`` rows unless the predictor needs them all."""
    if needs_whole_file(predictor) or len(frame) <= CHUNK_ROWS:
        return predict_frame(predictor, frame)
    pieces = [predict_frame(predictor, frame.iloc[i : i + CHUNK_ROWS]) for i in range(0, len(frame), CHUNK_ROWS)]
    return pd.concat(pieces, ignore_index=True)
