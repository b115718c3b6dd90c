"""Per target: intervals, imbalance and whether it is ranked, prediction spread, the worst targets."""

from __future__ import annotations

import numpy as np
import pandas as pd

from questlab.analysis.checks.folds import constant_predictions
from questlab.analysis.verdict import Verdict, fmt, rounded
from questlab.metric import bootstrap_target_scores, spearman_per_target
from questlab.tasks import TaskRef, load_task

IMBALANCED_SHARE = 0.9
SQUASHED_RATIO = 0.1
N_WORST = 5


# --- targets ----------------------------------------------------------------------------------
def target_intervals(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, n_boot: int = 200, seed: int = 0, task: TaskRef = None
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
        index=pd.Index(load_task(task).target_names, name="target"),
    )


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a positive row is ranked above a negative one (ties count half)."""
    from scipy.stats import rankdata

    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def imbalance_table(y_true: np.ndarray, y_pred: np.ndarray, task: TaskRef = None) -> pd.DataFrame:
    """Per target: share of the most common rating, distinct ratings, and AUC of rare vs common rows.

    An ordinal target's ratings are its levels (a value within 1e-6 of a level counts as that level).
    """
    rows = []
    for j, target in enumerate(load_task(task).targets):
        t = target.name
        truth = y_true[:, j]
        if target.levels:  # on its levels: float noise never splits a rating in two
            levels = np.asarray(target.levels)
            nearest = levels[np.abs(truth[:, None] - levels[None, :]).argmin(axis=1)]
            truth = np.where(np.abs(nearest - truth) <= 1e-6, nearest, truth)
        values, counts = np.unique(truth, return_counts=True)
        common = values[np.argmax(counts)]
        rare = truth != common
        # Oriented by the truth: 1.0 when every rare row is predicted on the side of the common
        # rating it lies on (above it for a common 0, below it for a common 1), 0.5 is chance.
        auc = _auc(y_pred[:, j], rare)
        if rare.any() and truth[rare].mean() < common:
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


def check_imbalance(
    y_true: np.ndarray, y_pred: np.ndarray, intervals: pd.DataFrame, task: TaskRef = None
) -> list[Verdict]:
    """Imbalanced targets (>= 90% one rating) and whether the predictions rank them at all."""
    table = imbalance_table(y_true, y_pred, task).join(intervals)
    # A target with one rating in every row is "constant truth" (reported per fold), not imbalanced.
    imbalanced = table[(table["majority_share"] >= IMBALANCED_SHARE) & (table["distinct"] > 1)]
    out, ranked = [], []
    for t, row in imbalanced.iterrows():
        ev = {
            "target": t,
            "majority_share": rounded(row["majority_share"]),
            "distinct": int(row["distinct"]),
            "spearman": rounded(row["spearman"]),
            "low": rounded(row["low"]),
            "high": rounded(row["high"]),
            "auc_rare_vs_common": rounded(row["auc_rare_vs_common"]),
        }
        if row["status"] != "ok" or row["low"] <= 0:
            out.append(
                Verdict(
                    "warning",
                    "target.not_learned",
                    f"{t}: {row['majority_share']:.1%} of rows rate {row['majority_value']:.3g}"
                    f" ({int(row['distinct'])} distinct ratings) and the predictions do not rank it: Spearman"
                    f" {fmt(row['spearman'])} [{row['low']:.3f}, {row['high']:.3f}], AUC rare vs common"
                    f" {fmt(row['auc_rare_vs_common'])}",
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


def check_spread(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, task: TaskRef = None) -> list[Verdict]:
    """Predictions squashed towards the mean: std of predictions against std of the truth, per target."""
    names = load_task(task).target_names
    always_const = constant_predictions(y_pred, folds, task).all(axis=0).to_numpy()
    truth_std = y_true.std(axis=0)
    ratio = pd.Series(y_pred.std(axis=0) / np.where(truth_std > 0, truth_std, 1.0), index=list(names))
    # Constant predictions are reported by their own check; a constant truth has no spread to match.
    judged = ratio[~always_const & (truth_std > 0)]
    if judged.empty:
        return [Verdict("info", "spread.skipped", "every target is constant in every fold: spread not judged", {})]
    squashed = judged[judged < SQUASHED_RATIO].sort_values()
    ev = {"ratio": {t: rounded(v) for t, v in judged.items()}, "median_ratio": rounded(judged.median())}
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
        f"{t} {fmt(row['spearman'])} [{row['low']:.3f}, {row['high']:.3f}]"
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
                        "spearman": rounded(r["spearman"]),
                        "low": rounded(r["low"]),
                        "high": rounded(r["high"]),
                        "status": r["status"],
                    }
                    for t, r in order.iterrows()
                }
            },
        )
    ]
