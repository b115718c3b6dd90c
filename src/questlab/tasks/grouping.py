"""Which rows belong together in validation, and what folds stratify on, read from a task.

Rows sharing any of the task's group keys are one group (connected components): QUEST's
question appears under several answers, sometimes re-typed, so a normalised title + body OR a
url joins rows and neither key alone can leak a question across folds. Ids are stable for the
same data: they come from the sorted key strings, not from row order.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

from questlab.tasks.spec import Task

N_TARGET_BINS = 5


def normalise(text: object) -> str:
    """Lower-cased, spaces collapsed, trimmed: how group key values are compared."""
    return re.sub(r"\s+", " ", str(text)).strip().lower()


def group_noun(task: Task) -> str:
    """What a task's rows form in messages (a held-out share, a dropped row): ``"groups"`` where the
    task groups rows (QUEST: questions), ``"rows"`` where every row is its own."""
    return "groups" if task.groups is not None else "rows"


def _key_string(i: int, values: list[str]) -> str | None:
    """Key ``i``'s string for one row; None where every value is empty (the key joins nothing).

    A one-column key uses its value; a key of several columns a hash of them joined by newlines.
    """
    if len(values) == 1:
        return f"k{i}:{values[0]}" if values[0] else None
    return f"k{i}:" + hashlib.sha1("\n".join(values).encode()).hexdigest()


def group_ids(task: Task, frame: pd.DataFrame) -> np.ndarray:
    """One integer group id per row; every row its own group where the task has no groups."""
    if task.groups is None:
        return np.arange(len(frame), dtype=np.int64)
    columns = {c: [normalise(v) for v in frame[c].fillna("")] for key in task.groups.any_of for c in key}
    keys_per_row: list[list[str]] = []
    for r in range(len(frame)):
        keys = [_key_string(i, [columns[c][r] for c in key]) for i, key in enumerate(task.groups.any_of)]
        keys = [k for k in keys if k is not None] or [f"row:{r}"]
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


def stratify_labels(task: Task, frame: pd.DataFrame) -> np.ndarray:
    """What folds stratify on: the task's column, or quantile bins of the row's mean scaled target.

    Several targets at once: each target is scaled to [0, 1] by its declared range and the row's
    mean is binned into ``N_TARGET_BINS`` quantile bins (a test file, with no targets, gets one bin).
    """
    if task.folds.stratify is not None:
        return frame[task.folds.stratify].astype(str).to_numpy()
    names = list(task.target_names)
    if not set(names) <= set(frame.columns):
        return np.zeros(len(frame), dtype=np.int64)
    scaled = (frame[names].to_numpy(dtype=np.float64) - task.lows) / (task.highs - task.lows)
    mean = scaled.mean(axis=1)
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, N_TARGET_BINS + 1)[1:-1]))
    return np.searchsorted(edges, mean, side="right").astype(np.int64)
