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


def test_unknown_methods_are_refused_with_the_choices() -> None:
    from questlab.ensemble.postprocess import check_method

    with pytest.raises(ValueError, match=r"^unknown post-processing method 'magic'; choose one of auto, distribution, "
                                         r"thresholds, identity$"):  # fmt: skip
        check_method("magic")
    assert check_method("auto") == (IDENTITY, DISTRIBUTION, THRESHOLDS)
    with pytest.raises(ValueError, match=r"^unknown method 'magic'; choose one of identity, distribution, thresholds$"):
        fit_level_map(np.array([0.1, 0.2, 0.3]), np.array([0.0, 1.0, 1.0]), "magic")


def test_bucket_spearman_on_two_rows_and_on_one_bucket() -> None:
    fit = _SortedFit(np.array([0.2, 0.7]), np.array([0.0, 1.0]))  # rank variances of 0.5: below 1
    assert fit.spearman(np.array([0, 1, 2])) == pytest.approx(1.0)
    assert fit.spearman(np.array([0, 2])) == 0.0  # one bucket: every prediction tied, no Spearman


def _single_cut_moves_cannot_improve(fit: _SortedFit, bounds: np.ndarray) -> bool:
    best = fit.spearman(bounds)
    for i in range(1, len(bounds) - 1):
        for c in fit.grid_pos[(fit.grid_pos >= bounds[i - 1]) & (fit.grid_pos <= bounds[i + 1])]:
            moved = bounds.copy()
            moved[i] = c
            if fit.spearman(moved) > best + 1e-9:
                return False
    return True


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimised_thresholds_are_a_local_optimum_on_the_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.choice([0, 1 / 3, 2 / 3, 1], size=300, p=[0.4, 0.3, 0.2, 0.1])
    pred = truth + rng.normal(0, 0.4, truth.shape)
    fit = _SortedFit(pred, truth)
    start = fit.distribution_bounds()
    bounds = fit.optimise(start)
    assert bounds[0] == 0 and bounds[-1] == len(pred) and (np.diff(bounds) >= 0).all()
    assert set(bounds[1:-1]) <= set(fit.grid_pos)
    assert fit.spearman(bounds) >= fit.spearman(start)
    assert _single_cut_moves_cannot_improve(fit, bounds)
    two_levels = _SortedFit(pred, (truth > 0.5).astype(float))  # one cut: the optimum is the best grid point
    cut = two_levels.optimise(two_levels.distribution_bounds())
    best = max(two_levels.grid_pos, key=lambda c: two_levels.spearman(np.array([0, c, len(pred)])))
    assert two_levels.spearman(cut) == pytest.approx(two_levels.spearman(np.array([0, best, len(pred)])))


def test_constant_inner_predictions_count_zero() -> None:
    from questlab.ensemble.postprocess import _per_target_spearman

    truth = np.array([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]])
    np.testing.assert_array_equal(_per_target_spearman(truth, np.array([[0.3, 0.1], [0.3, 0.2], [0.3, 0.3]])), [0, 1])


def test_inner_group_folds_keep_questions_whole_and_follow_the_seed() -> None:
    from questlab.ensemble.postprocess import inner_group_folds

    groups = np.repeat(np.arange(23), 3)
    folds = inner_group_folds(groups, 5, seed=1)
    assert set(folds) == set(range(5)) and folds.dtype.kind == "i"
    assert all(len(set(folds[groups == g])) == 1 for g in range(23))
    sizes = np.bincount(folds) // 3
    assert sizes.max() - sizes.min() <= 1  # groups dealt round-robin
    np.testing.assert_array_equal(folds, inner_group_folds(groups, 5, seed=1))
    assert (folds != inner_group_folds(groups, 5, seed=2)).any()


def test_postprocessor_dict_names_every_field() -> None:
    maps = [LevelMap()] * len(TARGETS)
    maps[2] = LevelMap(DISTRIBUTION, [0.5], [0.0, 1.0])
    pp = PostProcessor(maps, method="distribution", notes=["x: note"], inner_scores={"identity": [0.1] * 30})
    d = pp.to_dict()
    assert set(d) == {"method", "targets", "inner_scores", "notes"} and list(d["targets"]) == list(TARGETS)
    assert d["targets"][TARGETS[2]] == {"method": "distribution", "thresholds": [0.5], "levels": [0.0, 1.0]}
    again = PostProcessor.from_dict(d)
    assert (again.method, again.notes, again.inner_scores) == ("distribution", ["x: note"], {"identity": [0.1] * 30})
    assert again.chosen()[TARGETS[2]] == DISTRIBUTION and again.chosen()[TARGETS[0]] == IDENTITY


def test_a_prediction_on_a_threshold_takes_the_upper_level() -> None:
    m = LevelMap(DISTRIBUTION, [0.5, 0.8], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(m.apply(np.array([0.5, 0.8, 0.49])), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(m.apply([0, 1]), [0.0, 1.0])  # integers and lists too


def test_the_constant_guard_is_per_column_and_needs_a_varying_batch() -> None:
    flatten = LevelMap(DISTRIBUTION, [10.0], [0.0, 1.0])  # every prediction below 10: all 0
    step = LevelMap(DISTRIBUTION, [0.5], [0.0, 1.0])
    maps = [flatten, step] + [LevelMap()] * (len(TARGETS) - 2)
    pred = np.tile(np.array([[0.2], [0.7]]), (1, len(TARGETS)))
    out, notes = PostProcessor(maps).apply(pred)
    np.testing.assert_array_equal(out[:, 0], pred[:, 0])  # left as is, with a note
    np.testing.assert_array_equal(out[:, 1], [0.0, 1.0])  # the next column is still mapped
    assert notes == [f"{TARGETS[0]}: the distribution map made the column constant; left as is"]
    one, notes = PostProcessor(maps).apply(pred[:1])  # one row: nothing to flatten
    assert one[0, 0] == 0.0 and notes == []
    flat_in = np.full((2, len(TARGETS)), 0.3)  # already constant: mapping it is no loss
    out, notes = PostProcessor(maps).apply(flat_in)
    assert out[0, 0] == 0.0 and notes == []


def test_level_maps_need_two_levels_and_two_predictions() -> None:
    pred = np.array([0.1, 0.4, 0.2, 0.9, 0.7, 0.3])
    two = fit_level_map(pred, np.array([0, 0, 0, 1, 1, 0.0]), DISTRIBUTION)
    assert two.method == DISTRIBUTION and two.levels == [0.0, 1.0] and two.thresholds == pytest.approx([0.55])
    assert fit_level_map(pred, np.array([0, 0, 0, 1, 1, 0.0]), THRESHOLDS).method == THRESHOLDS
    assert fit_level_map(pred, np.full(6, 0.5), DISTRIBUTION) == LevelMap()  # constant truth
    assert fit_level_map(np.full(6, 0.5), np.array([0, 0, 0, 1, 1, 0.0]), DISTRIBUTION) == LevelMap()


def test_cuts_never_split_tied_predictions() -> None:
    pred = np.repeat(np.arange(12) / 12, 10)  # 12 values, each 10 times: cuts only every 10 rows
    truth = np.random.default_rng(3).choice([0.0, 0.5, 1.0], size=len(pred))
    fit = _SortedFit(pred, truth)
    np.testing.assert_array_equal(fit.valid_pos, np.arange(0, 121, 10))
    np.testing.assert_array_equal(fit.grid_pos, np.arange(0, 121, 10))  # 51 grid steps snap to the 13 cuts
    np.testing.assert_array_equal(fit.snap(np.array([0, 4, 5, 6, 14, 115, 120])), [0, 0, 0, 10, 10, 110, 120])
    spread = _SortedFit(np.arange(200) / 200, np.random.default_rng(4).choice([0.0, 1.0], size=200))
    np.testing.assert_array_equal(spread.grid_pos, np.arange(0, 201, 4))  # 2% quantiles of 200 rows


def test_an_old_postprocess_json_loads_with_defaults() -> None:
    d = PostProcessor([LevelMap()] * len(TARGETS), method="thresholds", notes=["n"]).to_dict()
    for key in ("method", "notes", "inner_scores"):
        del d[key]
    old = PostProcessor.from_dict(d)
    assert (old.method, old.notes, old.inner_scores) == ("auto", [], {})


def test_inner_scores_are_measured_on_rows_the_map_was_not_fitted_on() -> None:
    from questlab.ensemble.postprocess import inner_group_folds

    pred, truth, groups = _adversarial(9)
    pred = pred + np.random.default_rng(1).normal(0, 0.05, pred.shape)
    pp = fit_postprocessor(pred, truth, groups, method="distribution", inner_folds=3, seed=4, min_gain=-1.0)
    inner = inner_group_folds(groups, 3, 4)
    for t in (2, 3, 5):  # targets with rare levels and varied predictions
        want = 0.0
        for k in range(3):
            fit, held = inner != k, inner == k
            mapped = fit_level_map(pred[fit, t], truth[fit, t], DISTRIBUTION).apply(pred[held, t])
            want += mean_spearman(truth[held, t], mapped) / 3  # a constant column counts 0
        assert pp.inner_scores[DISTRIBUTION][t] == pytest.approx(want)
    assert any(pp.inner_scores[DISTRIBUTION][t] != 0 for t in (2, 3, 5))
    again = fit_postprocessor(pred, truth, groups, method="distribution", inner_folds=3, seed=4, min_gain=-1.0)
    assert again.inner_scores == pp.inner_scores  # the inner folds follow the seed
    default = fit_postprocessor(pred, truth, groups)
    explicit = fit_postprocessor(pred, truth, groups, method="auto", inner_folds=5, min_gain=0.01, seed=0)
    assert default.inner_scores == explicit.inner_scores and default.method == "auto"


@pytest.mark.parametrize("min_gain", [0.01, -1.0])
def test_each_target_keeps_the_best_method_only_if_it_beats_identity_by_min_gain(min_gain: float) -> None:
    pred, truth, groups = _adversarial(11)
    pred = pred + np.random.default_rng(2).normal(0, 0.05, pred.shape)
    pred[:, 1] = truth[:, 1] + np.random.default_rng(3).normal(0, 0.01, len(truth))  # a map can only help here
    pp = fit_postprocessor(pred, truth, groups, method="auto", inner_folds=3, min_gain=min_gain)
    assert len(pp.maps) == len(TARGETS)
    s = pp.inner_scores
    for t, target in enumerate(TARGETS):
        best = max((DISTRIBUTION, THRESHOLDS), key=lambda m, t=t: s[m][t])
        want = best if s[best][t] > s[IDENTITY][t] + min_gain else IDENTITY
        expected = fit_level_map(pred[:, t], truth[:, t], want)  # refitted on all the rows
        if np.ptp(expected.apply(pred[:, t])) == 0:  # a map that flattens the column is refused
            assert any(n.startswith(f"{target}: the {want} map made the column constant") for n in pp.notes)
            expected = LevelMap()
        assert pp.maps[t] == expected, target
    assert IDENTITY in pp.chosen().values()
    assert {m.method for m in fit_postprocessor(pred, truth, groups, method="identity", inner_folds=3).maps} == {
        IDENTITY
    }
