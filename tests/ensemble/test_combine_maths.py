"""The ensemble maths of ``questlab.ensemble.combine`` against hand-computed cases (no runs needed)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from helpers.question_world import question_world
from questlab.ensemble.combine import (
    MAX_GRID,
    Combiner,
    EnsembleSpec,
    _spearman_columns,
    combiner_state,
    fit_combiner,
    fit_weights,
    fold_mean_summary,
    gain_summary,
    nested_fit,
    restore_combiner,
    simplex_grid,
    to_quantiles,
)
from questlab.ensemble.postprocess import PostProcessor, fit_postprocessor
from questlab.ensemble.question_share import fit_question_share
from questlab.errors import UsageError
from questlab.metric import bootstrap_fold_means, bootstrap_paired, fold_mean_score, mean_spearman
from questlab.schema import TARGETS


def test_to_quantiles_are_mid_quantiles_with_ties_counted_half() -> None:
    reference = np.array([[0.1, 0.0], [0.2, 0.5], [0.2, 0.5], [0.4, 1.0]])  # columns sorted
    pred = np.array([[0.1, -1.0], [0.2, 0.5], [0.3, 2.0], [0.05, 0.75]])
    want = np.array(
        [
            [(0 + 1) / 8, 0.0],  # 0.1: 0 below, 1 equal -> (0 + 1) / (2 * 4)
            [(1 + 3) / 8, (1 + 3) / 8],  # the tie of two: 1 below, 3 at or below
            [(3 + 3) / 8, 1.0],
            [0.0, (3 + 3) / 8],
        ]
    )
    np.testing.assert_allclose(to_quantiles(pred, reference), want)
    # on the reference itself (no ties): (rank - 0.5) / n
    ref = np.sort(np.random.default_rng(0).random((7, 3)), axis=0)
    np.testing.assert_allclose(to_quantiles(ref, ref), np.tile((np.arange(1, 8) - 0.5) / 7, (3, 1)).T)


@pytest.mark.parametrize(("members", "size", "step"), [(1, 1, 1), (2, 11, 0.1), (3, 66, 0.1), (5, 715, 1 / 9)])
def test_simplex_grid_is_the_finest_grid_that_fits(members: int, size: int, step: float) -> None:
    grid = simplex_grid(members)
    assert grid.shape == (size, members) and size <= MAX_GRID
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert grid.min() == 0 or members == 1
    assert len({tuple(np.round(w, 9)) for w in grid}) == size  # no point twice
    np.testing.assert_allclose(np.round(grid / step), grid / step, atol=1e-9)  # on the 1/s lattice


def test_simplex_grid_falls_back_to_single_members() -> None:
    np.testing.assert_array_equal(simplex_grid(3, max_points=2), np.eye(3))
    assert simplex_grid(2, max_points=3).shape == (3, 2)  # steps 2: (0,1), (.5,.5), (1,0)
    np.testing.assert_allclose(sorted(simplex_grid(2, max_points=3)[:, 0]), [0, 0.5, 1])


def test_spearman_columns_match_scipy_and_are_zero_when_constant() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, (40, 3)) / 3
    pred = rng.random((40, 3))
    pred[:, 2] = 0.5  # constant

    rt = rankdata(truth, axis=0)
    rt -= rt.mean(axis=0)
    got = _spearman_columns(rt, pred)
    want = [spearmanr(truth[:, j], pred[:, j])[0] for j in range(2)]
    np.testing.assert_allclose(got[:2], want)
    assert got[2] == 0.0


def _two_members(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Member 0 knows target 0, member 1 knows target 1 (each noise on the other)."""
    rng = np.random.default_rng(seed)
    truth = rng.random((200, 2))
    a = np.stack([truth[:, 0], rng.random(200)], axis=1)
    b = np.stack([rng.random(200), truth[:, 1]], axis=1)
    return np.stack([a, b]), truth


def test_fit_weights_per_target_picks_each_targets_member() -> None:
    x, truth = _two_members()
    np.testing.assert_allclose(fit_weights(x, truth, per_target=True), [[1.0, 0.0], [0.0, 1.0]])
    shared = fit_weights(x, truth, per_target=False)
    assert shared.shape == (2, 2) and (shared[0] == shared[1]).all()
    # the shared weights maximise the mean over targets: check against every grid point
    best = max(simplex_grid(2), key=lambda w: mean_spearman(truth, np.einsum("m,mnt->nt", w, x)))
    np.testing.assert_allclose(shared[0], best)


def test_blend_apply_and_rank_average() -> None:
    x = np.array([[[0.2, 1.4], [0.4, -0.2]], [[0.6, 0.0], [0.8, 0.0]]])  # (2 members, 2 rows, 2 targets)
    combiner = Combiner(weights=np.array([[0.5, 0.5], [0.25, 0.75]]))
    np.testing.assert_allclose(combiner.blend(x), [[0.4, 0.35], [0.6, -0.05]])
    pred, notes = combiner.apply(x)
    np.testing.assert_allclose(pred, [[0.4, 0.35], [0.6, 0.0]])  # clipped to [0, 1]
    assert notes == []
    refs = [np.sort(x[0], axis=0), np.sort(x[1], axis=0)]
    ranked = Combiner(weights=np.array([[1.0, 0.0], [0.0, 1.0]]), average="rank", references=refs)
    np.testing.assert_allclose(ranked.blend(x), [[0.25, 0.5], [0.75, 0.5]])


def test_fit_combiner_normalises_given_weights_and_defaults_to_equal() -> None:
    x, truth = _two_members()
    groups = np.arange(len(truth))
    given = fit_combiner(x, truth, groups, EnsembleSpec(weights=[2.0, 6.0]), None)
    np.testing.assert_allclose(given.weights, [[0.25, 0.75], [0.25, 0.75]])
    equal = fit_combiner(x, truth, groups, EnsembleSpec(weights="equal"), None)
    np.testing.assert_allclose(equal.weights, np.full((2, 2), 0.5))
    one = fit_combiner(x[:1], truth, groups, EnsembleSpec(weights="auto"), None)
    np.testing.assert_allclose(one.weights, np.ones((2, 1)))
    auto = fit_combiner(x, truth, groups, EnsembleSpec(weights="auto", per_target=True), None)
    np.testing.assert_allclose(auto.weights, [[1.0, 0.0], [0.0, 1.0]])
    assert auto.postprocessor is None and auto.average == "value"


def test_rank_average_fits_weights_on_quantiles() -> None:
    x, truth = _two_members()
    x = x.copy()
    x[1] = x[1] ** 5 * 100  # a monotone rescaling: ranks unchanged, values far off the other member's
    refs = [np.sort(m, axis=0) for m in x]
    ranked = fit_combiner(x, truth, np.arange(len(truth)), EnsembleSpec(average="rank", per_target=True), refs)
    np.testing.assert_allclose(ranked.weights, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(ranked.blend(x)[:, 1], to_quantiles(x[1], refs[1])[:, 1])


def test_spec_check_messages() -> None:
    EnsembleSpec().check(2)
    EnsembleSpec(weights=[0.0, 1.0]).check(2)
    with pytest.raises(UsageError, match=r"^1 weights given for 2 runs$"):
        EnsembleSpec(weights=[1.0]).check(2)
    for bad in ([-0.1, 1.1], [0.0, 0.0]):
        with pytest.raises(UsageError, match=r"^weights must be non-negative with a positive sum$"):
            EnsembleSpec(weights=bad).check(2)
    with pytest.raises(
        UsageError, match=r"^unknown weights 'best'; give one of auto, equal or numbers such as 0.7,0.3$"
    ):
        EnsembleSpec(weights="best").check(2)
    with pytest.raises(UsageError, match=r"^unknown averaging 'mean'; choose one of value, rank$"):
        EnsembleSpec(average="mean").check(2)
    with pytest.raises(UsageError, match="unknown post-processing method 'magic'"):
        EnsembleSpec(postprocess="magic").check(2)


def test_gain_summary_is_other_minus_base_with_a_paired_interval() -> None:
    x, truth = _two_members(seed=2)
    groups = np.arange(len(truth)) // 2
    base, other = x[0], 0.5 * x[0] + 0.5 * x[1]
    out = gain_summary(truth, base, other, groups, n_boot=0)
    assert out == {"gain": pytest.approx(mean_spearman(truth, other) - mean_spearman(truth, base))}
    out = gain_summary(truth, base, other, groups, n_boot=40, seed=5)
    diffs = bootstrap_paired(truth, base, other, groups, n_boot=40, seed=5)
    assert out["ci_low"] == pytest.approx(np.percentile(diffs, 2.5))
    assert out["ci_high"] == pytest.approx(np.percentile(diffs, 97.5))
    assert out["ci_low"] < out["ci_high"]


def test_gain_summary_keeps_the_gain_beside_its_interval_and_defaults_to_seed_0() -> None:
    """With an interval the gain is still the one measured on all rows; the interval's default
    seed is 0 (the question-share and post-processing gains of an ensemble report rely on it)."""
    x, truth = _two_members(seed=3)
    groups = np.arange(len(truth)) // 2
    base, other = x[0], 0.5 * x[0] + 0.5 * x[1]
    diffs = bootstrap_paired(truth, base, other, groups, n_boot=30, seed=0)
    assert gain_summary(truth, base, other, groups, n_boot=30) == {
        "gain": gain_summary(truth, base, other, groups, n_boot=0)["gain"],
        "ci_low": float(np.percentile(diffs, 2.5)),
        "ci_high": float(np.percentile(diffs, 97.5)),
    }


def test_grid_points_are_all_compositions() -> None:
    # 3 members, step 1/10: exactly the compositions of 10 into 3 non-negative parts
    want = {c for c in itertools.product(range(11), repeat=3) if sum(c) == 10}
    assert {tuple(np.rint(w * 10).astype(int).tolist()) for w in simplex_grid(3)} == want


def test_method_refusals_name_the_choices() -> None:
    with pytest.raises(
        UsageError, match=r"^unknown ensembling method 'blend'; choose one of weights, stack, stack\+related$"
    ):
        EnsembleSpec(method="blend").check(2)
    with pytest.raises(UsageError, match=r"^weights \[0.5, 0.5\] apply to method 'weights'; the stack fits its own$"):
        EnsembleSpec(method="stack", weights=[0.5, 0.5]).check(2)
    EnsembleSpec(method="stack+related").check(2)


def _record(fitted: Combiner) -> dict:
    """What ensemble.json holds of a fitted combiner, through JSON."""
    record = {"weights": {t: w.tolist() for t, w in zip(TARGETS, fitted.weights, strict=True)},
              "average": fitted.average, **combiner_state(fitted)}  # fmt: skip
    return json.loads(json.dumps(record))


@pytest.mark.parametrize(
    "spec",
    [
        EnsembleSpec(weights=[0.3, 0.7]),
        EnsembleSpec(method="stack"),
        EnsembleSpec(method="stack+related"),
        EnsembleSpec(question_share=True),
    ],
)
def test_a_combiner_restored_from_its_record_combines_the_same(spec: EnsembleSpec) -> None:
    """What ensemble.json records (weights per target, averaging, combiner_state) rebuilds the combiner."""
    rng = np.random.default_rng(4)
    truth = rng.random((120, len(TARGETS)))
    x = np.stack([truth + rng.normal(0, s, truth.shape) for s in (0.3, 0.6)])
    groups = np.arange(120) // 3
    fitted = fit_combiner(x, truth, groups, spec, None)
    state = combiner_state(fitted)
    assert state["method"] == spec.method
    assert (state["stack"] is None) == (spec.method == "weights")
    assert (state["question_share"] is None) == (not spec.question_share)
    restored = restore_combiner(_record(fitted), None, None)
    assert restored.average == "value" and restored.postprocessor is None
    np.testing.assert_allclose(restored.weights, fitted.weights)
    np.testing.assert_allclose(restored.combine(x, groups), fitted.combine(x, groups), atol=1e-12)
    np.testing.assert_allclose(restored.apply(x, groups)[0], fitted.apply(x, groups)[0], atol=1e-12)


def test_fit_weights_ranks_the_truth_down_each_column() -> None:
    """Targets on different scales (one always above the other in every row): ranking the truth
    across a row instead of down a column would make every column's ranks constant, and the
    weights arbitrary. Down the column, the member that is the truth wins every target."""
    rng = np.random.default_rng(0)
    truth = rng.random((60, 2)) + np.array([10.0, 0.0])
    x = np.stack([truth, rng.random((60, 2))])  # member 0: the truth itself; member 1: noise
    np.testing.assert_allclose(fit_weights(x, truth, per_target=True), [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(fit_weights(x, truth, per_target=False), [[1.0, 0.0], [1.0, 0.0]])


def _rater_world(members: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(members, truth on 4 rater levels, groups): questions of 3 answers with noisy answers."""
    x, truth, _, groups = question_world(answer_noise=0.5, seed=seed, n_questions=120, members=members)
    return x, np.round(truth * 3) / 3, groups


def test_post_processing_after_a_question_share_is_fitted_with_the_spec_settings() -> None:
    """The maps are fitted on the *shared* blend, with the spec's method, min_gain and seed."""
    x, truth, groups = _rater_world()
    spec = EnsembleSpec(weights="equal", question_share=True, postprocess="distribution", min_gain=-1.0, seed=7)
    fitted = fit_combiner(x, truth, groups, spec, None)
    share = fit_question_share(x[0], truth, groups)  # one member: the blend is the member
    assert share.chosen()
    shared = share.apply(x[0], groups)
    np.testing.assert_array_equal(fitted.combine(x, groups), shared)

    want = fit_postprocessor(shared, truth, groups, "distribution", min_gain=-1.0, seed=7)
    assert fitted.postprocessor.to_dict() == want.to_dict()
    # each of those settings changes the fit here, so none may be lost on the way
    for other in (
        fit_postprocessor(shared, truth, groups, "distribution", min_gain=-1.0),  # seed 0
        fit_postprocessor(shared, truth, groups, "auto", min_gain=-1.0, seed=7),
        fit_postprocessor(shared, truth, groups, "distribution", seed=7),  # default min_gain
        fit_postprocessor(x[0], truth, groups, "distribution", min_gain=-1.0, seed=7),  # unshared
    ):
        assert other.to_dict() != want.to_dict()


@pytest.mark.parametrize("method", ["weights", "stack"])
def test_a_rank_averaged_combiner_with_maps_and_a_share_restores_to_the_same_predictions(
    method: str, tmp_path: Path
) -> None:
    """ensemble.json + postprocess.json + the members' sorted OOF rebuild a combiner that predicts
    exactly what the fitted one does, on its own rows and on a new batch."""
    x, truth, groups = _rater_world(members=2)
    x[1] = x[1] ** 3  # another scale: rank averaging is what makes the members comparable
    refs = [np.sort(m, axis=0) for m in x]
    spec = EnsembleSpec(average="rank", method=method, question_share=True, postprocess="thresholds", min_gain=-1.0)
    fitted = fit_combiner(x, truth, groups, spec, refs)
    assert fitted.question_share.chosen() and set(fitted.postprocessor.chosen().values()) == {"thresholds"}
    fitted.postprocessor.save(tmp_path / "postprocess.json")
    restored = restore_combiner(_record(fitted), refs, PostProcessor.load(tmp_path / "postprocess.json"))
    assert restored.average == "rank"
    new, _, _, new_groups = question_world(answer_noise=0.5, seed=9, n_questions=20, members=2)
    new[1] = new[1] ** 3
    for batch, batch_groups in ((x, groups), (new, new_groups)):
        want, want_notes = fitted.apply(batch, batch_groups)
        got, notes = restored.apply(batch, batch_groups)
        np.testing.assert_array_equal(got, want)
        assert notes == want_notes


def test_nested_fit_records_the_outer_folds_whose_maps_were_applied() -> None:
    """``mapped_folds`` says where post-processing changed the rows: a fold whose column the map
    would make constant keeps its blend, and is not listed."""
    x, truth, groups = _rater_world()
    folds = groups % 4
    # target 0: inside fold 2 every value falls in one bucket of the map, which would make the
    # column constant: the blend is kept there
    x[0][folds == 2, 0] = 0.5 + 1e-9 * np.arange((folds == 2).sum())
    forced = EnsembleSpec(weights="equal", postprocess="distribution", min_gain=-1.0)
    res = nested_fit(x, truth, folds, groups, forced, None)
    assert res.mapped_folds[TARGETS[0]] == [0, 1, 3]
    assert sum(res.mapped_folds.get(t) == [0, 1, 2, 3] for t in TARGETS[1:]) >= 25
    for t, ks in res.mapped_folds.items():  # listed exactly where the rows changed
        j = TARGETS.index(t)
        for k in range(4):
            held = folds == k
            assert (k in ks) == bool(np.any(res.nested[held, j] != np.clip(res.nested_blend[held, j], 0, 1)))
    never = EnsembleSpec(weights="equal", postprocess="distribution", min_gain=1.0)  # no gain can exceed 1
    assert nested_fit(x, truth, folds, groups, never, None).mapped_folds == {}
    assert nested_fit(x, truth, folds, groups, EnsembleSpec(weights="equal"), None).mapped_folds == {}


def test_fold_mean_summary_is_the_fold_mean_and_its_paired_gain() -> None:
    x, truth, groups = _rater_world(members=2)
    folds = groups % 3
    out = fold_mean_summary(truth, x[0], x[1], folds, groups, n_boot=50, seed=3)
    assert out["score"] == pytest.approx(fold_mean_score(truth, x[1], folds))
    assert out["gain"] == pytest.approx(out["score"] - fold_mean_score(truth, x[0], folds))
    assert out["ci_low"] <= out["score"] <= out["ci_high"]
    assert out["gain_ci_low"] <= out["gain"] <= out["gain_ci_high"]
    # the 95% intervals of the spec's seed's resamples (paired: the gain's from the same draws)
    boot_base, boot_other = bootstrap_fold_means(truth, [x[0], x[1]], folds, groups, 50, 3)
    assert [out["ci_low"], out["ci_high"]] == pytest.approx(np.percentile(boot_other, [2.5, 97.5]))
    gain_ci = np.percentile(boot_other - boot_base, [2.5, 97.5])
    assert [out["gain_ci_low"], out["gain_ci_high"]] == pytest.approx(gain_ci)
    seed_0 = bootstrap_fold_means(truth, [x[1]], folds, groups, 50, 0)[0]
    default = fold_mean_summary(truth, x[0], x[1], folds, groups, n_boot=50)
    assert default["ci_low"] == pytest.approx(np.percentile(seed_0, 2.5)) != out["ci_low"]
    assert set(fold_mean_summary(truth, x[0], x[1], folds, groups, n_boot=0)) == {"score", "gain"}
