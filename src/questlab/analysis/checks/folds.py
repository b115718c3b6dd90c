"""Per fold: constant predictions (and constant truth), failed or weak folds, folds on different scales."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from questlab.analysis.verdict import Verdict, fmt, folds_text, rounded
from questlab.metric import CONSTANT_TRUTH, is_constant, spearman_per_target
from questlab.tasks import TaskRef, load_task

NEAR_CONSTANT_SHARE = 0.9
FAILED_FOLD_RATIO = 0.5
WEAK_FOLD_SES = 3.0
WEAK_FOLD_MIN_GAP = 0.02
# A target ranks this much better inside each fold (mean of the folds' Spearman) than pooled: its
# folds' predictions sit on different scales. Consistent models on QUEST stay under 0.02
# (the rarest target, spelling); ensembles post-processed in some folds only reach 0.14-0.15.
SCALE_GAP = 0.05


# --- constant predictions ---------------------------------------------------------------------
def fold_statuses(
    y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, task: TaskRef = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per fold and target: Spearman (NaN where undefined) and status, recomputed from the OOF rows."""
    names = load_task(task).target_names  # the task's targets, in order
    rho, status = {}, {}
    for k in np.unique(folds):
        sel = folds == k
        r, s = spearman_per_target(y_true[sel], y_pred[sel])
        rho[int(k)], status[int(k)] = dict(zip(names, r, strict=True)), dict(zip(names, s, strict=True))
    return (
        pd.DataFrame.from_dict(rho, orient="index").rename_axis("fold"),
        pd.DataFrame.from_dict(status, orient="index").rename_axis("fold"),
    )


def constant_predictions(y_pred: np.ndarray, folds: np.ndarray, task: TaskRef = None) -> pd.DataFrame:
    """Per fold (rows) and target (columns): True where the prediction is constant in that fold.

    Judged on the predictions alone: a fold where truth is constant too still had a model that
    predicted a constant (the metric's status shows only "constant truth" there).
    """
    return pd.DataFrame(
        {int(k): is_constant(y_pred[folds == k]) for k in np.unique(folds)}, index=list(load_task(task).target_names)
    ).T.rename_axis("fold")


def _cost(reference: pd.Series, n_targets: int) -> float | None:
    """What undefined targets cost a fold: their Spearman in the other folds, over the number of
    targets (QUEST: 30; None if unscored there)."""
    known = reference.dropna()
    return float(known.sum()) / n_targets if len(known) else None


def check_constant_predictions(
    y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, task: TaskRef = None
) -> list[Verdict]:
    """Constant and near-constant prediction columns per fold, and truth constant in a fold.

    The cost of a constant column is what that target scored in the other folds (it counts 0
    here instead), divided by the number of targets (QUEST: 30); for a whole fold, also the CV
    score with and without its rows.
    """
    from questlab.metric import mean_spearman

    names = load_task(task).target_names  # the task's targets, in order
    rho, status = fold_statuses(y_true, y_pred, folds, task)
    is_const = constant_predictions(y_pred, folds, task)
    fold_list = list(rho.index)
    out: list[Verdict] = []
    all_const = bool(is_const.to_numpy().all())
    for k in fold_list:
        others = [j for j in fold_list if j != k]
        reference = rho.loc[others].median(axis=0) if others else pd.Series(np.nan, index=list(names))
        sel = folds == k
        const = [t for t in names if is_const.loc[k, t]]
        if const and not all_const:
            lost = _cost(reference[const], len(names))
            ev: dict[str, Any] = {
                "fold": k,
                "targets": const,
                "fold_score": rounded(np.nan_to_num(rho.loc[k].to_numpy(), nan=0.0).mean()),
                "cost_fold_score": rounded(lost),
                "reference_spearman": {t: rounded(reference[t]) for t in const},
            }
            msg = (
                f"fold {k}: predictions constant on {len(const)}/{len(names)} targets"
                f" ({', '.join(const[:3])}{', ...' if len(const) > 3 else ''}); they count 0, costing"
                f" {fmt(lost)} of the fold score {ev['fold_score']:.3f} (what they scored in the other folds)"
            )
            if others and (~sel).sum() >= 2:
                with_k, without_k = mean_spearman(y_true, y_pred), mean_spearman(y_true[~sel], y_pred[~sel])
                ev.update(cv_with_fold=rounded(with_k), cv_without_fold=rounded(without_k))
                msg += f"; CV {with_k:.3f} with this fold, {without_k:.3f} without"
            out.append(Verdict("error", "const.pred", msg, ev))
        pred_k = y_pred[sel]
        near = []
        for j, t in enumerate(names):
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
                    {"fold": k, "targets": {t: rounded(s) for t, s in near}},
                )
            )
        truth_const = [t for t in names if status.loc[k, t] == CONSTANT_TRUTH]
        if truth_const:
            vals = {t: rounded(y_true[sel][0, names.index(t)]) for t in truth_const}
            rated = ", ".join(f"{t} (all {int(sel.sum())} rows rate {v:.3g})" for t, v in vals.items())
            lost = _cost(reference[truth_const], len(names))
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
                    {"fold": k, "targets": vals, "cost_fold_score": rounded(lost)},
                )
            )
    if all_const:
        out.append(
            Verdict(
                "error",
                "const.pred",
                f"predictions constant on all {len(names)} targets in every fold (folds {folds_text(fold_list)}):"
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
        return [Verdict("info", "fold.single", f"only fold {folds_text(fold_list)} was scored: nothing to compare", {})]
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
            "score": rounded(scores[k]),
            "others_median": rounded(median),
            "gap": rounded(gap),
            "bootstrap_se": rounded(ses[k]),
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
                    "scores": {str(k): rounded(v) for k, v in scores.items()},
                    "bootstrap_se": {str(k): rounded(v) for k, v in ses.items()},
                },
            )
        )
    return out


# --- folds on different scales ----------------------------------------------------------------
def check_fold_scales(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, task: TaskRef = None) -> list[Verdict]:
    """Targets that rank well inside each fold but worse pooled: the folds' predictions are on
    different scales (an ensemble that post-processed a target in some outer folds only), so the
    pooled CV score understates them (``metric.fold_mean_score`` is the per-fold estimate)."""
    from questlab.metric import fold_mean_score, mean_spearman

    names = load_task(task).target_names  # the task's targets, in order
    if len(np.unique(folds)) < 2:
        return []
    pooled, _ = spearman_per_target(y_true, y_pred)
    rho, _ = fold_statuses(y_true, y_pred, folds, task)
    inside = rho[list(names)].mean(axis=0, skipna=True).to_numpy()  # NaN where no fold defines it
    gap = inside - pooled
    flagged = [j for j in np.argsort(-np.nan_to_num(gap, nan=-1.0)) if gap[j] > SCALE_GAP]
    if not flagged:
        return []
    listed = ", ".join(f"{names[j]} (pooled {pooled[j]:.3f}, folds' mean {inside[j]:.3f})" for j in flagged)
    pooled_score, fold_mean = mean_spearman(y_true, y_pred), fold_mean_score(y_true, y_pred, folds)
    return [
        Verdict(
            "warning",
            "folds.scales",
            f"{len(flagged)} target(s) rank better inside each fold than pooled: {listed}. Their folds'"
            " predictions sit on different scales (an ensemble post-processed them in some folds only?),"
            f" so the pooled CV {pooled_score:.4f} understates them; the mean of the folds' scores is {fold_mean:.4f}",
            {
                "targets": {
                    names[j]: {"pooled": rounded(pooled[j]), "folds_mean": rounded(inside[j])} for j in flagged
                },
                "pooled_score": rounded(pooled_score),
                "fold_mean_score": rounded(fold_mean),
            },
        )
    ]
