"""Verdicts on a recorded run: what went wrong (or right), each with its evidence.

Every check is one small function over what a run folder holds (see ``questlab.rundir``): the
out-of-fold predictions and truth, the per-fold fit logs, the test predictions, the run's
status. A check returns ``Verdict`` objects (severity, code, one-line message, evidence); none
of them trains anything, so ``diagnose`` works for any model family and for ensembles.

Thresholds, and why (docs/analysis.md says the same for users):

- near-constant: >= 90% of a fold's rows share one predicted value. Spearman then sees one big
  tie; the model can at best order the remaining 10%.
- failed fold: scores below half the median of the other folds. Weak fold: more than 3
  bootstrap standard errors (questions resampled inside the fold) and more than 0.02 below the
  others' median, so ordinary fold-to-fold noise is not called a failure.
- imbalanced target: >= 90% of rows share the most common rating (the bar ``questlab check``
  colours red). It is "not ranked" when the 95% interval of its Spearman reaches 0.
- squashed predictions: prediction std below 10% of the truth std. A least-squares fit has a
  spread of about |r| times the truth's; with r around 0.3 to 0.6 here, 10% is squeezed far
  beyond what shrinkage explains.
- truncation: worth a warning when >= 20% of a text part is cut and a cut text loses >= 10%
  of its tokens on average.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab.metric import CONSTANT_TRUTH, _is_constant, bootstrap_target_scores, spearman_per_target
from questlab.models.base import FitLog
from questlab.rundir import META_FILE
from questlab.schema import ID, TARGETS
from questlab.store import TAG_COMPLETE, TAG_ERROR, RunRecord, Store

SEVERITIES = ("error", "warning", "info", "ok")

NEAR_CONSTANT_SHARE = 0.9
FAILED_FOLD_RATIO = 0.5
WEAK_FOLD_SES = 3.0
WEAK_FOLD_MIN_GAP = 0.02
IMBALANCED_SHARE = 0.9
SQUASHED_RATIO = 0.1
TRUNCATION_SHARE = 0.2
TRUNCATION_LOST = 0.1
EPOCH_TOL = 1e-3  # a change in valid score (or relative change in loss) smaller than this is noise
N_WORST = 5


@dataclass
class Verdict:
    """One finding of ``diagnose``: a severity, a stable code, a one-line message, the numbers."""

    severity: str  # error / warning / info / ok
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: use one of {', '.join(SEVERITIES)}")

    def line(self) -> str:
        return f"[{self.severity.upper()}] {self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunArtifacts:
    """What a run folder holds, loaded once. Any part may be missing (failed or partial runs)."""

    record: RunRecord
    meta: dict[str, Any]
    oof: pd.DataFrame | None  # qa_id, group, fold, 30 predictions
    truth: pd.DataFrame | None  # qa_id, 30 ratings, aligned row by row to ``oof``
    fit_logs: dict[int, FitLog]
    test_preds: dict[str, pd.DataFrame]  # "submission" and "fold K" -> qa_id + 30 predictions

    @property
    def dir(self) -> Path:
        return self.record.dir

    def scored(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(truth, predictions) as arrays, or None when the run has no usable OOF predictions."""
        if self.oof is None or self.truth is None:
            return None
        pred = self.oof[list(TARGETS)].to_numpy(dtype=np.float64)
        if not np.isfinite(pred).all():
            return None
        return self.truth[list(TARGETS)].to_numpy(dtype=np.float64), pred


@dataclass
class Diagnosis:
    """The verdicts of a run and the per-target intervals they (and the report) rest on."""

    run: RunArtifacts
    verdicts: list[Verdict]
    intervals: pd.DataFrame | None  # index target; spearman, low, high, status


def load_run(store: Store, run_id: str) -> RunArtifacts:
    """Read a run's folder: run.json, OOF predictions and truth, fit logs, test predictions."""
    record = store.get(run_id)
    run = record.folder
    meta = run.read_meta().model_dump(mode="json") if run.has(META_FILE) else {}
    oof = truth = None
    if run.has_oof():
        oof = run.read_oof()
        truth = run.read_truth(oof[ID])
    fit_logs = {k: FitLog.from_dict(log) for k, log in run.read_fit_logs().items()}
    test_preds = {f"fold {k}": frame for k, frame in run.read_fold_test_predictions().items()}
    submission = run.read_submission()
    if submission is not None:
        test_preds["submission"] = submission
    return RunArtifacts(record, meta, oof, truth, fit_logs, test_preds)


def _r(x: float | None, nd: int = 4) -> float | None:
    """A JSON-friendly number: rounded, NaN as None (never 0: a missing score is not a zero)."""
    if x is None or (isinstance(x, float | np.floating) and math.isnan(x)):
        return None
    return round(float(x), nd)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _folds_text(folds: list[int]) -> str:
    return ", ".join(str(k) for k in folds)


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
                f"the run was interrupted (KILLED: {error or 'no reason recorded'}); continue it with --resume",
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
                f"fold(s) {_folds_text(missing)} have no finished result",
                {"missing": missing, "done": done_folds},
            )
        )
    if not_run or record.tags.get(TAG_COMPLETE) == "false":
        out.append(
            Verdict(
                "warning",
                "run.partial",
                f"partial run: folds {_folds_text(selected)} of {len(all_folds)} were run"
                + (
                    f" (not run: {_folds_text(not_run)}); merge partial runs with `questlab collect`" if not_run else ""
                ),
                {"folds_selected": selected, "folds_all": all_folds},
            )
        )
    if not out:
        out.append(Verdict("ok", "run.health", f"run finished with all {len(all_folds) or '?'} folds", {}))
    return out


def check_prediction_values(oof: pd.DataFrame | None, test_preds: dict[str, pd.DataFrame]) -> list[Verdict]:
    """NaN in the out-of-fold predictions; NaN or values outside [0, 1] in the test predictions."""
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
        n_out = int(((values < 0) | (values > 1)).sum())
        if n_nan or n_out:
            out.append(
                Verdict(
                    "error",
                    "test.range",
                    f"test predictions ({name}): {n_nan} NaN, {n_out} outside [0, 1]"
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


# --- constant predictions ---------------------------------------------------------------------
def fold_statuses(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per fold and target: Spearman (NaN where undefined) and status, recomputed from the OOF rows."""
    rho, status = {}, {}
    for k in np.unique(folds):
        sel = folds == k
        r, s = spearman_per_target(y_true[sel], y_pred[sel])
        rho[int(k)], status[int(k)] = dict(zip(TARGETS, r, strict=True)), dict(zip(TARGETS, s, strict=True))
    return (
        pd.DataFrame.from_dict(rho, orient="index").rename_axis("fold"),
        pd.DataFrame.from_dict(status, orient="index").rename_axis("fold"),
    )


def constant_predictions(y_pred: np.ndarray, folds: np.ndarray) -> pd.DataFrame:
    """Per fold (rows) and target (columns): True where the prediction is constant in that fold.

    Judged on the predictions alone: a fold where truth is constant too still had a model that
    predicted a constant (the metric's status shows only "constant truth" there).
    """
    return pd.DataFrame(
        {int(k): _is_constant(y_pred[folds == k]) for k in np.unique(folds)}, index=list(TARGETS)
    ).T.rename_axis("fold")


def _cost(reference: pd.Series) -> float | None:
    """What undefined targets cost a fold: their Spearman in the other folds, over 30 (None if unscored there)."""
    known = reference.dropna()
    return float(known.sum()) / len(TARGETS) if len(known) else None


def check_constant_predictions(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> list[Verdict]:
    """Constant and near-constant prediction columns per fold, and truth constant in a fold.

    The cost of a constant column is what that target scored in the other folds (it counts 0
    here instead), divided by 30; for a whole fold, also the CV score with and without its rows.
    """
    from questlab.metric import mean_spearman

    rho, status = fold_statuses(y_true, y_pred, folds)
    is_const = constant_predictions(y_pred, folds)
    fold_list = list(rho.index)
    out: list[Verdict] = []
    all_const = bool(is_const.to_numpy().all())
    for k in fold_list:
        others = [j for j in fold_list if j != k]
        reference = rho.loc[others].median(axis=0) if others else pd.Series(np.nan, index=list(TARGETS))
        sel = folds == k
        const = [t for t in TARGETS if is_const.loc[k, t]]
        if const and not all_const:
            lost = _cost(reference[const])
            ev: dict[str, Any] = {
                "fold": k,
                "targets": const,
                "fold_score": _r(np.nan_to_num(rho.loc[k].to_numpy(), nan=0.0).mean()),
                "cost_fold_score": _r(lost),
                "reference_spearman": {t: _r(reference[t]) for t in const},
            }
            msg = (
                f"fold {k}: predictions constant on {len(const)}/{len(TARGETS)} targets"
                f" ({', '.join(const[:3])}{', ...' if len(const) > 3 else ''}); they count 0, costing"
                f" {_fmt(lost)} of the fold score {ev['fold_score']:.3f} (what they scored in the other folds)"
            )
            if others and (~sel).sum() >= 2:
                with_k, without_k = mean_spearman(y_true, y_pred), mean_spearman(y_true[~sel], y_pred[~sel])
                ev.update(cv_with_fold=_r(with_k), cv_without_fold=_r(without_k))
                msg += f"; CV {with_k:.3f} with this fold, {without_k:.3f} without"
            out.append(Verdict("error", "const.pred", msg, ev))
        pred_k = y_pred[sel]
        near = []
        for j, t in enumerate(TARGETS):
            if is_const.loc[k, t]:
                continue
            _, counts = np.unique(pred_k[:, j], return_counts=True)
            share = counts.max() / len(pred_k)
            if share >= NEAR_CONSTANT_SHARE:
                near.append((t, share))
        if near:
            out.append(
                Verdict(
                    "warning",
                    "const.near",
                    f"fold {k}: predictions near-constant on {len(near)} target(s): "
                    + ", ".join(f"{t} ({s:.0%} of rows share one value)" for t, s in near[:3]),
                    {"fold": k, "targets": {t: _r(s) for t, s in near}},
                )
            )
        truth_const = [t for t in TARGETS if status.loc[k, t] == CONSTANT_TRUTH]
        if truth_const:
            vals = {t: _r(y_true[sel][0, TARGETS.index(t)]) for t in truth_const}
            rated = ", ".join(f"{t} (all {int(sel.sum())} rows rate {v:.3g})" for t, v in vals.items())
            lost = _cost(reference[truth_const])
            out.append(
                Verdict(
                    "warning",
                    "const.truth",
                    f"fold {k}: truth constant for {rated}: no model can rank it there; it counts 0, costing"
                    + (
                        f" about {lost:.3f} of the fold score"
                        if lost is not None
                        else " an unknown share (unscored elsewhere)"
                    ),
                    {"fold": k, "targets": vals, "cost_fold_score": _r(lost)},
                )
            )
    if all_const:
        out.append(
            Verdict(
                "error",
                "const.pred",
                f"predictions constant on all {len(TARGETS)} targets in every fold (folds {_folds_text(fold_list)}):"
                " the model ranks nothing; every fold and the CV score 0 (the pooled OOF columns differ only"
                " by the fold constants, which rank nothing)",
                {
                    "folds": fold_list,
                    "constant_targets_per_fold": {str(k): int(is_const.loc[k].sum()) for k in fold_list},
                },
            )
        )
    if not out:
        out.append(
            Verdict("ok", "const.none", f"no constant or near-constant prediction in any of {len(fold_list)} folds", {})
        )
    return out


# --- folds ------------------------------------------------------------------------------------
def check_weak_folds(
    y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, groups: np.ndarray, n_boot: int = 200, seed: int = 0
) -> list[Verdict]:
    """A fold far below the others: failed (< half their median) or weak (> 3 bootstrap SEs below)."""
    from questlab.metric import bootstrap_scores, mean_spearman

    fold_list = [int(k) for k in np.unique(folds)]
    if len(fold_list) < 2:
        return [
            Verdict("info", "fold.single", f"only fold {_folds_text(fold_list)} was scored: nothing to compare", {})
        ]
    scores, ses = {}, {}
    for k in fold_list:
        sel = folds == k
        scores[k] = mean_spearman(y_true[sel], y_pred[sel])
        ses[k] = float(np.std(bootstrap_scores(y_true[sel], y_pred[sel], groups[sel], n_boot=n_boot, seed=seed)))
    out = []
    for k in fold_list:
        median = float(np.median([scores[j] for j in fold_list if j != k]))
        gap = median - scores[k]
        ev = {
            "fold": k,
            "score": _r(scores[k]),
            "others_median": _r(median),
            "gap": _r(gap),
            "bootstrap_se": _r(ses[k]),
        }
        if median > 0.05 and scores[k] < FAILED_FOLD_RATIO * median:
            out.append(
                Verdict(
                    "error",
                    "fold.failed",
                    f"fold {k} failed: it scores {scores[k]:.3f} against a median of {median:.3f} for the other folds",
                    ev,
                )
            )
        elif gap > max(WEAK_FOLD_SES * ses[k], WEAK_FOLD_MIN_GAP):
            out.append(
                Verdict(
                    "warning",
                    "fold.weak",
                    f"fold {k} is weak: {scores[k]:.3f} against {median:.3f} for the others, {gap:.3f} lower"
                    f" ({gap / max(ses[k], 1e-12):.1f} bootstrap SEs of {ses[k]:.3f})",
                    ev,
                )
            )
    if not out:
        lo, hi = min(scores.values()), max(scores.values())
        out.append(
            Verdict(
                "ok",
                "fold.even",
                f"fold scores {lo:.3f}..{hi:.3f}: no fold is more than {WEAK_FOLD_SES:.0f} bootstrap SEs"
                " below the others",
                {
                    "scores": {str(k): _r(v) for k, v in scores.items()},
                    "bootstrap_se": {str(k): _r(v) for k, v in ses.items()},
                },
            )
        )
    return out


# --- learning curves --------------------------------------------------------------------------
def _curve(epochs: list[dict[str, float]], score_key: str, loss_key: str) -> tuple[str, np.ndarray] | None:
    """The named series (score preferred: it is what we optimise), or None when not recorded every epoch."""
    for key in (score_key, loss_key):
        values = [e.get(key) for e in epochs]
        if values and all(v is not None and math.isfinite(v) for v in values):
            return key, np.asarray(values, dtype=np.float64)
    return None


def _improvement(key: str, before: float, after: float) -> float:
    """How much ``after`` improves on ``before``: up for scores, down for losses (relative)."""
    if key.endswith("score"):
        return after - before
    return (before - after) / max(abs(before), 1e-12)


def check_fitting(fit_logs: dict[int, FitLog]) -> list[Verdict]:
    """Under-training (valid still improving at the last epoch) and over-fitting (valid worse, train better)."""
    if not fit_logs:
        return [Verdict("info", "fit.no_log", "no fit logs recorded (no folds folder): fitting cannot be judged", {})]
    under, over, fine, flat = {}, {}, {}, {}
    for k, log in fit_logs.items():
        valid = _curve(log.epochs, "valid_score", "valid_loss")
        if valid is None or len(valid[1]) < 2:
            flat[k] = log
            continue
        vkey, v = valid
        train = _curve(log.epochs, "train_score", "train_loss")
        best = int(np.argmax([_improvement(vkey, v[0], x) for x in v]))
        epoch_no = [int(e.get("epoch", i + 1)) for i, e in enumerate(log.epochs)]
        ev = {"fold": k, "metric": vkey, "values": [_r(x) for x in v], "best_epoch": epoch_no[best], "epochs": epoch_no}
        if best == len(v) - 1 and _improvement(vkey, v[-2], v[-1]) > EPOCH_TOL:
            under[k] = ev
        elif (
            best < len(v) - 1
            and _improvement(vkey, v[-1], v[best]) > EPOCH_TOL
            and (train is not None and _improvement(train[0], train[1][best], train[1][-1]) > EPOCH_TOL)
        ):
            ev.update(train_metric=train[0], train_values=[_r(x) for x in train[1]])
            over[k] = ev
        else:
            fine[k] = ev
    out = []
    if under:
        k, ev = next(iter(under.items()))
        out.append(
            Verdict(
                "warning",
                "fit.under",
                f"under-trained in fold(s) {_folds_text(list(under))}: {ev['metric']} still improved at the last epoch"
                f" (fold {k}: {_fmt(ev['values'][-2])} -> {_fmt(ev['values'][-1])} at epoch {ev['epochs'][-1]});"
                " train longer",
                {"folds": under},
            )
        )
    if over:
        k, ev = next(iter(over.items()))
        b = ev["epochs"].index(ev["best_epoch"])
        out.append(
            Verdict(
                "warning",
                "fit.over",
                f"over-fit in fold(s) {_folds_text(list(over))}: {ev['metric']} fell after epoch {ev['best_epoch']}"
                f" while {ev['train_metric']} kept improving (fold {k}: valid {_fmt(ev['values'][b])}"
                f" -> {_fmt(ev['values'][-1])}, train {_fmt(ev['train_values'][b])}"
                f" -> {_fmt(ev['train_values'][-1])})",
                {"folds": over},
            )
        )
    if fine and not under and not over:
        out.append(
            Verdict(
                "ok",
                "fit.ok",
                "learning curves flatten out: best epochs "
                + ", ".join(f"fold {k}: {ev['best_epoch']}/{ev['epochs'][-1]}" for k, ev in fine.items()),
                {"folds": fine},
            )
        )
    if flat:
        k, log = next(iter(flat.items()))
        how = log.info.get("fit", "")
        out.append(
            Verdict(
                "info",
                "fit.no_epochs",
                f"fold(s) {_folds_text(list(flat))} recorded no per-epoch validation numbers"
                + (f" ({how})" if how else "")
                + ": under- and over-fitting cannot be judged from a learning curve",
                {"folds": list(flat), "fit": how},
            )
        )
    return out


# --- targets ----------------------------------------------------------------------------------
def target_intervals(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """Per-target Spearman with a 95% bootstrap interval (questions resampled)."""
    rho, status = spearman_per_target(y_true, y_pred)
    boots = bootstrap_target_scores(y_true, [y_pred], groups, n_boot=n_boot, seed=seed)[0]
    return pd.DataFrame(
        {
            "spearman": rho,
            "low": np.percentile(boots, 2.5, axis=0),
            "high": np.percentile(boots, 97.5, axis=0),
            "status": status,
        },
        index=pd.Index(TARGETS, name="target"),
    )


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive row is ranked above a negative one (ties count half)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def imbalance_table(y_true: np.ndarray, y_pred: np.ndarray) -> pd.DataFrame:
    """Per target: share of the most common rating, distinct ratings, and AUC of rare vs common rows."""
    rows = []
    for j, t in enumerate(TARGETS):
        values, counts = np.unique(y_true[:, j], return_counts=True)
        common = values[np.argmax(counts)]
        rare = y_true[:, j] != common
        # Oriented by the truth: 1.0 when every rare row is predicted on the side of the common
        # rating it lies on (above it for a common 0, below it for a common 1), 0.5 is chance.
        auc = _auc(y_pred[:, j], rare)
        if rare.any() and y_true[rare, j].mean() < common:
            auc = 1 - auc
        rows.append(
            {
                "target": t,
                "majority_value": float(common),
                "majority_share": float(counts.max() / len(y_true)),
                "distinct": len(values),
                "auc_rare_vs_common": auc,
            }
        )
    return pd.DataFrame(rows).set_index("target")


def check_imbalance(y_true: np.ndarray, y_pred: np.ndarray, intervals: pd.DataFrame) -> list[Verdict]:
    """Imbalanced targets (>= 90% one rating) and whether the predictions rank them at all."""
    table = imbalance_table(y_true, y_pred).join(intervals)
    # A target with one rating in every row is "constant truth" (reported per fold), not imbalanced.
    imbalanced = table[(table["majority_share"] >= IMBALANCED_SHARE) & (table["distinct"] > 1)]
    out, ranked = [], []
    for t, row in imbalanced.iterrows():
        ev = {
            "target": t,
            "majority_share": _r(row["majority_share"]),
            "distinct": int(row["distinct"]),
            "spearman": _r(row["spearman"]),
            "low": _r(row["low"]),
            "high": _r(row["high"]),
            "auc_rare_vs_common": _r(row["auc_rare_vs_common"]),
        }
        if row["status"] != "ok" or row["low"] <= 0:
            out.append(
                Verdict(
                    "warning",
                    "target.not_learned",
                    f"{t}: {row['majority_share']:.1%} of rows rate {row['majority_value']:.3g}"
                    f" ({int(row['distinct'])} distinct ratings) and the predictions do not rank it: Spearman"
                    f" {_fmt(row['spearman'])} [{row['low']:.3f}, {row['high']:.3f}], AUC rare vs common"
                    f" {_fmt(row['auc_rare_vs_common'])}",
                    ev,
                )
            )
        else:
            ranked.append(ev)
    if ranked:
        out.append(
            Verdict(
                "info",
                "target.imbalanced",
                f"{len(ranked)} imbalanced target(s) are ranked nonetheless: "
                + ", ".join(
                    f"{e['target']} ({e['majority_share']:.0%} one rating, Spearman {e['spearman']:.3f})"
                    for e in ranked[:3]
                )
                + (", ..." if len(ranked) > 3 else ""),
                {"targets": ranked},
            )
        )
    if imbalanced.empty:
        out.append(
            Verdict("ok", "target.balanced", f"no target has >= {IMBALANCED_SHARE:.0%} of rows on one rating", {})
        )
    return out


def check_spread(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> list[Verdict]:
    """Predictions squashed towards the mean: std of predictions against std of the truth, per target."""
    always_const = constant_predictions(y_pred, folds).all(axis=0).to_numpy()
    truth_std = y_true.std(axis=0)
    ratio = pd.Series(y_pred.std(axis=0) / np.where(truth_std > 0, truth_std, 1.0), index=list(TARGETS))
    # Constant predictions are reported by their own check; a constant truth has no spread to match.
    judged = ratio[~always_const & (truth_std > 0)]
    if judged.empty:
        return [Verdict("info", "spread.skipped", "every target is constant in every fold: spread not judged", {})]
    squashed = judged[judged < SQUASHED_RATIO].sort_values()
    ev = {"ratio": {t: _r(v) for t, v in judged.items()}, "median_ratio": _r(judged.median())}
    if len(squashed):
        return [
            Verdict(
                "warning",
                "spread.squashed",
                f"predictions squashed to the mean on {len(squashed)} target(s): std of predictions / std of truth "
                + ", ".join(f"{t} {v:.3f}" for t, v in squashed.head(3).items())
                + f" (median over targets {judged.median():.2f})",
                {**ev, "squashed": list(squashed.index)},
            )
        ]
    return [
        Verdict(
            "ok",
            "spread.ok",
            f"prediction spread {judged.min():.2f}..{judged.max():.2f} of the truth's (median {judged.median():.2f});"
            f" none below {SQUASHED_RATIO}",
            ev,
        )
    ]


def check_worst_targets(intervals: pd.DataFrame, n: int = N_WORST) -> list[Verdict]:
    """The worst targets with their Spearman and 95% interval (undefined ones first: they count 0)."""
    order = intervals.assign(key=intervals["spearman"].fillna(-np.inf)).sort_values("key").head(n)
    chance = [t for t, row in order.iterrows() if row["low"] <= 0]
    text = ", ".join(
        f"{t} {_fmt(row['spearman'])} [{row['low']:.3f}, {row['high']:.3f}]"
        + (f" ({row['status']})" if row["status"] != "ok" else "")
        for t, row in order.iterrows()
    )
    return [
        Verdict(
            "warning" if chance else "info",
            "target.worst",
            f"worst targets: {text}" + (f"; {len(chance)} not distinguishable from 0" if chance else ""),
            {
                "targets": {
                    t: {
                        "spearman": _r(r["spearman"]),
                        "low": _r(r["low"]),
                        "high": _r(r["high"]),
                        "status": r["status"],
                    }
                    for t, r in order.iterrows()
                }
            },
        )
    ]


# --- truncation -------------------------------------------------------------------------------
def check_truncation(fit_logs: dict[int, FitLog]) -> list[Verdict]:
    """Share of each text part cut by the model's token budget, and how much a cut text lost."""
    parts: dict[str, list[dict[str, float]]] = {}
    for log in fit_logs.values():
        for part, stats in log.truncation.items():
            parts.setdefault(part, []).append(stats)
    if not parts:
        return [
            Verdict(
                "info",
                "truncation.none",
                "no truncation recorded: the model has no token budget (TF-IDF, mean) or did not report one",
                {},
            )
        ]
    out = []
    for part, stats in parts.items():
        share = float(np.mean([s.get("share_cut", 0.0) for s in stats]))
        lost = float(np.mean([s.get("mean_lost_share_when_cut", 0.0) for s in stats]))
        tokens = float(np.mean([s.get("mean_tokens", 0.0) for s in stats]))
        kept = float(np.mean([s.get("mean_kept", 0.0) for s in stats]))
        severe = share >= TRUNCATION_SHARE and lost >= TRUNCATION_LOST
        out.append(
            Verdict(
                "warning" if severe else "info",
                "truncation",
                f"{part}: {share:.0%} of texts cut by the token budget, a cut text loses {lost:.0%} of its tokens"
                f" on average (mean {tokens:.0f} tokens, {kept:.0f} kept)",
                {
                    "part": part,
                    "share_cut": _r(share),
                    "mean_lost_share_when_cut": _r(lost),
                    "mean_tokens": _r(tokens),
                    "mean_kept": _r(kept),
                    "folds": len(stats),
                },
            )
        )
    return out


# --- the whole diagnosis ----------------------------------------------------------------------


def analyse(store: Store, run_id: str, n_boot: int = 200, seed: int = 0) -> Diagnosis:
    """Load a run and run every check; the interval table is kept for the report."""
    run = load_run(store, run_id)
    done = run.record.folder.done_folds()
    if not done and run.record.kind == "ensemble":
        done = [int(k) for k in run.meta.get("folds_selected", run.meta.get("folds_all", []))]
    verdicts = check_status(run.record, run.meta, done)
    verdicts += check_prediction_values(run.oof, run.test_preds)
    intervals = None
    scored = run.scored()
    if scored is not None:
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
                f" folds {_folds_text(sorted(set(folds.tolist())))}",
                {"score": _r(score), "rows": len(y_true)},
            )
        )
        verdicts += check_constant_predictions(y_true, y_pred, folds)
        if always_const.all():
            verdicts.append(
                Verdict("info", "checks.skipped", "fold, target and spread checks skipped: nothing is ranked", {})
            )
        else:
            verdicts += check_weak_folds(y_true, y_pred, folds, groups, n_boot=n_boot, seed=seed)
            verdicts += check_worst_targets(intervals)
            verdicts += check_imbalance(y_true, y_pred, intervals)
            verdicts += check_spread(y_true, y_pred, folds)
    verdicts += check_fitting(run.fit_logs)
    verdicts += check_truncation(run.fit_logs)
    return Diagnosis(run=run, verdicts=verdicts, intervals=intervals)


def diagnose_run(store: Store, run_id: str, n_boot: int = 200, seed: int = 0) -> list[Verdict]:
    """Every verdict on a run, in check order (health first)."""
    return analyse(store, run_id, n_boot=n_boot, seed=seed).verdicts


def by_severity(verdicts: list[Verdict]) -> list[Verdict]:
    """Errors first, then warnings, info, ok (stable within a severity)."""
    return sorted(verdicts, key=lambda v: SEVERITIES.index(v.severity))
