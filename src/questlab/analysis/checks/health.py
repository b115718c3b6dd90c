"""Run health: status, missing folds, and whether the predictions are usable at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from questlab.analysis.verdict import Verdict, folds_text
from questlab.store import TAG_ERROR, RunRecord
from questlab.tasks import Task, TaskRef, load_task


# --- run health -------------------------------------------------------------------------------
def check_status(record: RunRecord, meta: dict[str, Any], done_folds: list[int]) -> list[Verdict]:
    """Failed, interrupted or unfinished runs, and folds that are missing."""
    out = []
    error = record.tags.get(TAG_ERROR, "")
    if record.status == "FAILED":
        out.append(Verdict("error", "run.failed", f"the run FAILED: {error or 'no error recorded'}", {"error": error}))
    elif record.status == "KILLED":
        out.append(
            Verdict(
                "error",
                "run.interrupted",
                f"the run was interrupted (KILLED: {error or 'no reason recorded'}); "
                f"continue it with questlab run --resume {record.run_id} --train TRAIN.csv",
                {"error": error},
            )
        )
    elif record.status == "RUNNING":
        # A hard-killed process (kill -9, lost machine) never gets to mark its run: it stays RUNNING.
        out.append(
            Verdict(
                "error",
                "run.unfinished",
                "the run is still marked RUNNING: in progress, or killed hard before it could record its end",
                {"start_time": record.start_time},
            )
        )
    all_folds = [int(k) for k in meta.get("folds_all", [])]
    selected = [int(k) for k in meta.get("folds_selected", all_folds)]
    missing = [k for k in selected if k not in done_folds]
    not_run = [k for k in all_folds if k not in selected]
    if missing:
        out.append(
            Verdict(
                "error",
                "run.missing_folds",
                f"fold(s) {folds_text(missing)} have no finished result",
                {"missing": missing, "done": done_folds},
            )
        )
    # A run given a subset of folds (--fold k) is partial by design; an interrupted one is not.
    if not_run:
        out.append(
            Verdict(
                "warning",
                "run.partial",
                f"partial run: folds {folds_text(selected)} of {len(all_folds)} were run"
                f" (not run: {folds_text(not_run)}); merge partial runs with `questlab collect`",
                {"folds_selected": selected, "folds_all": all_folds},
            )
        )
    if not out:
        out.append(Verdict("ok", "run.health", f"run finished with all {len(all_folds) or '?'} folds", {}))
    return out


def check_prediction_values(
    oof: pd.DataFrame | None, test_preds: dict[str, pd.DataFrame], task: TaskRef = None
) -> list[Verdict]:
    """NaN in the out-of-fold predictions; NaN or values outside the targets' ranges in the test predictions."""
    task = load_task(task)
    TARGETS = task.target_names
    out = []
    if oof is None:
        return [Verdict("error", "pred.missing", "no out-of-fold predictions (oof.csv): nothing can be scored", {})]
    pred = oof[list(TARGETS)].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(pred)
    if bad.any():
        rows, cols = np.nonzero(bad)
        out.append(
            Verdict(
                "error",
                "pred.nan",
                f"{int(bad.sum())} out-of-fold predictions are NaN/inf (first: fold {int(oof['fold'].iloc[rows[0]])},"
                f" {TARGETS[cols[0]]})",
                {"n": int(bad.sum()), "targets": sorted({TARGETS[c] for c in cols})},
            )
        )
    for name, frame in test_preds.items():
        values = frame[list(TARGETS)].to_numpy(dtype=np.float64)
        n_nan = int((~np.isfinite(values)).sum())
        n_out = int(((values < task.lows) | (values > task.highs)).sum())
        if n_nan or n_out:
            out.append(
                Verdict(
                    "error",
                    "test.range",
                    f"test predictions ({name}): {n_nan} NaN, {n_out} outside {_ranges(task)}"
                    f" (range {np.nanmin(values):.3g}..{np.nanmax(values):.3g})",
                    {"file": name, "n_nan": n_nan, "n_out_of_range": n_out},
                )
            )
    if not out:
        out.append(
            Verdict(
                "ok", "pred.values", f"predictions finite; test predictions in [0, 1] ({len(test_preds)} files)", {}
            )
        )
    return out


def _ranges(task: Task) -> str:
    """The targets' range as a message says it: ``[0, 1]`` when they share one."""
    pairs = sorted({(t.low, t.high) for t in task.targets})
    return ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in pairs)
