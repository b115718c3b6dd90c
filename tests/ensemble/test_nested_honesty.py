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

from questlab.ensemble.combine import EnsembleSpec, fit_combiner, fit_weights, nested_fit
from questlab.metric import mean_spearman

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
