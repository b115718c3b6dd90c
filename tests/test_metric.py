"""The metric against hand-computed cases, the constant cases, and the bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from questlab.metric import (
    CONSTANT_PREDICTION,
    CONSTANT_TRUTH,
    OK,
    bootstrap_scores,
    mean_spearman,
    score_cv,
    spearman_per_target,
)


def test_hand_computed_spearman() -> None:
    # Column 0: truth ranks 1,2,3,4 vs prediction ranks 1,3,2,4 -> 1 - 6*(0+1+1+0)/(4*15) = 0.8
    # Column 1: exact reversal -> -1. Mean -0.1.
    y = np.array([[0.0, 0.0], [1 / 3, 1 / 3], [2 / 3, 2 / 3], [1.0, 1.0]])
    p = np.array([[0.1, 0.9], [0.5, 0.8], [0.3, 0.7], [0.9, 0.1]])
    rho, status = spearman_per_target(y, p)
    assert rho == pytest.approx([0.8, -1.0])
    assert status == [OK, OK]
    assert mean_spearman(y, p) == pytest.approx(-0.1)


def test_ties_match_scipy() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (50, 4)) / 2
    p = np.round(rng.random((50, 4)), 1)
    rho, _ = spearman_per_target(y, p)
    assert rho == pytest.approx([spearmanr(y[:, j], p[:, j])[0] for j in range(4)])


def test_constant_prediction_counts_zero_and_is_named() -> None:
    y = np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    p = np.array([[0.2, 0.3], [0.2, 0.6], [0.2, 0.9]])
    rho, status = spearman_per_target(y, p)
    assert status == [CONSTANT_PREDICTION, OK]
    assert np.isnan(rho[0]) and rho[1] == pytest.approx(1.0)
    assert mean_spearman(y, p) == pytest.approx(0.5)  # not 1.0 (NaN skipped) and not NaN


def test_constant_truth_is_distinguished() -> None:
    y = np.array([[0.0], [0.0], [0.0]])
    _, status = spearman_per_target(y, np.array([[0.1], [0.2], [0.3]]))
    assert status == [CONSTANT_TRUTH]


def test_nan_predictions_are_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        mean_spearman(np.zeros((3, 1)), np.array([[0.1], [np.nan], [0.2]]))


def test_bootstrap_matches_explicit_resampling() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, (120, 3)) / 3
    p = y + rng.normal(0, 0.4, y.shape)
    p[:, 2] = np.round(p[:, 2], 1)  # ties in predictions too
    groups = rng.integers(0, 50, 120)
    fast = bootstrap_scores(y, p, groups, n_boot=20, seed=3)
    # Re-draw the same group counts and compute Spearman on materialised resamples.
    rng2 = np.random.default_rng(3)
    _, gi = np.unique(groups, return_inverse=True)
    n_groups = gi.max() + 1
    for b in range(20):
        counts = np.bincount(rng2.integers(0, n_groups, n_groups), minlength=n_groups)
        idx = np.repeat(np.arange(120), counts[gi])
        assert fast[b] == pytest.approx(mean_spearman(y[idx], p[idx]))


def test_score_cv_per_fold_and_interval() -> None:
    rng = np.random.default_rng(2)
    y = rng.random((200, 30))
    p = y + rng.normal(0, 0.5, y.shape)
    folds = np.repeat(np.arange(4), 50)
    p[folds == 3, 5] = 0.5  # one fold predicts a constant on one target
    cv = score_cv(y, p, folds, groups=np.arange(200) // 2, n_boot=100)
    assert cv.ci_low < cv.score < cv.ci_high
    assert cv.per_fold.loc[3, "n_constant_pred"] == 1
    assert cv.per_fold_status.loc[3].iloc[5] == CONSTANT_PREDICTION
    assert list(cv.per_fold.index) == [0, 1, 2, 3]
    again = type(cv).from_dict(cv.to_dict())
    assert again.score == cv.score and again.per_fold_status.loc[3].iloc[5] == CONSTANT_PREDICTION
