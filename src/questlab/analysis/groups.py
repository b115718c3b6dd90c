"""Where a run is weak (per host, per category, on its out-of-fold rows) and where its time went.

The run folder keeps qa_ids, not texts, so host and category come from the run's train file,
given again (``questlab diagnose RUN --train FILE``) and checked against the sha256 the run
recorded. A group's score is the mean over targets of the Spearman inside the group; a target
whose ratings (or predictions) are constant inside the group has no Spearman and is left out of
that mean (the count of defined targets is shown), never counted as 0 or 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from questlab.analysis.diagnose import RunArtifacts
from questlab.data import Dataset
from questlab.errors import UsageError

MIN_ROWS = 40  # a smaller group's Spearman is mostly noise (with ~10 rows it swings by +-0.3)
N_WEAKEST = 5


def read_inputs(run: RunArtifacts, path: str | Path) -> pd.DataFrame:
    """The id and feature columns (QUEST: host, category) of the run's train file; refuses a file
    other than the run's."""
    task = run.task
    data = Dataset.read(path, "train", task=task)
    want = run.meta.get("train_sha256")
    if want is not None and data.sha256 != want:
        raise UsageError(
            f"{path}: not the train data of run {run.record.run_id[:8]} (it was made with"
            f" {run.meta.get('train_file')}, sha256 {want[:12]}...): give that file"
        )
    return data.frame[[task.id, *task.features]]


def group_scores(run: RunArtifacts, inputs: pd.DataFrame, column: str, min_rows: int = MIN_ROWS) -> pd.DataFrame:
    """Per value of ``column`` with at least ``min_rows`` OOF rows: rows, questions, defined targets
    and the mean of the task metric's per-target values (its column: spearman, rmse), weakest first.
    Empty when the run has no usable OOF predictions."""
    metric = run.task.scorer
    value_col = metric.column
    scored = run.scored()
    if scored is None:
        return pd.DataFrame(columns=["rows", "questions", "targets_defined", value_col])
    y_true, y_pred = scored
    ID = run.task.id
    keys = run.oof[[ID, "group"]].merge(inputs, on=ID, how="left")
    rows = []
    for value, idx in keys.groupby(column, sort=False).indices.items():
        if len(idx) < min_rows:
            continue
        rho, _ = metric.per_target(y_true[idx], y_pred[idx])
        defined = int(np.isfinite(rho).sum())
        rows.append(
            {
                column: value,
                "rows": len(idx),
                "questions": int(keys["group"].iloc[idx].nunique()),
                "targets_defined": defined,
                value_col: float(np.nanmean(rho)) if defined else np.nan,
            }
        )
    frame = pd.DataFrame(rows, columns=[column, "rows", "questions", "targets_defined", value_col])
    weakest_first = metric.higher_is_better  # low values first where higher is better
    return frame.set_index(column).sort_values(value_col, ascending=weakest_first, na_position="first")


def n_small_groups(run: RunArtifacts, inputs: pd.DataFrame, column: str, min_rows: int = MIN_ROWS) -> int:
    """How many values of ``column`` have fewer than ``min_rows`` OOF rows (left out of the table)."""
    if run.oof is None:
        return 0
    key = run.task.id
    counts = run.oof[[key]].merge(inputs, on=key, how="left")[column].value_counts()
    return int((counts < min_rows).sum())


def timings_table(run: RunArtifacts) -> tuple[pd.DataFrame, float | None]:
    """Per fold: the seconds each recorded step took (fit, predict valid/test, ...); and the run's
    total wall time from run.json (None when not recorded, e.g. a run that crashed)."""
    per_fold = {k: log.timings for k, log in sorted(run.fit_logs.items()) if log.timings}
    frame = pd.DataFrame.from_dict(per_fold, orient="index").rename_axis("fold")
    known = [c for c in ("fit_s", "predict_valid_s", "predict_test_s", "embed_s", "head_s") if c in frame]
    frame = frame[known + [c for c in frame.columns if c not in known]]
    total = run.meta.get("timings", {}).get("total_s")
    return frame, float(total) if total is not None else None


__all__ = ["MIN_ROWS", "N_WEAKEST", "group_scores", "n_small_groups", "read_inputs", "timings_table"]
