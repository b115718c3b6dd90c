"""What combining gained: score differences with paired bootstrap intervals, under the task's metric.

``metric`` None is Spearman, computed exactly as before tasks existed (QUEST's figures do not move);
under any other metric a gain is ``metric.gain(new, old)``: positive when ``new`` is better,
whichever way the metric points.
"""

from __future__ import annotations

import numpy as np

from questlab.metric import bootstrap_fold_means, bootstrap_paired, fold_mean_score, mean_spearman
from questlab.metrics import Metric


def fold_mean_summary(
    truth: np.ndarray,
    base: np.ndarray,
    other: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    n_boot: int,
    seed: int = 0,
    metric: Metric | None = None,
) -> dict[str, float]:
    """``other``'s mean of per-fold scores and its gain over ``base``'s, with 95% intervals from
    question resamples drawn within each fold (paired): see ``questlab.metric.fold_mean_score``.
    ``metric`` None is Spearman; a gain is ``metric.gain`` (positive: better)."""
    if metric is not None and not metric.rank_based:
        return _metric_fold_mean_summary(truth, base, other, folds, groups, n_boot, seed, metric)
    score = fold_mean_score(truth, other, folds)
    out = {"score": score, "gain": score - fold_mean_score(truth, base, folds)}
    if n_boot:
        boot_base, boot_other = bootstrap_fold_means(truth, [base, other], folds, groups, n_boot, seed)
        out |= {"ci_low": float(np.percentile(boot_other, 2.5)), "ci_high": float(np.percentile(boot_other, 97.5))}
        diffs = boot_other - boot_base
        out |= {"gain_ci_low": float(np.percentile(diffs, 2.5)), "gain_ci_high": float(np.percentile(diffs, 97.5))}
    return out


def gain_summary(
    truth: np.ndarray,
    base: np.ndarray,
    other: np.ndarray,
    groups: np.ndarray,
    n_boot: int,
    seed: int = 0,
    metric: Metric | None = None,
) -> dict[str, float]:
    """Gain of ``other`` over ``base`` (``metric.gain``; ``metric`` None: Spearman, ``other - base``)
    with a paired group-bootstrap 95% interval."""
    if metric is not None and not metric.rank_based:
        out = {"gain": metric.gain(metric.score(truth, other), metric.score(truth, base))}
        if n_boot:
            boot_base, boot_other = _boot_overall(metric, truth, [base, other], groups, n_boot, seed)
            diffs = metric.sign * (boot_other - boot_base)
            out |= {"ci_low": float(np.percentile(diffs, 2.5)), "ci_high": float(np.percentile(diffs, 97.5))}
        return out
    out = {"gain": mean_spearman(truth, other) - mean_spearman(truth, base)}
    if n_boot:
        diffs = bootstrap_paired(truth, base, other, groups, n_boot=n_boot, seed=seed)
        out |= {"ci_low": float(np.percentile(diffs, 2.5)), "ci_high": float(np.percentile(diffs, 97.5))}
    return out


def _boot_overall(
    metric: Metric, truth: np.ndarray, preds: list[np.ndarray], groups: np.ndarray, n_boot: int, seed: int
) -> list[np.ndarray]:
    """Each prediction's overall score on the same ``n_boot`` group resamples (paired)."""
    boots = metric.bootstrap_targets(truth, preds, groups, n_boot=n_boot, seed=seed)
    return [np.array([metric.combine(row) for row in b]) for b in boots]


def _metric_fold_mean_summary(
    truth: np.ndarray,
    base: np.ndarray,
    other: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    n_boot: int,
    seed: int,
    metric: Metric,
) -> dict[str, float]:
    """:func:`fold_mean_summary` under any metric: folds scored apart, then averaged."""
    ks = np.unique(folds)

    def fold_mean(pred: np.ndarray) -> float:
        return float(np.mean([metric.score(truth[folds == k], pred[folds == k]) for k in ks]))

    score = fold_mean(other)
    out = {"score": score, "gain": metric.gain(score, fold_mean(base))}
    if n_boot:
        boot_base, boot_other = np.zeros(n_boot), np.zeros(n_boot)
        for i, k in enumerate(ks):
            sel = folds == k
            b, o = _boot_overall(metric, truth[sel], [base[sel], other[sel]], groups[sel], n_boot, seed + i)
            boot_base += b / len(ks)
            boot_other += o / len(ks)
        out |= {"ci_low": float(np.percentile(boot_other, 2.5)), "ci_high": float(np.percentile(boot_other, 97.5))}
        diffs = metric.sign * (boot_other - boot_base)
        out |= {"gain_ci_low": float(np.percentile(diffs, 2.5)), "gain_ci_high": float(np.percentile(diffs, 97.5))}
    return out
