"""The leaderboard: every run with what its score was measured on; only comparable runs ranked together."""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
from collections.abc import Mapping

import numpy as np
import pandas as pd

from questlab.errors import UsageError
from questlab.metrics import METRICS
from questlab.rundir import (
    TAG_COMPLETE,
    TAG_DATA,
    TAG_FOLDS_DONE,
    TAG_METRIC,
    TAG_MODEL,
    TAG_ROWS,
    TAG_SPLIT,
    TAG_TASK,
    comparability,
)
from questlab.store import RunRecord, Store
from questlab.store.liveness import is_dead
from questlab.tasks import DEFAULT_TASK, load_task

SORT_KEYS = ("start", "cv", "name", "model")


def leaderboard(
    st: Store,
    sort: str = "start",
    model: str | None = None,
    name: str | None = None,
    tags: Mapping[str, str] | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The leaderboard: one row per run, filtered and sorted.

    ``sort``: start (newest first), cv (best first, unscored last), name or model. ``model`` and
    ``name`` are shell patterns (``tfidf*``; a name given exactly matches too, brackets and all:
    ``tfidf[alpha=30]``); ``tags`` must all match exactly.

    Each row says what its score was measured on: ``rows`` (out-of-fold rows scored), ``data`` (the
    train file's sha256, short) and ``folds_id`` (the row id -> fold assignment's sha256, short); "?"
    where a run recorded none and its files cannot tell (an old run in a remote store). Scores are
    comparable only inside a ``group``: whole, scored runs of the same task with the same data, folds
    and rows (A is the group holding the best score, then B, ...); ``rank`` is the place inside the
    group, by the task's metric (``metric``: for an error metric the lowest score is rank 1). Partial
    runs (some folds only), unscored runs and runs of unknown rows have no group and no rank: with
    ``sort="cv"`` they come after every group.
    """
    if sort not in SORT_KEYS:
        raise UsageError(f"sort by {sort!r}? choose one of {', '.join(SORT_KEYS)}")
    if limit is not None and limit < 1:
        raise UsageError(f"limit {limit}: give a positive number")
    records = st.list_runs()
    rows = []
    for r in records:
        if model and not fnmatch.fnmatch(r.tags.get(TAG_MODEL, ""), model):
            continue
        if name and r.name != name and not fnmatch.fnmatch(r.name, name):  # exact first: names hold [ ]
            continue
        if status and r.status != status.upper():
            continue
        if tags and any(r.tags.get(k) != v for k, v in tags.items()):
            continue
        seen = _scored_on(r, st)
        rows.append(
            {
                "run_id": r.run_id,
                "name": r.name,
                "model": r.tags.get(TAG_MODEL, ""),
                "task": r.tags.get(TAG_TASK, DEFAULT_TASK),  # runs before tasks: QUEST's
                "metric": r.tags.get(TAG_METRIC, load_task(None).metric),
                "kind": r.kind,
                "status": "DEAD" if is_dead(r.status, r.tags) else r.status,  # RUNNING, but its process is gone
                "cv": r.metrics.get("cv_score", np.nan),
                "ci_low": r.metrics.get("cv_ci_low", np.nan),
                "ci_high": r.metrics.get("cv_ci_high", np.nan),
                "folds": r.tags.get(TAG_FOLDS_DONE, ""),
                "complete": r.tags.get(TAG_COMPLETE) == "true",
                "rows": seen[TAG_ROWS],
                "data": seen[TAG_DATA],
                "folds_id": seen[TAG_SPLIT],
                "started": dt.datetime.fromtimestamp(r.start_time),
            }
        )
    columns = [
        "run_id", "name", "model", "task", "metric", "kind", "status", "cv", "ci_low", "ci_high", "folds", "complete",
        "rows", "data", "folds_id", "group", "rank", "started",
    ]  # fmt: skip
    frame = _rank_in_groups(pd.DataFrame(rows, columns=[c for c in columns if c not in ("group", "rank")]))
    frame = frame[columns]
    frame["rows"] = frame["rows"].map(lambda v: int(v) if str(v).isdigit() else v)
    if sort == "cv":
        ranked = frame[frame["group"] != ""]
        ranked = ranked.assign(_n=ranked["group"].str.len()).sort_values(["_n", "group", "rank"], kind="stable")
        ranked = ranked.drop(columns="_n")
        rest = frame[frame["group"] == ""]
        rest = rest.assign(_s=rest["cv"] * _signs(rest)).sort_values(
            "_s", ascending=False, na_position="last", kind="stable"
        )
        rest = rest.drop(columns="_s")
        frame = pd.concat([ranked, rest], ignore_index=True) if len(rest) else ranked.reset_index(drop=True)
    else:
        order = {"start": ("started", False), "name": ("name", True), "model": ("model", True)}
        by, ascending = order[sort]
        frame = frame.sort_values(by, ascending=ascending, na_position="last", kind="stable", ignore_index=True)
    return frame.head(limit) if limit is not None else frame


UNKNOWN = "?"  # a run's rows, data or folds that neither its tags nor its files tell


def _scored_on(record: RunRecord, store: Store) -> dict[str, str]:
    """Rows, data and folds fingerprints of a run: its tags, else (older runs in a local store) its files."""
    keys = (TAG_ROWS, TAG_DATA, TAG_SPLIT)
    found = {k: record.tags[k] for k in keys if record.tags.get(k)}
    if len(found) < len(keys) and store.is_local and "cv_score" in record.metrics:
        with contextlib.suppress(Exception):  # a damaged old run is listed with "?", never breaks the listing
            found = {**comparability(record.folder), **found}  # a local folder: no download, a few small reads
    return {k: found.get(k, UNKNOWN) for k in keys}


def _rank_in_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``group`` (A, B, ...: whole scored runs on the same data, folds and rows; A holds the best
    score) and ``rank`` (1 = best inside its group); "" and NaN for runs that cannot be ranked."""
    frame = frame.copy()
    frame["group"], frame["rank"] = "", np.nan
    keys = ["task", "metric", "data", "folds_id", "rows"]  # runs of two tasks never compare
    rankable = frame["complete"] & frame["cv"].notna() & (frame[keys] != UNKNOWN).all(axis=1)
    # "higher is better" for every metric: an error metric's score negated
    frame["_s"] = frame["cv"] * _signs(frame)
    whole = frame[rankable]
    if whole.empty:
        return frame.drop(columns="_s")
    best = whole.groupby(keys, sort=False)["_s"].max().sort_values(ascending=False, kind="stable")
    for i, key in enumerate(best.index):
        sel = rankable & (frame[keys] == pd.Series(key, index=keys)).all(axis=1)
        frame.loc[sel, "group"] = _group_letter(i)
        frame.loc[sel, "rank"] = frame.loc[sel, "_s"].rank(ascending=False, method="min")
    return frame.drop(columns="_s")


def _signs(frame: pd.DataFrame) -> pd.Series:
    """Per run: +1 where its metric is higher-is-better, -1 where lower is (unknown metrics: +1)."""
    return frame["metric"].map(lambda m: METRICS[m].sign if m in METRICS else 1.0).astype(np.float64)


def _group_letter(i: int) -> str:
    """A, B, ..., Z, AA, AB, ...: a group's label."""
    label = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        label = chr(ord("A") + r) + label
    return label
