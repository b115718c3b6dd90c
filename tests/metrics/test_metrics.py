"""The metrics a task can name: values, direction, undefined cases and intervals."""

from __future__ import annotations

import numpy as np
import pytest

from questlab.metric import mean_spearman
from questlab.metric import score_cv as spearman_score_cv
from questlab.metrics import METRICS, get_metric
from questlab.metrics.base import CONSTANT_PREDICTION, OK, CVScore


def _data(n: int = 60, t: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.uniform(1, 5, size=(n, t))
    return y, y + rng.normal(0, 0.5, size=y.shape), np.arange(n) // 3


def test_mcrmse_is_the_mean_of_column_rmses_and_lower_is_better():
    y, p, _ = _data()
    m = get_metric("mcrmse")
    expected = np.mean(np.sqrt(((p - y) ** 2).mean(axis=0)))
    assert m.score(y, p) == pytest.approx(expected, rel=1e-12)
    assert not m.higher_is_better and m.sign == -1
    assert m.better(0.4, 0.5) and not m.better(0.5, 0.4)
    assert m.gain(0.4, 0.5) == pytest.approx(0.1)
    assert m.best([0.6, 0.45, 0.5]) == 1
    assert m.worst == np.inf


def test_spearman_points_up_and_matches_the_0_9_0_function():
    y, p, _ = _data()
    m = get_metric("spearman")
    assert m.higher_is_better and m.rank_based
    assert m.score(y, p) == mean_spearman(y, p)
    assert m.best([0.3, 0.35, 0.2]) == 1


def test_a_constant_prediction_is_undefined_under_spearman_but_only_weak_under_mcrmse():
    y, p, _ = _data()
    p[:, 0] = 3.0
    _, status = get_metric("spearman").per_target(y, p)
    assert status[0] == CONSTANT_PREDICTION
    values, status = get_metric("mcrmse").per_target(y, p)
    assert status[0] == OK and np.isfinite(values).all()


def test_rmse_scores_exactly_one_target():
    y, p, _ = _data(t=1)
    assert get_metric("rmse").score(y, p) == pytest.approx(np.sqrt(((p - y) ** 2).mean()))
    with pytest.raises(ValueError, match="one target"):
        get_metric("rmse").score(*_data(t=2)[:2])


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(ValueError, match="spearman, mcrmse, rmse"):
        get_metric("auc")
    assert set(METRICS) == {"spearman", "mcrmse", "rmse"}


def test_error_metric_bootstrap_resamples_groups_and_brackets_the_score():
    y, p, groups = _data(n=90)
    m = get_metric("mcrmse")
    folds = np.arange(90) % 3
    cv = m.score_cv(y, p, folds, groups, ("a", "b", "c"), n_boot=200, seed=1)
    assert cv.ci_low < cv.score < cv.ci_high
    assert cv.metric == "mcrmse" and list(cv.per_target.columns) == ["rmse", "status"]
    assert list(cv.target_values.index) == ["a", "b", "c"]
    back = CVScore.from_dict(cv.to_dict())
    assert back.metric == "mcrmse" and back.score == cv.score
    # the same seed draws the same resamples: paired differences of two predictions
    a, b = m.bootstrap_targets(y, [p, p + 0.1], groups, n_boot=50, seed=3)
    assert a.shape == (50, 3) and (b.mean(axis=1) != a.mean(axis=1)).all()
    # a resample weight vector draws whole groups: rows of a group always share a multiplicity
    from questlab.metrics.base import group_weights

    w = next(group_weights(groups, 1, 0))
    assert all(len(set(w[groups == g])) == 1 for g in np.unique(groups))


def test_spearman_score_cv_through_the_metric_is_the_0_9_0_score_cv():
    y, p, groups = _data(n=90, t=30)
    folds = np.arange(90) % 3
    new = get_metric("spearman").score_cv(y, p, folds, groups, tuple(f"t{i}" for i in range(30)), n_boot=100)
    old = spearman_score_cv(y, p, folds, groups, n_boot=100, targets=tuple(f"t{i}" for i in range(30)))
    assert (new.score, new.ci_low, new.ci_high) == (old.score, old.ci_low, old.ci_high)
