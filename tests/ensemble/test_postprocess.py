"""Post-processing maths on tiny synthetic arrays: the maps, the constant guard, honest gains."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from questlab.ensemble import EnsembleSpec, nested_fit
from questlab.ensemble.postprocess import (
    DISTRIBUTION,
    IDENTITY,
    THRESHOLDS,
    LevelMap,
    PostProcessor,
    _SortedFit,
    fit_level_map,
    fit_postprocessor,
)
from questlab.metric import bootstrap_paired, bootstrap_scores, mean_spearman
from questlab.schema import TARGETS


def test_distribution_matching_hand_made() -> None:
    # Ten predictions, truth 50% at 0, 30% at 0.5, 20% at 1 (in another order than the predictions).
    pred = np.array([0.9, 0.1, 0.3, 0.5, 0.7, 0.2, 1.0, 0.4, 0.6, 0.8])
    truth = np.array([1.0, 0, 0, 0.5, 0, 0.5, 0.5, 0, 1.0, 0])
    m = fit_level_map(pred, truth, DISTRIBUTION)
    assert m.levels == [0.0, 0.5, 1.0]
    assert m.thresholds == pytest.approx([0.55, 0.85])  # midway between the 5th/6th and 8th/9th predictions
    np.testing.assert_array_equal(m.apply(pred), np.where(pred < 0.55, 0.0, np.where(pred < 0.85, 0.5, 1.0)))
    # New predictions (outside the fitted range too) land on the same steps.
    np.testing.assert_array_equal(m.apply(np.array([-3.0, 0.54, 0.56, 0.84, 0.86, 7.0])), [0, 0, 0.5, 0.5, 1, 1])
    # The level shares match the truth's.
    assert np.mean(m.apply(pred) == 0.0) == np.mean(truth == 0.0)


def test_bucket_spearman_is_exact_and_optimised_thresholds_beat_matching_in_sample() -> None:
    rng = np.random.default_rng(1)
    truth = rng.choice([0, 1 / 3, 2 / 3, 1], size=400, p=[0.7, 0.15, 0.1, 0.05])
    pred = truth + rng.normal(0, 0.4, 400)
    fit = _SortedFit(pred, truth)
    bounds = fit.distribution_bounds()
    mapped = fit.to_map(DISTRIBUTION, bounds).apply(pred)
    assert fit.spearman(bounds) == pytest.approx(spearmanr(mapped, truth)[0])
    opt = fit_level_map(pred, truth, THRESHOLDS)
    assert spearmanr(opt.apply(pred), truth)[0] >= spearmanr(mapped, truth)[0]


def _adversarial(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """30 targets built to tempt a map into one level: rare levels, heavy prediction ties, noise."""
    rng = np.random.default_rng(seed)
    n = 120
    truth = np.zeros((n, len(TARGETS)))
    pred = rng.random((n, len(TARGETS)))
    for t in range(len(TARGETS)):
        n_rare = t % 4  # 0..3 rows off the majority level (0: constant truth)
        truth[rng.choice(n, n_rare, replace=False), t] = rng.choice([0.5, 1.0], n_rare)
        if t % 3 == 0:  # predictions in two tied blocks, the larger swallowing the rare rows' cut
            pred[:, t] = np.where(rng.random(n) < 0.97, 0.2, 0.8)
    return pred, truth, rng.integers(0, 60, n)


@pytest.mark.parametrize("method", ["auto", DISTRIBUTION, THRESHOLDS])
def test_no_constant_column_ever_comes_out(method: str) -> None:
    saw_fallback = False
    for seed in range(3):
        pred, truth, groups = _adversarial(seed)
        # min_gain=-1 forces a mapping on every target where one can be fitted: the guard must hold.
        pp = fit_postprocessor(pred, truth, groups, method=method, inner_folds=3, min_gain=-1.0)
        out, _ = pp.apply(pred)
        varied = np.ptp(pred, axis=0) > 0
        assert (np.ptp(out, axis=0)[varied] > 0).all()
        saw_fallback |= any("constant" in n for n in pp.notes)
    assert saw_fallback, "the adversarial cases should have triggered (and reported) the fallback"


def test_apply_guard_keeps_a_column_the_map_would_flatten() -> None:
    maps = [LevelMap()] * len(TARGETS)
    maps[4] = LevelMap(DISTRIBUTION, thresholds=[0.9], levels=[0.0, 1.0])  # all of this batch is < 0.9
    pred = np.linspace(0.1, 0.5, 10)[:, None].repeat(len(TARGETS), axis=1)
    out, notes = PostProcessor(maps).apply(pred)
    np.testing.assert_array_equal(out, pred)
    assert notes and TARGETS[4] in notes[0]
    # A single row is constant by nature: it is mapped, not "guarded".
    single, notes = PostProcessor(maps).apply(pred[:1])
    assert single[0, 4] == 0.0 and not notes


def test_postprocessor_round_trips_through_json(tmp_path) -> None:
    pred, truth, groups = _adversarial(7)
    pred += np.random.default_rng(0).normal(0, 0.01, pred.shape)  # break ties so maps are fitted
    pp = fit_postprocessor(pred, truth, groups, method="auto", inner_folds=3, min_gain=-1.0)
    pp.save(tmp_path / "pp.json")
    again = PostProcessor.load(tmp_path / "pp.json")
    np.testing.assert_array_equal(again.apply(pred)[0], pp.apply(pred)[0])
    assert any(m != IDENTITY for m in again.chosen().values())


def test_nested_gain_is_below_in_sample_gain_when_mapping_fits_noise() -> None:
    # Predictions carry no signal at all: whatever optimised thresholds "gain" in-sample is overfit.
    rng = np.random.default_rng(3)
    n = 300
    truth = rng.choice([0, 0.25, 0.5, 0.75, 1.0], size=(n, len(TARGETS)))
    pred = rng.random((1, n, len(TARGETS)))
    groups = np.arange(n) // 2
    folds = groups % 5
    spec = EnsembleSpec(weights="equal", postprocess=THRESHOLDS, min_gain=-1.0)
    res = nested_fit(pred, truth, folds, groups, spec, references=None)
    raw = mean_spearman(truth, pred[0])
    in_sample_gain = mean_spearman(truth, res.in_sample) - raw
    nested_gain = mean_spearman(truth, res.nested) - raw
    assert in_sample_gain > 0.02
    assert nested_gain < in_sample_gain - 0.02


def test_paired_bootstrap_is_the_difference_on_shared_resamples() -> None:
    rng = np.random.default_rng(5)
    y = rng.random((80, 3))
    a, b = y + rng.normal(0, 1, y.shape), y + rng.normal(0, 0.3, y.shape)
    groups = np.arange(80) // 2
    diff = bootstrap_paired(y, a, b, groups, n_boot=30, seed=2)
    expected = bootstrap_scores(y, b, groups, n_boot=30, seed=2) - bootstrap_scores(y, a, groups, n_boot=30, seed=2)
    np.testing.assert_allclose(diff, expected)
    assert np.all(bootstrap_paired(y, a, a, groups, n_boot=10) == 0)
