"""Verdicts on a recorded run: what went wrong (or right), each with its evidence.

Every check is one small function over what a run folder holds (see ``questlab.rundir``): the
out-of-fold predictions and truth, the per-fold fit logs, the test predictions, the run's
status. A check returns ``Verdict`` objects (severity, code, one-line message, evidence); none
of them trains anything, so ``diagnose`` works for any model family and for ensembles.

Thresholds (in the checks modules), and why (docs/analysis.md says the same for users):

- near-constant: >= 90% of a fold's rows share one predicted value. Spearman then sees one big
  tie; the model can at best order the remaining 10%.
- failed fold: scores below half the median of the other folds. Weak fold: more than 3
  bootstrap standard errors (groups, QUEST's questions, resampled inside the fold) and more than 0.02 below the
  others' median, so ordinary fold-to-fold noise is not called a failure.
- imbalanced target: >= 90% of rows share the most common rating (the bar ``questlab check``
  colours red). It is "not ranked" when the 95% interval of its Spearman reaches 0.
- squashed predictions: prediction std below 10% of the truth std. A least-squares fit has a
  spread of about |r| times the truth's; with r around 0.3 to 0.6 here, 10% is squeezed far
  beyond what shrinkage explains.
- folds on different scales: a target whose folds' mean Spearman beats its pooled Spearman by
  more than 0.05 (consistent models stay under 0.02 here; mixed post-processing reaches 0.15).
- truncation: worth a warning when >= 20% of a text part is cut and a cut text loses >= 10%
  of its tokens on average.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab.analysis.checks.fitting import check_fitting, check_truncation
from questlab.analysis.checks.folds import (
    check_constant_predictions,
    check_fold_scales,
    check_weak_folds,
    constant_predictions,
)
from questlab.analysis.checks.health import check_prediction_values, check_status
from questlab.analysis.checks.targets import (
    check_imbalance,
    check_spread,
    check_worst_targets,
    imbalance_table,
    target_intervals,
)
from questlab.analysis.verdict import SEVERITIES, Verdict, by_severity, folds_text, rounded
from questlab.metrics import Metric
from questlab.models.base import FitLog
from questlab.recording import direction_note, score_label
from questlab.rundir import META_FILE, read_task
from questlab.store import RunRecord, Store
from questlab.tasks import Task, load_task


@dataclass
class RunArtifacts:
    """What a run folder holds, loaded once. Any part may be missing (failed or partial runs)."""

    record: RunRecord
    meta: dict[str, Any]
    oof: pd.DataFrame | None  # the task's id, group, fold, one prediction per target
    truth: pd.DataFrame | None  # the task's id and targets, aligned row by row to ``oof``
    fit_logs: dict[int, FitLog]
    test_preds: dict[str, pd.DataFrame]  # "submission" and "fold K" -> the id + one prediction per target
    task: Task = field(default_factory=load_task)  # the run's task (its metric scores it)

    @property
    def dir(self) -> Path:
        return self.record.dir

    def scored(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(truth, predictions) as arrays, or None when the run has no usable OOF predictions."""
        if self.oof is None or self.truth is None:
            return None
        targets = list(self.task.target_names)
        pred = self.oof[targets].to_numpy(dtype=np.float64)
        if not np.isfinite(pred).all():
            return None
        return self.truth[targets].to_numpy(dtype=np.float64), pred


@dataclass
class Diagnosis:
    """The verdicts of a run and the per-target intervals they (and the report) rest on."""

    run: RunArtifacts
    verdicts: list[Verdict]
    intervals: pd.DataFrame | None  # index target; the metric's column (spearman, rmse), low, high, status


def load_artifacts(store: Store, run_id: str) -> RunArtifacts:
    """Read a run's folder: run.json, OOF predictions and truth, fit logs, test predictions."""
    record = store.get(run_id)
    run = record.folder
    meta = run.read_meta().model_dump(mode="json") if run.has(META_FILE) else {}
    task = read_task(run)
    oof = truth = None
    if run.has_oof():
        oof = run.read_oof()
        truth = run.read_truth(oof[task.id])
    fit_logs = {k: FitLog.from_dict(log) for k, log in run.read_fit_logs().items()}
    test_preds = {f"fold {k}": frame for k, frame in run.read_fold_test_predictions().items()}
    submission = run.read_submission()
    if submission is not None:
        test_preds["submission"] = submission
    return RunArtifacts(record, meta, oof, truth, fit_logs, test_preds, task)


# --- the whole diagnosis ----------------------------------------------------------------------


def analyse(store: Store, run_id: str, n_boot: int = 200, seed: int = 0) -> Diagnosis:
    """Load a run and run every check; the interval table is kept for the report."""
    run = load_artifacts(store, run_id)
    done = run.record.folder.done_folds()
    broken = {k: run.record.folder.fold_problems(k) for k in done}
    broken = {k: p for k, p in broken.items() if p}
    done = [k for k in done if k not in broken]
    if not done and run.record.kind == "ensemble":
        done = [int(k) for k in run.meta.get("folds_selected", run.meta.get("folds_all", []))]
    verdicts = check_status(run.record, run.meta, done)
    if broken:
        problems = [p for ps in broken.values() for p in ps]
        verdicts.append(
            Verdict(
                "error",
                "run.files",
                f"{len(problems)} recorded file(s) missing or changed: {'; '.join(problems[:3])}"
                f"{' ...' if len(problems) > 3 else ''}; resume the run to refit fold(s) {folds_text(sorted(broken))}",
                {"problems": problems},
            )
        )
    verdicts += check_prediction_values(run.oof, run.test_preds, run.task)
    intervals = None
    scored = run.scored()
    if scored is not None and not run.task.scorer.rank_based:
        y_true, y_pred = scored
        folds, groups = run.oof["fold"].to_numpy(), run.oof["group"].to_numpy()
        intervals, found = _error_metric_checks(run.task, y_true, y_pred, folds, groups, n_boot, seed)
        verdicts += found
    elif scored is not None:
        y_true, y_pred = scored
        folds, groups = run.oof["fold"].to_numpy(), run.oof["group"].to_numpy()
        intervals = target_intervals(y_true, y_pred, groups, n_boot=n_boot, seed=seed)
        # Constant in every fold: the pooled OOF Spearman of such a column only measures how the
        # fold constants differ, so it is not a ranking and the per-target checks must know.
        always_const = constant_predictions(y_pred, folds).all(axis=0)
        # Like the recorded score (metric.score_cv), such a column counts 0.
        intervals.loc[always_const[always_const].index, "status"] = "constant in every fold"
        intervals.loc[always_const[always_const].index, ["spearman", "low", "high"]] = np.nan
        score = float(np.nan_to_num(intervals["spearman"].to_numpy(), nan=0.0).mean())
        verdicts.append(
            Verdict(
                "info",
                "score",
                f"CV mean Spearman {score:.4f} over {len(y_true)} out-of-fold rows,"
                f" folds {folds_text(sorted(set(folds.tolist())))}",
                {"score": rounded(score), "rows": len(y_true)},
            )
        )
        verdicts += check_constant_predictions(y_true, y_pred, folds)
        if always_const.all():
            verdicts.append(
                Verdict("info", "checks.skipped", "fold, target and spread checks skipped: nothing is ranked", {})
            )
        else:
            verdicts += check_weak_folds(y_true, y_pred, folds, groups, n_boot=n_boot, seed=seed)
            verdicts += check_fold_scales(y_true, y_pred, folds)
            verdicts += check_worst_targets(intervals)
            verdicts += check_imbalance(y_true, y_pred, intervals)
            verdicts += check_spread(y_true, y_pred, folds)
    verdicts += check_fitting(run.fit_logs)
    verdicts += check_truncation(run.fit_logs)
    return Diagnosis(run=run, verdicts=verdicts, intervals=intervals)


def _error_metric_checks(
    task: Task, y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> tuple[pd.DataFrame, list[Verdict]]:
    """The checks of a metric that is not rank-based (an error, lower is better): its per-target
    values with intervals, the score, fold spread, the worst targets, and constant predictions,
    which such a metric scores (merely weak: a target's mean) where a rank metric cannot."""
    metric: Metric = task.scorer
    values, status = metric.per_target_cv(y_true, y_pred, folds)
    boots = metric.bootstrap_targets(y_true, [y_pred], groups, n_boot=max(n_boot, 1), seed=seed)[0]
    names = pd.Index(task.target_names, name="target")
    intervals = pd.DataFrame(
        {
            metric.column: values,
            "low": np.percentile(boots, 2.5, axis=0),
            "high": np.percentile(boots, 97.5, axis=0),
            "status": status,
        },
        index=names,
    )
    score = metric.combine(values)
    label, note = score_label(metric), direction_note(metric)
    out = [
        Verdict(
            "info",
            "score",
            f"CV {label} {score:.4f}{note} over {len(y_true)} out-of-fold rows,"
            f" folds {folds_text(sorted(set(folds.tolist())))}",
            {"score": rounded(score), "rows": len(y_true), "metric": metric.name},
        )
    ]
    const = np.all([np.ptp(y_pred[folds == k], axis=0) <= 1e-12 for k in np.unique(folds)], axis=0)
    undefined = [t for t, s in zip(task.target_names, status, strict=True) if s != "ok"]
    weak = [t for t, c in zip(task.target_names, const, strict=True) if c and t not in undefined]
    if weak:  # the metric gave them a value: not undefined, not counted 0, just no better than a mean
        shown = ", ".join(f"{t} ({metric.column} {intervals.loc[t, metric.column]:.4f})" for t in weak[:5])
        out.append(
            Verdict(
                "warning",
                "pred.constant",
                f"{len(weak)} target(s) predicted constant inside every fold: {shown}; {metric.name} still scores"
                " them (weak: a constant is no better than the train mean), nothing is undefined",
                {"targets": weak, "metric": metric.name, "undefined": False},
            )
        )
    per_fold = [metric.score(y_true[folds == k], y_pred[folds == k]) for k in np.unique(folds)]
    worst_fold = int(np.unique(folds)[metric.best([-v for v in per_fold])])
    out.append(
        Verdict(
            "info",
            "folds.spread",
            f"fold {metric.name}: {', '.join(f'{v:.4f}' for v in per_fold)}; weakest fold {worst_fold}",
            {"per_fold": [rounded(v) for v in per_fold], "weakest": worst_fold},
        )
    )
    order = sorted(task.target_names, key=lambda t: metric.sign * intervals.loc[t, metric.column])[:3]
    out.append(
        Verdict(
            "info",
            "targets.worst",
            "weakest targets: "
            + ", ".join(f"{t} {metric.column} {intervals.loc[t, metric.column]:.4f}" for t in order)
            + note,
            {"targets": order},
        )
    )
    return intervals, out


def diagnose_run(store: Store, run_id: str, n_boot: int = 200, seed: int = 0) -> list[Verdict]:
    """Every verdict on a run, in check order (health first)."""
    return analyse(store, run_id, n_boot=n_boot, seed=seed).verdicts


__all__ = [
    "SEVERITIES",
    "Diagnosis",
    "RunArtifacts",
    "Verdict",
    "analyse",
    "by_severity",
    "check_constant_predictions",
    "check_fitting",
    "check_fold_scales",
    "check_imbalance",
    "check_prediction_values",
    "check_spread",
    "check_status",
    "check_truncation",
    "check_weak_folds",
    "check_worst_targets",
    "constant_predictions",
    "diagnose_run",
    "imbalance_table",
    "load_artifacts",
    "target_intervals",
]
