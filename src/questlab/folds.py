"""K-fold assignment read from a task: grouped where the task groups rows, deterministic from a seed.

QUEST's question appears under several answers, sometimes with its text re-typed; the task joins
rows into one group when they share a URL *or* a normalised title + body (connected components,
``questlab.tasks.grouping``), so no group is on both sides of any fold. A task without groups
(ELL: one essay a row) gets stratified folds on its binned targets. ``holdout_rows`` holds out
whole groups of a fold's train rows, for the models that stop early on them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.errors import UsageError
from questlab.schema import PSEUDO
from questlab.tasks import TaskRef, load_task
from questlab.tasks.grouping import group_ids, stratify_labels

FOLDS_FILE = "folds.csv"


def question_groups(frame: pd.DataFrame) -> np.ndarray:
    """QUEST's groups: one integer id per row, rows of the same question sharing it.

    An alias kept for 0.9.0 callers: ``group_ids(load_task("quest"), frame)``. Ids are stable for
    the same data (they come from sorted key strings, not row order).
    """
    return group_ids(load_task("quest"), frame)


def make_folds(frame: pd.DataFrame, n_splits: int = 5, seed: int = 42, task: TaskRef = None) -> pd.DataFrame:
    """Assign each row a fold in ``0..n_splits-1`` as ``task`` says (QUEST: grouped by question,
    stratified by category).

    With groups: ``StratifiedGroupKFold``; without: ``StratifiedKFold`` on the task's stratify
    labels (its column, or binned targets). Returns a frame with columns ``[task.id, "group",
    "fold"]`` in the input's row order; ``group`` is each row's own index where the task has none.
    """
    task = load_task(task)
    if n_splits < 2:
        raise UsageError(f"n_splits must be at least 2, got {n_splits}")
    groups = group_ids(task, frame)
    labels = stratify_labels(task, frame)
    # slow imports (~0.3 s): not for `questlab runs`
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if task.groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < n_splits:
            raise UsageError(f"only {n_groups} distinct groups: cannot make {n_splits} grouped folds")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(frame)), labels, groups)
    else:
        if len(frame) < n_splits:
            raise UsageError(f"only {len(frame)} rows: cannot make {n_splits} folds")
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        if np.unique(labels, return_counts=True)[1].max() < n_splits:  # every label rarer than the folds
            labels = np.zeros(len(frame), dtype=np.int64)
        splits = splitter.split(np.zeros(len(frame)), labels)
    fold = np.full(len(frame), -1, dtype=np.int64)
    with warnings.catch_warnings():
        # "the least populated class has fewer members than n_splits": its rows spread as they can
        warnings.filterwarnings("ignore", message=".*least populated class.*", category=UserWarning)
        for k, (_, valid_idx) in enumerate(splits):
            fold[valid_idx] = k
    return pd.DataFrame({task.id: frame[task.id].to_numpy(), "group": groups, "fold": fold})


def save_folds(folds: pd.DataFrame, folder: Path) -> Path:
    path = Path(folder) / FOLDS_FILE
    folds.to_csv(path, index=False)
    return path


def load_folds(path: Path, frame: pd.DataFrame, task: TaskRef = None) -> pd.DataFrame:
    """Load saved folds and align them to ``frame``'s rows by the task's id; every id must be covered."""
    ID = load_task(task).id  # the id column, as schema.ID was
    text_ids = not pd.api.types.is_integer_dtype(frame[ID])  # text ids stay text ("007" is not 7)
    saved = pd.read_csv(path, dtype={ID: str} if text_ids else None, keep_default_na=not text_ids)
    for col in (ID, "group", "fold"):
        if col not in saved.columns:
            raise UsageError(f"{path}: not a folds file (no {col!r} column)")
    aligned = frame[[ID]].merge(saved, on=ID, how="left")
    if aligned["fold"].isna().any():
        missing = aligned.loc[aligned["fold"].isna(), ID].iloc[0]
        raise UsageError(
            f"{path}: these folds do not cover the data ({ID} {missing} has no fold); "
            "they were made for another train file"
        )
    aligned["fold"] = aligned["fold"].astype(np.int64)
    aligned["group"] = aligned["group"].astype(np.int64)
    return aligned


def check_grouped(folds: pd.DataFrame) -> None:
    """Raise if any group (QUEST: a question) appears in more than one fold."""
    per_group = folds.groupby("group")["fold"].nunique()
    if (per_group > 1).any():
        g = per_group.index[per_group > 1][0]
        raise ValueError(f"group {g} spans several folds: the folds leak")


def holdout_rows(groups: np.ndarray, share: float, seed: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """A boolean mask over rows: about ``share`` of the groups (QUEST: questions), all their rows.

    Grouped so that no answer of a held-out question is trained on: a question seen in training
    would make the held-out score, and so the stopping epoch, late and optimistic. ``eligible``
    (a row mask) limits the draw to groups whose rows are all eligible: pseudo-labelled rows
    are trained on, never held out (``pseudo_rows``).
    """
    eligible = np.ones(len(groups), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    unique = np.unique(groups)
    candidates = np.setdiff1d(unique, groups[~eligible])
    n_hold = max(1, round(share * len(candidates)))
    if n_hold >= len(candidates):
        raise ValueError(
            f"{len(candidates)} group(s) in the fit: too few to hold out {share:g} of them for early "
            "stopping; use more rows, or early_stopping: valid"
        )
    held = np.random.default_rng(seed).choice(candidates, size=n_hold, replace=False)
    return np.isin(groups, held)


def pseudo_rows(frame: pd.DataFrame) -> np.ndarray:
    """The rows of a fold's train frame that are pseudo-labelled (the CV runner's ``PSEUDO`` column)."""
    return frame[PSEUDO].to_numpy(dtype=bool) if PSEUDO in frame.columns else np.zeros(len(frame), dtype=bool)
