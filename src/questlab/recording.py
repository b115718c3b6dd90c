"""What every finished run records: OOF predictions, scores, the submission, MLflow metrics and tags.

CV runs (:mod:`questlab.cv`) and ensemble runs (:mod:`questlab.ensemble.build`) end the same way:
their folder's outputs are written through :class:`~questlab.rundir.RunFolder`, logged to the store,
and a complete run is logged as an MLflow model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.console import Say
from questlab.folds import FOLDS_FILE, load_folds
from questlab.metric import CVScore, score_cv
from questlab.rundir import RunFolder, predictions_frame
from questlab.schema import ID, TARGETS
from questlab.store import TAG_COMPLETE, Store


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """A nested mapping as dotted keys (``model.params.alpha``): how configs become MLflow params."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def finalize_run(
    store: Store,
    run_id: str,
    run: RunFolder,
    train: pd.DataFrame,
    test: pd.DataFrame | None,
    n_boot: int,
    selected: list[int],
    all_folds: list[int],
) -> CVScore:
    """Assemble the fold outputs of a run into OOF predictions, scores and the submission."""
    folds = load_folds(run / FOLDS_FILE, train)
    # The folds were just fitted, or checked against their sha256 when kept: existence is enough here.
    missing = [k for k in selected if not run.fold_is_done(k, verify=False)]
    if missing:
        raise RuntimeError(f"run {run_id}: fold(s) {missing} have no complete result")
    valid = pd.concat([run.read_fold_predictions(k, "valid") for k in selected], ignore_index=True)
    oof = folds.merge(valid, on=ID, how="inner")  # train row order, scored rows only
    truth = train.set_index(ID).loc[oof[ID], list(TARGETS)].reset_index()
    submission = None
    preds = [run.read_fold_predictions(k, "test") for k in selected]
    if preds and all(p is not None for p in preds):
        mean = np.mean([p[list(TARGETS)].to_numpy() for p in preds], axis=0)
        submission = predictions_frame(preds[0][ID], np.clip(mean, 0.0, 1.0))
    return record_outputs(store, run_id, run, oof, truth, submission, n_boot, selected, complete=selected == all_folds)


def record_outputs(
    store: Store,
    run_id: str,
    run: RunFolder,
    oof: pd.DataFrame,
    truth: pd.DataFrame,
    submission: pd.DataFrame | None,
    n_boot: int,
    selected: list[int],
    complete: bool,
) -> CVScore:
    """Write a run's OOF, truth, scores, per-target table and submission, and log its scores and
    completion tags: what CV runs and ensemble runs both record."""
    from questlab.rundir import OOF_FILE, PER_TARGET_FILE, SCORES_FILE, SUBMISSION_FILE, TRUTH_FILE

    cv = score_cv(
        truth[list(TARGETS)].to_numpy(),
        oof[list(TARGETS)].to_numpy(),
        oof["fold"].to_numpy(),
        oof["group"].to_numpy(),
        n_boot=n_boot,
    )
    run.write_outputs(oof, truth, cv.to_dict(), cv.per_target)
    if submission is not None:
        run.write_submission(submission)
    store.sync(run_id, OOF_FILE, TRUTH_FILE, SCORES_FILE, PER_TARGET_FILE, SUBMISSION_FILE)
    store.log_metrics(
        run_id,
        {
            "cv_score": cv.score,
            "cv_ci_low": cv.ci_low,
            "cv_ci_high": cv.ci_high,
            **{f"spearman.{t}": v for t, v in cv.per_target["spearman"].items()},
            "n_constant_pred": int((cv.per_target["status"] == "constant prediction").sum()),
        },
    )
    store.set_tags(run_id, {TAG_COMPLETE: str(complete).lower(), "questlab.folds_done": ",".join(map(str, selected))})
    return cv


def log_model(store: Store, run_id: str, say: Say) -> None:
    """Record the finished run as an MLflow model (``runs:/RUN_ID/model``)."""
    from questlab.export import log_run_model

    t0 = time.perf_counter()
    log_run_model(store, run_id)
    say(f"MLflow model logged as runs:/{run_id}/model ({time.perf_counter() - t0:.1f} s)")


def load_scores(run: RunFolder | Path) -> CVScore:
    """A run's recorded CVScore (from its folder)."""
    folder = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    return CVScore.from_dict(folder.read_scores())
