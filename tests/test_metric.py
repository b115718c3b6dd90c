"""The metric against hand-computed cases, the constant cases, and the bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata, spearmanr

from questlab.metric import (
    CONSTANT_PREDICTION,
    CONSTANT_TRUTH,
    OK,
    bootstrap_fold_means,
    bootstrap_scores,
    fold_mean_score,
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


def test_is_constant_tolerance_is_relative_to_the_column_scale() -> None:
    from questlab.metric import is_constant

    near = np.array([[0.5, 1e6, 0.5], [0.5 + 1.5e-12, 1e6 + 1e-7, 0.5 + 1e-9]])
    # col 0: 1.5e-12 apart at scale 1 (tolerance 1e-12): varies; col 1: 1e-7 apart at scale 1e6
    # (tolerance 1e-6): constant; col 2 is judged on its own scale, not the 1e6 of column 1
    assert is_constant(near).tolist() == [False, True, False]
    assert is_constant(np.array([[0.3], [0.3]])).tolist() == [True]


def test_a_nearly_constant_prediction_is_reported_not_ranked() -> None:
    y = np.array([[0.0], [0.5], [1.0]])
    p = np.array([[0.2], [0.2 + 1e-15], [0.2 + 2e-15]])  # float noise on a constant: ranks would say 1.0
    rho, status = spearman_per_target(y, p)
    assert status == [CONSTANT_PREDICTION] and np.isnan(rho[0])
    assert mean_spearman(y, p) == 0.0


def test_one_dimensional_input_and_two_rows_are_scored() -> None:
    assert mean_spearman(np.array([0.0, 0.5, 1.0]), np.array([0.3, 0.1, 0.9])) == pytest.approx(0.5)
    assert mean_spearman(np.array([[0, 1], [1, 0]]), np.array([[1, 2], [2, 1]])) == pytest.approx(1.0)  # ints too


def test_bad_shapes_and_too_few_rows_are_named() -> None:
    with pytest.raises(ValueError, match=r"^y_true has shape \(3, 2\) but y_pred has shape \(3, 1\)$"):
        mean_spearman(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"^need at least 2 rows to compute a Spearman correlation$"):
        mean_spearman(np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(
        ValueError, match=r"^predictions contain NaN or infinity: fix the model, a score would hide it$"
    ):
        mean_spearman(np.zeros((3, 1)), np.array([[0.1], [np.inf], [0.2]]))


@pytest.mark.parametrize("n_rows", [2, 3, 5])
def test_bootstrap_matches_explicit_resampling_on_tiny_data(n_rows: int) -> None:
    """Few rows: many resamples are constant (count 0) and the rank variances are below 1."""
    rng = np.random.default_rng(n_rows)
    y = rng.random((n_rows, 3))
    p = np.column_stack([rng.random(n_rows), y[:, 1], np.full(n_rows, 0.4)])  # noise, perfect, constant
    groups = np.arange(n_rows)
    fast = bootstrap_scores(y, p, groups, n_boot=30, seed=4)
    rng2 = np.random.default_rng(4)
    for b in range(30):
        counts = np.bincount(rng2.integers(0, n_rows, n_rows), minlength=n_rows)
        idx = np.repeat(np.arange(n_rows), counts)
        want = mean_spearman(y[idx], p[idx]) if len(idx) > 1 else 0.0
        assert fast[b] == pytest.approx(want)


def test_bootstrap_defaults_and_paired_differences() -> None:
    from questlab.metric import bootstrap_paired, bootstrap_target_scores

    rng = np.random.default_rng(5)
    y = rng.random((60, 4))
    a, b = y + rng.normal(0, 0.6, y.shape), y + rng.normal(0, 0.3, y.shape)
    groups = np.arange(60) // 3
    default = bootstrap_scores(y, a, groups)
    assert default.shape == (1000,)
    np.testing.assert_array_equal(default, bootstrap_scores(y, a, groups, n_boot=1000, seed=0))
    paired = bootstrap_paired(y, a, b, groups, n_boot=50, seed=2)
    want = bootstrap_scores(y, b, groups, n_boot=50, seed=2) - bootstrap_scores(y, a, groups, n_boot=50, seed=2)
    np.testing.assert_allclose(paired, want)
    assert (paired > 0).mean() > 0.9  # b is the better prediction on nearly every resample
    assert bootstrap_paired(y, a, b, groups).shape == (1000,)
    per_target = bootstrap_target_scores(y, [a, b], groups, n_boot=7, seed=1)
    assert [t.shape for t in per_target] == [(7, 4), (7, 4)]
    np.testing.assert_array_equal(
        bootstrap_target_scores(y, [a], groups)[0], bootstrap_target_scores(y, [a], groups, 1000, 0)[0]
    )


def test_score_cv_round_trips_through_json() -> None:
    import json

    rng = np.random.default_rng(3)
    y = rng.random((90, 30))
    p = y + rng.normal(0, 0.5, y.shape)
    folds = np.repeat(np.arange(3), 30)
    p[:, 7] = 0.25  # constant everywhere: NaN per fold, a note
    cv = score_cv(y, p, folds, groups=np.arange(90), n_boot=25)
    again = type(cv).from_dict(json.loads(json.dumps(cv.to_dict())))  # what scores.json holds
    assert (again.score, again.ci_low, again.ci_high, again.n_boot) == (cv.score, cv.ci_low, cv.ci_high, 25)
    assert again.notes == cv.notes == ["1 target(s) have constant predictions and count 0 in the mean"]
    pd.testing.assert_frame_equal(again.per_target, cv.per_target)
    pd.testing.assert_frame_equal(again.per_fold, cv.per_fold)
    pd.testing.assert_frame_equal(again.per_fold_target, cv.per_fold_target)
    pd.testing.assert_frame_equal(again.per_fold_status, cv.per_fold_status)
    assert again.per_fold_target.index.name == "fold" and again.per_fold_status.index.name == "fold"
    assert again.per_fold_target.iloc[:, 7].isna().all() and again.per_fold_target.iloc[:, 0].notna().all()
    old = cv.to_dict()
    del old["n_boot"], old["notes"]  # a scores.json written before these keys existed
    assert type(cv).from_dict(old).n_boot == 0 and type(cv).from_dict(old).notes == []


def test_a_column_constant_inside_each_fold_is_a_constant_prediction() -> None:
    """Fold models predicting their own train means: pooled, the column varies only between folds."""
    rng = np.random.default_rng(6)
    y = rng.random((60, 3))
    folds = np.repeat(np.arange(3), 20)
    p = y + rng.normal(0, 0.3, y.shape)
    p[:, 1] = np.repeat([0.2, 0.5, 0.4], 20)  # constant in each fold, not overall
    y[:, 1] += 0.3 * (folds == 1)  # the truth ranks the fold offsets: a pooled rank would score
    cv = score_cv(y, p, folds, groups=np.arange(60), n_boot=10, targets=("a", "b", "c"))
    assert cv.per_target["status"].tolist() == [OK, CONSTANT_PREDICTION, OK]
    assert np.isnan(cv.per_target.loc["b", "spearman"])
    assert cv.score == pytest.approx(np.nansum(cv.per_target["spearman"]) / 3)
    assert cv.per_fold["n_constant_pred"].tolist() == [1, 1, 1]
    assert cv.per_fold["n_rows"].tolist() == [20, 20, 20]


def test_score_cv_interval_counts_undefined_columns_as_zero_and_defaults() -> None:
    rng = np.random.default_rng(7)
    y = rng.random((80, 30))
    p = y + rng.normal(0, 0.5, y.shape)
    p[:, 3] = 0.5
    folds, groups = np.repeat(np.arange(4), 20), np.arange(80) // 2
    cv = score_cv(y, p, folds, groups, n_boot=40, seed=2)
    counted = [j for j in range(30) if j != 3]
    boots = bootstrap_scores(y[:, counted], p[:, counted], groups, n_boot=40, seed=2) * 29 / 30
    assert cv.ci_low == pytest.approx(np.percentile(boots, 2.5))
    assert cv.ci_high == pytest.approx(np.percentile(boots, 97.5))
    default = score_cv(y, p, folds, groups)
    assert default.n_boot == 1000
    assert default.ci_low == score_cv(y, p, folds, groups, n_boot=1000, seed=0).ci_low
    no_boot = score_cv(y, p, folds, groups, n_boot=0)
    assert np.isnan(no_boot.ci_low) and np.isnan(no_boot.ci_high) and no_boot.score == cv.score
    flat = score_cv(y, np.full_like(y, 0.5), folds, groups, n_boot=10)
    assert flat.score == 0.0 and flat.ci_low == flat.ci_high == 0.0


def test_per_fold_rows_count_undefined_columns_as_zero_and_name_their_columns() -> None:
    import json

    rng = np.random.default_rng(8)
    y = rng.random((40, 3))
    p = y + rng.normal(0, 0.2, y.shape)
    folds = np.repeat([0, 1], 20)
    p[folds == 0, 1] = 0.3  # constant prediction in fold 0
    y[folds == 1, 2] = 0.5  # constant truth in fold 1
    cv = score_cv(y, p, folds, groups=np.arange(40), n_boot=0, targets=("a", "b", "c"))
    assert list(cv.per_fold.columns) == ["score", "n_rows", "n_constant_pred", "n_constant_truth"]
    for k, undefined in ((0, "b"), (1, "c")):
        row = cv.per_fold_target.loc[k]
        assert np.isnan(row[undefined])
        assert cv.per_fold.loc[k, "score"] == pytest.approx(row.fillna(0.0).sum() / 3)
    assert cv.per_fold["n_constant_pred"].tolist() == [1, 0] and cv.per_fold["n_constant_truth"].tolist() == [0, 1]
    strict = json.dumps(cv.to_dict()["per_fold_target"], allow_nan=False)  # NaN is written as null
    assert json.loads(strict)["0"]["b"] is None


def _mixed_scales(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rare-level target (90% zeros) in two folds, each fold ranked well by its own model: fold 0's
    model maps onto the levels, fold 1's stays continuous (what mixed post-processing leaves)."""
    rng = np.random.default_rng(seed)
    y = np.where(rng.random((400, 1)) < 0.9, 0.0, rng.choice([1 / 3, 2 / 3, 1.0], (400, 1)))
    p = rankdata(y[:, 0] + rng.normal(0, 0.2, 400)).reshape(-1, 1) / 400
    folds = np.repeat([0, 1], 200)
    p[folds == 0] = np.where(p[folds == 0] < 0.9, 0.0, 1.0)  # fold 0: the levels
    return y, p, folds


def test_fold_mean_is_each_folds_score_averaged_and_sees_through_mixed_scales() -> None:
    y, p, folds = _mixed_scales()
    per_fold = [mean_spearman(y[folds == k], p[folds == k]) for k in (0, 1)]
    assert fold_mean_score(y, p, folds) == pytest.approx(np.mean(per_fold))
    assert min(per_fold) > 0.4
    # pooled, fold 1's continuous mid-range rows outrank fold 0's zeros though both are mostly 0
    assert mean_spearman(y, p) < fold_mean_score(y, p, folds) - 0.1
    # one scale in both folds: pooled and fold mean agree closely
    same = np.where(p < 0.9, 0.0, 1.0)
    assert mean_spearman(y, same) == pytest.approx(fold_mean_score(y, same, folds), abs=0.05)


def test_bootstrap_fold_means_resample_questions_within_each_fold() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 4, (90, 2)) / 3
    pa, pb = y + rng.normal(0, 0.5, y.shape), y + rng.normal(0, 0.8, y.shape)
    folds, groups = np.repeat([0, 1, 2], 30), np.arange(90) // 3
    boot_a, boot_b = bootstrap_fold_means(y, [pa, pb], folds, groups, n_boot=15, seed=5)
    # the same draws by hand: fold k uses seed + k, whole questions with replacement inside it
    for b_idx in range(15):
        want_a, want_b = [], []
        for k in range(3):
            sel = np.flatnonzero(folds == k)
            _, gi = np.unique(groups[sel], return_inverse=True)
            rng_k = np.random.default_rng(5 + k)
            for _ in range(b_idx + 1):
                counts = np.bincount(rng_k.integers(0, gi.max() + 1, gi.max() + 1), minlength=gi.max() + 1)
            idx = np.repeat(sel, counts[gi])
            want_a.append(mean_spearman(y[idx], pa[idx]))
            want_b.append(mean_spearman(y[idx], pb[idx]))
        assert boot_a[b_idx] == pytest.approx(np.mean(want_a))
        assert boot_b[b_idx] == pytest.approx(np.mean(want_b))
    # paired: a prediction against itself differs by exactly 0 on every resample
    same_a, again_a = bootstrap_fold_means(y, [pa, pa], folds, groups, n_boot=15, seed=5)
    np.testing.assert_array_equal(same_a, again_a)
    np.testing.assert_array_equal(same_a, boot_a)
