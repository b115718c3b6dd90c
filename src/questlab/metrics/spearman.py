"""Mean column-wise Spearman (QUEST's score): the mean over the targets of the Spearman correlation, done carefully.

A target whose prediction is constant has no Spearman (the seed loop got NaN there and then
either crashed or silently skipped it). Here such a target is *reported* with its status and
counts 0 in the mean, so a model cannot look better by giving up on hard targets. A target whose
truth is constant in the scored rows (possible for rare targets in one fold) is reported as
"truth constant" and also counts 0, since no prediction could be ranked against it.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from questlab.metrics.base import (
    CONSTANT_PREDICTION,
    CONSTANT_TRUTH,
    OK,
    Metric,
    as_2d,
)
from questlab.metrics.base import group_weights as _group_weights


def is_constant(columns: np.ndarray) -> np.ndarray:
    """Per column: True when every value is the same (to float noise)."""
    return np.ptp(columns, axis=0) <= 1e-12 * np.maximum(1.0, np.abs(columns).max(axis=0))


def _pearson_columns(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    denom = np.sqrt((a * a).sum(axis=0) * (b * b).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=0) / denom


def spearman_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Spearman per column and a status per column (ok / constant prediction / constant truth).

    The returned correlation is NaN exactly where the status is not "ok"; callers decide how to
    count it (``mean_spearman`` counts it as 0).
    """
    y_true, y_pred = _as_2d(y_true, y_pred)
    const_pred, const_true = is_constant(y_pred), is_constant(y_true)
    rho = _pearson_columns(rankdata(y_true, axis=0), rankdata(y_pred, axis=0))
    status = [
        CONSTANT_TRUTH if ct else CONSTANT_PREDICTION if cp else OK
        for ct, cp in zip(const_true, const_pred, strict=True)
    ]
    rho[const_true | const_pred] = np.nan
    return rho, status


def mean_spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The competition score, with undefined (constant) columns counted as 0."""
    rho, _ = spearman_per_target(y_true, y_pred)
    return float(np.nan_to_num(rho, nan=0.0).mean())


def _as_2d(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return as_2d(y_true, y_pred, what="a Spearman correlation")


class _WeightedRanker:
    """Exact Spearman of bootstrap resamples without re-sorting.

    A resample is a vector of row multiplicities ``w``. Sorting each column once gives its tie
    blocks; the average rank of a block in the resample is the weight of the blocks before it plus
    (block weight + 1) / 2. Pearson of those ranks, weighted by ``w``, is the Spearman of the
    resampled data, ties and duplicates included.
    """

    def __init__(self, values: np.ndarray) -> None:
        m = values.shape[1]
        order = np.argsort(values, axis=0, kind="stable")
        sorted_vals = np.take_along_axis(values, order, axis=0)
        new_block = np.vstack([np.ones((1, m), bool), np.diff(sorted_vals, axis=0) != 0])
        block_in_col = np.cumsum(new_block, axis=0) - 1  # block index within each column
        n_blocks = block_in_col[-1] + 1
        self.offsets = np.concatenate([[0], np.cumsum(n_blocks)[:-1]])
        block_sorted = block_in_col + self.offsets  # global block id, in sorted order
        self.block_of_row = np.empty_like(block_sorted)
        np.put_along_axis(self.block_of_row, order, block_sorted, axis=0)
        self.n_total = int(n_blocks.sum())
        self.col_of_block = np.repeat(np.arange(m), n_blocks)

    def ranks(self, w: np.ndarray) -> np.ndarray:
        m = self.block_of_row.shape[1]
        block_w = np.bincount(self.block_of_row.ravel(), weights=np.repeat(w, m), minlength=self.n_total)
        cum = np.cumsum(block_w)
        col_start = np.concatenate([[0.0], cum])[self.offsets]  # weight before each column's first block
        before = cum - block_w - col_start[self.col_of_block]
        rank_of_block = before + (block_w + 1.0) / 2.0
        return rank_of_block[self.block_of_row]


def bootstrap_scores(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Mean-Spearman of ``n_boot`` resamples that draw whole questions (groups) with replacement.

    Returns an (n_boot,) array; columns undefined in a resample count 0, as in the score.
    """
    return bootstrap_target_scores(y_true, [y_pred], groups, n_boot=n_boot, seed=seed)[0].mean(axis=1)


def bootstrap_paired(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Score of ``pred_b`` minus score of ``pred_a`` on the same ``n_boot`` question resamples.

    Pairing matters: both predictions see the same resampled questions, so the interval of the
    difference is much narrower than the two score intervals suggest (their noise is shared).
    """
    boot_a, boot_b = bootstrap_target_scores(y_true, [pred_a, pred_b], groups, n_boot=n_boot, seed=seed)
    return boot_b.mean(axis=1) - boot_a.mean(axis=1)


def bootstrap_target_scores(
    y_true: np.ndarray,
    y_preds: list[np.ndarray],
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[np.ndarray]:
    """Per-target Spearman of ``n_boot`` question resamples, one (n_boot, n_targets) array per prediction.

    Every prediction in ``y_preds`` is scored on the *same* resamples, so differences between
    them are paired by row: the interval of ``out[1] - out[0]`` is the interval of "B minus A".
    Columns undefined in a resample (constant) count 0, as in the score.
    """
    checked = [_as_2d(y_true, p) for p in y_preds]
    y_true = checked[0][0]
    rank_true = _WeightedRanker(y_true)
    rank_preds = [_WeightedRanker(p) for _, p in checked]
    out = [np.empty((n_boot, y_true.shape[1])) for _ in y_preds]
    for b, w in enumerate(_group_weights(groups, n_boot, seed)):
        total = w.sum()
        rt = rank_true.ranks(w)
        rt = rt - (w @ rt) / total
        var_t = w @ (rt * rt)
        for ranker, res in zip(rank_preds, out, strict=True):
            rp = ranker.ranks(w)
            rp = rp - (w @ rp) / total
            cov = w @ (rt * rp)
            denom = np.sqrt(var_t * (w @ (rp * rp)))
            with np.errstate(invalid="ignore", divide="ignore"):
                res[b] = np.where(denom > 1e-12, cov / np.where(denom > 0, denom, 1.0), 0.0)
    return out


def fold_mean_score(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> float:
    """The mean over folds of each fold's score: the textbook nested-CV estimate.

    The pooled score ranks rows of different fitted models against each other. Where those models
    map a target differently (one fold's post-processing onto the rating levels, another's left
    continuous) the pooled Spearman mixes two scales and understates both; each fold's own score
    is what one fitted model gets on questions it never saw, as on a test file.
    """
    return float(np.mean([mean_spearman(y_true[folds == k], y_pred[folds == k]) for k in np.unique(folds)]))


def bootstrap_fold_means(
    y_true: np.ndarray,
    y_preds: list[np.ndarray],
    folds: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[np.ndarray]:
    """Fold-mean score of each prediction on ``n_boot`` resamples, one (n_boot,) array each.

    Each resample draws whole questions with replacement *within* every fold, so a fold keeps its
    size and its own fitted model; all predictions see the same resamples (paired differences).
    """
    ks = np.unique(folds)
    out = [np.zeros(n_boot) for _ in y_preds]
    for i, k in enumerate(ks):
        sel = folds == k
        boots = bootstrap_target_scores(y_true[sel], [p[sel] for p in y_preds], groups[sel], n_boot, seed + i)
        for acc, b in zip(out, boots, strict=True):
            acc += b.mean(axis=1) / len(ks)
    return out


def constant_in_every_fold(y_pred: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Columns whose out-of-fold predictions are constant inside every fold.

    Such a column only varies *between* folds (each fold model predicting its own train mean,
    say): its pooled Spearman would rank fold offsets, not rows. It is a constant prediction and
    counts 0 wherever a run is scored or compared.
    """
    return np.all([is_constant(y_pred[folds == k]) for k in np.unique(folds)], axis=0)


def without_fold_offsets(y_pred: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """``y_pred`` with each column that is constant inside every fold made constant overall.

    Pooled, such a column would rank fold offsets, not rows; :func:`score_cv` counts it 0, and
    :func:`mean_spearman` of the returned array does too (a report's figures then match the run's).
    """
    cols = constant_in_every_fold(y_pred, folds)
    if not cols.any():
        return y_pred
    out = np.array(y_pred, dtype=np.float64, copy=True)
    out[:, cols] = 0.0
    return out


class SpearmanMetric(Metric):
    """Mean column-wise Spearman, higher is better; undefined (constant) columns count 0."""

    name = "spearman"
    higher_is_better = True
    column = "spearman"
    rank_based = True
    label = "mean Spearman"  # what 0.9.0 printed

    def per_target(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
        return spearman_per_target(y_true, y_pred)

    def combine(self, values: np.ndarray) -> float:
        return float(np.nan_to_num(values, nan=0.0).mean())

    def per_target_cv(self, y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, list[str]]:
        # a column constant inside every fold ranks fold offsets, not rows: a constant prediction
        rho, status = spearman_per_target(y_true, y_pred)
        for j in np.flatnonzero(constant_in_every_fold(y_pred, folds)):
            if status[j] == OK:
                rho[j], status[j] = np.nan, CONSTANT_PREDICTION
        return rho, status

    def bootstrap_targets(
        self, y_true: np.ndarray, y_preds: list[np.ndarray], groups: np.ndarray, n_boot: int = 1000, seed: int = 0
    ) -> list[np.ndarray]:
        return bootstrap_target_scores(y_true, y_preds, groups, n_boot=n_boot, seed=seed)

    def bootstrap_overall(
        self, y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, counted: np.ndarray, n_boot: int, seed: int
    ) -> np.ndarray:
        # columns that count 0 count 0 in every resample too
        if not counted.any():
            return np.zeros(n_boot)
        boots = bootstrap_scores(y_true[:, counted], y_pred[:, counted], groups, n_boot=n_boot, seed=seed)
        return boots * counted.sum() / len(counted)

    def notes(self, status: list[str]) -> list[str]:
        n_const = status.count(CONSTANT_PREDICTION)
        return [f"{n_const} target(s) have constant predictions and count 0 in the mean"] if n_const else []


SPEARMAN = SpearmanMetric()
