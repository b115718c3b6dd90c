"""Nested honesty of fitted blend weights: a fold's blend never uses what only that fold could tell.

The case is built so that a leak shows: member A tracks the truth on folds 0-3 and is noise on
fold 4; member B is noise on folds 0-3 and *is* the truth on fold 4. Weights fitted with fold 4
in sight give B some weight and score fold 4 well; weights fitted without it give B none, so
fold 4's honest (nested) blend is noise. The nested predictions must equal, fold by fold, a
combiner fitted by hand on the other folds only, and score well below the in-sample fit.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers.question_world import A_COLS, Q_COLS, question_world
from questlab.ensemble.combine import EnsembleSpec, fit_combiner, fit_weights, nested_fit
from questlab.ensemble.question_share import fit_question_share, question_means
from questlab.metric import mean_spearman
from questlab.schema import TARGETS

N_FOLDS, PER_FOLD, N_TARGETS = 5, 120, 30
LEAKY_FOLD = 4


def _case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(members (2, n, 30), truth (n, 30), folds (n,), groups (n,)): B knows fold 4 only."""
    rng = np.random.default_rng(seed)
    n = N_FOLDS * PER_FOLD
    truth = rng.uniform(size=(n, N_TARGETS))
    folds = np.repeat(np.arange(N_FOLDS), PER_FOLD)
    on_leaky = (folds == LEAKY_FOLD)[:, None]
    good = truth + 0.05 * rng.normal(size=truth.shape)
    a = np.where(on_leaky, rng.uniform(size=truth.shape), good)
    b = np.where(on_leaky, truth, rng.uniform(size=truth.shape))
    return np.stack([a, b]), truth, folds, np.arange(n)


def _by_hand(x: np.ndarray, truth: np.ndarray, folds: np.ndarray, groups: np.ndarray, spec: EnsembleSpec) -> np.ndarray:
    """Each fold's rows combined by a combiner fitted on the other folds' rows only."""
    out = np.empty_like(truth)
    for k in range(N_FOLDS):
        rest, held = folds != k, folds == k
        combiner = fit_combiner(x[:, rest], truth[rest], groups[rest], spec, None)
        out[held] = combiner.apply(x[:, held], groups[held])[0]
    return out


@pytest.mark.parametrize("per_target", [False, True])
def test_nested_weights_never_see_the_held_out_fold(per_target: bool) -> None:
    x, truth, folds, groups = _case()
    spec = EnsembleSpec(weights="auto", per_target=per_target)
    res = nested_fit(x, truth, folds, groups, spec, None)

    leaky = folds == LEAKY_FOLD
    honest_w = fit_weights(x[:, ~leaky], truth[~leaky], per_target)
    assert (honest_w[:, 1] == 0).all()  # without fold 4, B is noise: no weight
    assert (res.final.weights[:, 1] > 0).any()  # with fold 4 in sight, B earns weight
    np.testing.assert_allclose(res.nested[leaky], np.clip(x[0, leaky], 0, 1))  # fold 4 gets A alone
    np.testing.assert_allclose(res.nested, _by_hand(x, truth, folds, groups, spec), atol=1e-12)

    nested_4 = mean_spearman(truth[leaky], res.nested[leaky])
    in_sample_4 = mean_spearman(truth[leaky], res.in_sample[leaky])
    assert abs(nested_4) < 0.1 < in_sample_4  # fold 4: noise when honest, signal when leaked
    assert mean_spearman(truth, res.nested) < mean_spearman(truth, res.in_sample)


def test_nested_post_processing_is_fitted_without_the_held_out_fold() -> None:
    x, truth, folds, groups = _case(seed=1)
    truth = np.round(truth * 3) / 3  # rater fractions: 4 levels, so step maps can help
    spec = EnsembleSpec(weights="auto", postprocess="distribution", min_gain=-1.0)
    res = nested_fit(x, truth, folds, groups, spec, None)
    np.testing.assert_allclose(res.nested, _by_hand(x, truth, folds, groups, spec), atol=1e-12)
    # the blend before post-processing is the by-hand blend too (which apply clips to [0, 1])
    by_hand_blend = _by_hand(x, truth, folds, groups, EnsembleSpec(weights="auto"))
    np.testing.assert_allclose(np.clip(res.nested_blend, 0, 1), by_hand_blend, atol=1e-12)
    assert not np.allclose(res.nested, np.clip(res.nested_blend, 0, 1))  # the maps did something


def test_given_weights_fit_nothing_so_nested_equals_in_sample() -> None:
    x, truth, folds, groups = _case()
    res = nested_fit(x, truth, folds, groups, EnsembleSpec(weights=[0.25, 0.75]), None)
    np.testing.assert_allclose(res.nested, res.in_sample, atol=1e-12)
    np.testing.assert_allclose(res.in_sample, np.clip(0.25 * x[0] + 0.75 * x[1], 0, 1), atol=1e-12)


@pytest.mark.parametrize("spec", [EnsembleSpec(method="stack"), EnsembleSpec(average="rank", per_target=True)])
def test_other_fitted_combiners_are_nested_too(spec: EnsembleSpec) -> None:
    x, truth, folds, groups = _case(seed=2)
    refs = [np.sort(m, axis=0) for m in x] if spec.average == "rank" else None
    res = nested_fit(x, truth, folds, groups, spec, refs)
    want = np.empty_like(truth)
    for k in range(N_FOLDS):
        rest, held = folds != k, folds == k
        want[held] = fit_combiner(x[:, rest], truth[rest], groups[rest], spec, refs).apply(x[:, held], groups[held])[0]
    np.testing.assert_allclose(res.nested, want, atol=1e-12)
    leaky = folds == LEAKY_FOLD
    assert mean_spearman(truth[leaky], res.nested[leaky]) < mean_spearman(truth[leaky], res.in_sample[leaky])


def test_the_question_share_is_fitted_per_fold_and_applied_to_each_folds_questions() -> None:
    """One member, equal weights: the unshared nested blend is the member itself; each fold's
    share is the one fitted on the other folds, applied over that fold's questions."""
    x, truth, folds, groups = question_world(answer_noise=0.5, n_questions=100)
    res = nested_fit(x, truth, folds, groups, EnsembleSpec(weights="equal", question_share=True), None)
    np.testing.assert_array_equal(res.nested_unshared, x[0])
    for k in range(N_FOLDS):
        rest, held = folds != k, folds == k
        shares = np.asarray(fit_question_share(x[0][rest], truth[rest], groups[rest]).shares)
        assert (shares[Q_COLS] > 0).any() and (shares[A_COLS] == 0).all()
        means = question_means(x[0][held], groups[held])
        np.testing.assert_allclose(res.nested_blend[held], (1 - shares) * x[0][held] + shares * means, atol=1e-12)
    np.testing.assert_array_equal(res.nested, np.clip(res.nested_blend, 0, 1))
    share = np.asarray(res.final.question_share.shares)
    whole = (1 - share) * x[0] + share * question_means(x[0], groups)
    np.testing.assert_allclose(res.in_sample, np.clip(whole, 0, 1), atol=1e-12)
    # sharing moved the question columns only, and (noisy answers) for the better
    np.testing.assert_array_equal(res.nested_blend[:, A_COLS], res.nested_unshared[:, A_COLS])
    q_truth = truth[:, Q_COLS]
    assert mean_spearman(q_truth, res.nested_blend[:, Q_COLS]) > mean_spearman(q_truth, res.nested_unshared[:, Q_COLS])


def test_notes_list_each_folds_fallbacks_then_the_final_fits() -> None:
    """Target 0 is binary, and all 0 on folds 1 and 3: the map fitted on the other folds sends
    every row of those folds to one level, so it is left off there (a note per fold). Target 1's
    truth is constant: the final stack notes it."""
    rng = np.random.default_rng(3)
    n = N_FOLDS * PER_FOLD
    folds = np.repeat(np.arange(N_FOLDS), PER_FOLD)
    truth = rng.uniform(size=(n, 3))  # the first 3 targets are enough here
    truth[:, 0] = np.where(np.isin(folds, [1, 3]), 0.0, rng.integers(0, 2, n))
    truth[:, 1] = 0.5
    member = truth + rng.uniform(0, 0.3, truth.shape)  # target 0: zeros in [0, 0.3), ones in [1, 1.3)
    spec = EnsembleSpec(method="stack", postprocess="distribution", min_gain=-1.0)
    res = nested_fit(member[None], truth, folds, np.arange(n), spec, None)
    fallback = f"{TARGETS[0]}: the distribution map made the column constant; left as is"
    assert res.notes == [
        f"fold 1: {fallback}",
        f"fold 3: {fallback}",
        f"{TARGETS[1]}: truth constant on the fitting rows; the members' mean is used",
    ]
    assert res.final.postprocessor.notes == [] and len(res.final.stacker.notes) == 1
