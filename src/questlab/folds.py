"""Grouped k-fold: no question on both sides of any fold, deterministic from a seed.

The same question appears under several answers, sometimes with its text re-typed; rows are
joined into one group when they share a URL *or* a normalised title + body (connected
components), so neither key alone can leak a question across folds. ``holdout_rows`` holds out
whole questions of a fold's train rows, for the models that stop early on them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.errors import UsageError
from questlab.schema import BODY, PSEUDO, TITLE, URL
from questlab.tasks import TaskRef

FOLDS_FILE = "folds.csv"


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def question_groups(frame: pd.DataFrame) -> np.ndarray:
    """Return one integer group id per row: rows of the same question share an id.

    Ids are stable for the same data (they come from sorted key hashes, not row order).
    """
    keys_per_row = []
    for url, title, body in zip(frame[URL], frame[TITLE], frame[BODY], strict=True):
        keys = ["t:" + hashlib.sha1(f"{_normalise(title)}\n{_normalise(body)}".encode()).hexdigest()]
        if str(url).strip():
            keys.append("u:" + _normalise(str(url)))
        keys_per_row.append(keys)
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for keys in keys_per_row:
        root = find(keys[0])
        for k in keys[1:]:
            other = find(k)
            if other != root:
                parent[max(root, other)] = min(root, other)
                root = min(root, other)
    roots = [find(keys[0]) for keys in keys_per_row]
    index = {r: i for i, r in enumerate(sorted(set(roots)))}
    return np.array([index[r] for r in roots], dtype=np.int64)


def make_folds(frame: pd.DataFrame, n_splits: int = 5, seed: int = 42, task: TaskRef = None) -> pd.DataFrame:
    """Assign each row a fold in ``0..n_splits-1``, grouped by question and stratified by category.

    Returns a frame with columns ``qa_id``, ``group``, ``fold`` in the input's row order.
    """
    from questlab.tasks import load_task
    from questlab.tasks.grouping import group_ids, stratify_labels

    task = load_task(task)  # TEMP (helper RUN): the minimal task-aware folds; helper DATA owns them
    groups = group_ids(task, frame)
    n_groups = len(np.unique(groups))
    if n_splits < 2:
        raise UsageError(f"n_splits must be at least 2, got {n_splits}")
    if n_groups < n_splits:
        raise UsageError(f"only {n_groups} distinct questions: cannot make {n_splits} grouped folds")
    from sklearn.model_selection import StratifiedGroupKFold  # slow (~0.3 s): not for `questlab runs`

    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fold = np.full(len(frame), -1, dtype=np.int64)
    for k, (_, valid_idx) in enumerate(splitter.split(np.zeros(len(frame)), stratify_labels(task, frame), groups)):
        fold[valid_idx] = k
    return pd.DataFrame({task.id: frame[task.id].to_numpy(), "group": groups, "fold": fold})


def save_folds(folds: pd.DataFrame, folder: Path) -> Path:
    path = Path(folder) / FOLDS_FILE
    folds.to_csv(path, index=False)
    return path


def load_folds(path: Path, frame: pd.DataFrame, task: TaskRef = None) -> pd.DataFrame:
    """Load saved folds and align them to ``frame``'s rows; every qa_id must be covered."""
    from questlab.tasks import load_task

    ID = load_task(task).id
    saved = pd.read_csv(path)
    for col in (ID, "group", "fold"):
        if col not in saved.columns:
            raise UsageError(f"{path}: not a folds file (no {col!r} column)")
    aligned = frame[[ID]].merge(saved, on=ID, how="left")
    if aligned["fold"].isna().any():
        missing = aligned.loc[aligned["fold"].isna(), ID].iloc[0]
        raise UsageError(
            f"{path}: these folds do not cover the data (qa_id {missing} has no fold); "
            "they were made for another train file"
        )
    aligned["fold"] = aligned["fold"].astype(np.int64)
    aligned["group"] = aligned["group"].astype(np.int64)
    return aligned


def check_grouped(folds: pd.DataFrame) -> None:
    """Raise if any question group appears in more than one fold."""
    per_group = folds.groupby("group")["fold"].nunique()
    if (per_group > 1).any():
        g = per_group.index[per_group > 1][0]
        raise ValueError(f"question group {g} spans several folds: the folds leak")


def holdout_rows(groups: np.ndarray, share: float, seed: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """A boolean mask over rows: about ``share`` of the questions (``groups``), all their rows.

    Grouped so that no answer of a held-out question is trained on: a question seen in training
    would make the held-out score, and so the stopping epoch, late and optimistic. ``eligible``
    (a row mask) limits the draw to questions whose rows are all eligible: pseudo-labelled rows
    are trained on, never held out (``pseudo_rows``).
    """
    eligible = np.ones(len(groups), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    unique = np.unique(groups)
    candidates = np.setdiff1d(unique, groups[~eligible])
    n_hold = max(1, round(share * len(candidates)))
    if n_hold >= len(candidates):
        raise ValueError(
            f"{len(candidates)} question(s) in the fit: too few to hold out {share:g} of them for early "
            "stopping; use more rows, or early_stopping: valid"
        )
    held = np.random.default_rng(seed).choice(candidates, size=n_hold, replace=False)
    return np.isin(groups, held)


def pseudo_rows(frame: pd.DataFrame) -> np.ndarray:
    """The rows of a fold's train frame that are pseudo-labelled (the CV runner's ``PSEUDO`` column)."""
    return frame[PSEUDO].to_numpy(dtype=bool) if PSEUDO in frame.columns else np.zeros(len(frame), dtype=bool)
