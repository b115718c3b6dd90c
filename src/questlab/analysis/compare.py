"""Compare two runs on the same out-of-fold rows: per target, per fold, overall, and their configs.

Differences are paired by row: both runs are scored on the same bootstrap resamples of
questions (``metric.bootstrap_target_scores``), so the interval of "B minus A" is narrower than
two separate intervals would suggest, and honest. "B beats A" is said only when the 95%
interval of the difference lies above 0. Runs scored on different rows are refused: their
scores would differ for reasons that have nothing to do with the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from questlab.errors import UsageError
from questlab.metrics import Metric
from questlab.rundir import read_task
from questlab.store import RunRecord, Store
from questlab.tasks import Task

B_BETTER, A_BETTER, UNCLEAR = "B better", "A better", "no clear difference"


@dataclass
class Comparison:
    """Run B against run A: deltas are B minus A, each with a paired 95% bootstrap interval."""

    a: RunRecord
    b: RunRecord
    n_rows: int
    n_boot: int
    overall: dict[str, Any]  # a, b, delta, low, high, verdict
    per_target: pd.DataFrame  # index target; a, b, delta, low, high, verdict
    per_fold: pd.DataFrame | None  # index fold; same columns (None when the runs used other folds)
    config_diff: list[tuple[str, Any, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)  # what differs (parameters, data, folds, rows), first
    metric: str = "spearman"  # the runs' task metric: the deltas are in its units

    def to_dict(self) -> dict[str, Any]:
        def table(frame: pd.DataFrame | None) -> list[dict[str, Any]] | None:
            if frame is None:
                return None
            return json.loads(frame.reset_index().to_json(orient="records"))

        return {
            "a": self.a.run_id,
            "b": self.b.run_id,
            "n_rows": self.n_rows,
            "n_boot": self.n_boot,
            "overall": self.overall,
            "per_target": table(self.per_target),
            "per_fold": table(self.per_fold),
            "config_diff": [{"key": k, "a": va, "b": vb} for k, va, vb in self.config_diff],
            "notes": self.notes,
            "differences": self.differences,
            "metric": self.metric,
        }


def verdict(low: float, high: float, metric: Metric | None = None) -> str:
    """Which run is better, said only when the interval of B - A excludes 0 (B better: a gain by the
    metric, so a lower score for an error metric; no metric: higher is better)."""
    sign = metric.sign if metric is not None else 1.0
    g_low, g_high = sorted((sign * low, sign * high))
    return B_BETTER if g_low > 0 else A_BETTER if g_high < 0 else UNCLEAR


def _scores(metric: Metric, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    values, _ = metric.per_target(y_true, y_pred)
    return np.nan_to_num(values, nan=0.0)  # as in the competition score: an undefined column counts 0


def _row(a: float, b: float, diffs: np.ndarray, metric: Metric | None = None) -> dict[str, Any]:
    low, high = np.percentile(diffs, [2.5, 97.5])
    return {
        "a": a,
        "b": b,
        "delta": b - a,
        "low": float(low),
        "high": float(high),
        "verdict": verdict(low, high, metric),
    }


def same_task(a: RunRecord, b: RunRecord) -> Task:
    """The task both runs were made under; runs of two tasks are refused, naming both."""
    ta, tb = read_task(a.folder), read_task(b.folder)
    if ta.fingerprint != tb.fingerprint:
        raise UsageError(
            f"run {a.run_id[:8]} is of task {ta.name!r}, run {b.run_id[:8]} of task {tb.name!r}: "
            "runs of different tasks do not compare"
        )
    return ta


def paired_oof(a: RunRecord, b: RunRecord) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """OOF predictions of A and B and the truth, aligned row by row; refuse runs on different rows."""
    task = same_task(a, b)
    ID, TARGETS = task.id, task.target_names
    oof_a, oof_b = (r.folder.read_oof() for r in (a, b))
    ids_a, ids_b = set(oof_a[ID]), set(oof_b[ID])
    if ids_a != ids_b:
        raise UsageError(
            f"runs {a.run_id[:8]} and {b.run_id[:8]} scored different rows ({len(ids_a - ids_b)} only in A,"
            f" {len(ids_b - ids_a)} only in B): compare needs the same out-of-fold rows"
            " (complete runs on the same train file; partial runs can be merged with `questlab collect`)"
        )
    oof_b = oof_a[[ID]].merge(oof_b, on=ID, how="left")
    truth = a.folder.read_truth(oof_a[ID])
    truth_b = b.folder.read_truth(oof_a[ID])
    if not np.allclose(truth[list(TARGETS)].to_numpy(), truth_b[list(TARGETS)].to_numpy()):
        raise UsageError(f"runs {a.run_id[:8]} and {b.run_id[:8]} hold different ratings: other train files")
    return oof_a, oof_b, truth


def run_config(record: RunRecord) -> dict[str, Any]:
    """A run's resolved config, flattened to dotted keys (run.json, else config.yaml, else the params)."""
    from questlab.recording import flatten

    config = record.folder.config_dict()
    return flatten(config) if config is not None else dict(record.params)


def config_diff(a: RunRecord, b: RunRecord) -> list[tuple[str, Any, Any]]:
    """The config keys whose values differ, as (key, value in A, value in B); None where absent."""
    ca, cb = run_config(a), run_config(b)
    return [(k, ca.get(k), cb.get(k)) for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)]


def differences(a: RunRecord, b: RunRecord, diff: list[tuple[str, Any, Any]]) -> list[str]:
    """A few lines on what differs between A and B: parameters, data, folds and rows scored.

    The paired bootstrap needs the same rows with the same ratings (:func:`paired_oof` refuses
    others); other data or other folds on those rows are said here, as a warning: the pairing
    holds, but the runs were not trained on the same splits of the same file.
    """
    from questlab.rundir import TAG_DATA, TAG_ROWS, TAG_SPLIT, comparability

    seen = []
    for r in (a, b):
        tags = {k: r.tags[k] for k in (TAG_ROWS, TAG_DATA, TAG_SPLIT) if r.tags.get(k)}
        seen.append({**comparability(r.folder), **tags} if len(tags) < 3 else tags)
    sa, sb = seen
    lines = []
    params = [k for k, _, _ in diff if k not in ("name", "description")]
    if params:
        shown = ", ".join(f"{k}: {va!r} -> {vb!r}" for k, va, vb in diff if k in params[:4])
        more = f" (and {len(params) - 4} more)" if len(params) > 4 else ""
        lines.append(f"parameters: {shown}{more}")
    else:
        lines.append("parameters: the same")
    for tag, what in ((TAG_DATA, "data (train sha256)"), (TAG_SPLIT, "folds (qa_id -> fold sha256)"),
                      (TAG_ROWS, "rows scored")):  # fmt: skip
        va, vb = sa.get(tag, "?"), sb.get(tag, "?")
        lines.append(f"{what}: {va}" if va == vb else f"{what}: {va} vs {vb}: DIFFERENT")
    if sa.get(TAG_DATA) != sb.get(TAG_DATA):
        lines.append(
            "warning: other train files (or unknown): the rows and ratings match, so the paired bootstrap holds, "
            "but the runs did not learn from the same file: not a clean comparison"
        )
    if sa.get(TAG_SPLIT) != sb.get(TAG_SPLIT):
        lines.append(
            "warning: other folds: each row is paired, but each run trained on other rows around it; "
            "the difference mixes the models and the splits (no per-fold comparison; reuse folds with folds.from_run)"
        )
    return lines


def compare_runs(store: Store, run_a: str, run_b: str, n_boot: int = 1000, seed: int = 0) -> Comparison:
    """Per-target, per-fold and overall score differences of B against A, with paired intervals."""
    if n_boot < 20:
        raise UsageError(f"--n-boot {n_boot}: use at least 20 resamples for a 95% interval")
    a, b = store.get(run_a), store.get(run_b)
    if a.run_id == b.run_id:
        raise UsageError("give two different runs")
    diff = config_diff(a, b)
    said = differences(a, b, diff)
    try:
        oof_a, oof_b, truth = paired_oof(a, b)
    except UsageError as exc:
        apart = [line for line in said if line.endswith("DIFFERENT")]
        raise UsageError(f"{exc}{' (' + '; '.join(apart) + ')' if apart else ''}") from None
    task = same_task(a, b)
    metric, targets = task.scorer, list(task.target_names)
    y = truth[targets].to_numpy(dtype=np.float64)
    pa, pb = (o[targets].to_numpy(dtype=np.float64) for o in (oof_a, oof_b))
    groups = oof_a["group"].to_numpy()
    boot_a, boot_b = metric.bootstrap_targets(y, [pa, pb], groups, n_boot=n_boot, seed=seed)
    sa, sb = _scores(metric, y, pa), _scores(metric, y, pb)
    # as each run was scored: a column its metric leaves undefined over its folds counts 0 (score_cv)
    for run_oof, pred, scores, boots in ((oof_a, pa, sa, boot_a), (oof_b, pb, sb, boot_b)):
        flat = np.isnan(metric.per_target_cv(y, pred, run_oof["fold"].to_numpy())[0])
        scores[flat], boots[:, flat] = 0.0, 0.0
    per_target = pd.DataFrame(
        [_row(sa[j], sb[j], boot_b[:, j] - boot_a[:, j], metric) for j in range(len(targets))],
        index=pd.Index(targets, name="target"),
    )
    overall = _row(
        metric.combine(sa), metric.combine(sb), _combined(metric, boot_b) - _combined(metric, boot_a), metric
    )
    notes = []
    per_fold = None
    folds_a, folds_b = oof_a["fold"].to_numpy(), oof_b["fold"].to_numpy()
    if np.array_equal(folds_a, folds_b):
        rows = {}
        for k in np.unique(folds_a):
            sel = folds_a == k
            fa, fb = metric.bootstrap_targets(y[sel], [pa[sel], pb[sel]], groups[sel], n_boot=n_boot, seed=seed)
            rows[int(k)] = _row(
                metric.combine(_scores(metric, y[sel], pa[sel])),
                metric.combine(_scores(metric, y[sel], pb[sel])),
                _combined(metric, fb) - _combined(metric, fa),
                metric,
            )
        per_fold = pd.DataFrame.from_dict(rows, orient="index").rename_axis("fold")
    else:
        notes.append("the runs used different folds: no per-fold comparison (reuse folds with folds.from_run)")
    return Comparison(a, b, len(y), n_boot, overall, per_target, per_fold, diff, notes, said, metric.name)


def _combined(metric: Metric, boots: np.ndarray) -> np.ndarray:
    """Each resample's overall score from its per-target values."""
    return np.array([metric.combine(row) for row in boots])
