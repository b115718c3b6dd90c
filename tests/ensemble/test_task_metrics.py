"""Ensembles, post-processing, tuning and recipes under a task's metric (issue 29, item 5).

Under an error metric (MCRMSE: lower is better) weights are fitted on values, predictions are
clipped to each target's range, and snapping to the levels is kept only where nested CV says it
helps; runs of two tasks are refused naming both; a study minimises. QUEST's behaviour is the
other tests' (unchanged).
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from tests.helpers.synthetic_task import SPEC

from questlab.config import parse_config
from questlab.ensemble.combine import EnsembleSpec, fit_weights, nested_fit
from questlab.ensemble.gains import gain_summary
from questlab.ensemble.postprocess import IDENTITY, SNAP, PostProcessor, fit_postprocessor
from questlab.ensemble.question_share import shared_columns
from questlab.ensemble_runs import check_same_task
from questlab.errors import ConfigError, UsageError
from questlab.metrics import get_metric
from questlab.recipes.spec import fitted_part, load_recipe, parse_recipe
from questlab.tasks import load_task

ELL = load_task("ell")
MCRMSE = get_metric("mcrmse")


def _ell_truth(n: int, seed: int) -> np.ndarray:
    """ELL-like truth: six scores on the 0.5 grid in [1, 5], correlated through a row's level."""
    rng = np.random.default_rng(seed)
    level = rng.normal(3.0, 0.6, size=(n, 1))
    return np.clip(np.round((level + rng.normal(0, 0.3, size=(n, 6))) * 2) / 2, 1.0, 5.0)


# --- blending weights -------------------------------------------------------------------------
@pytest.mark.parametrize("per_target", [False, True])
def test_value_weights_minimise_mcrmse_and_go_to_the_better_member(per_target: bool) -> None:
    rng = np.random.default_rng(0)
    truth = _ell_truth(400, 0)
    good = truth + rng.normal(0, 0.1, truth.shape)
    bad = truth + rng.normal(0, 0.8, truth.shape)
    x = np.stack([bad, good])
    w = fit_weights(x, truth, per_target, MCRMSE)
    assert w.shape == (6, 2)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w >= 0).all() and (w[:, 1] > 0.9).all()  # the weight goes to the better member
    blend = np.einsum("tm,mnt->nt", w, x)
    # no point of a coarse grid does better (the fitted weights minimise the metric)
    for a in np.linspace(0, 1, 11):
        assert MCRMSE.score(truth, blend) <= MCRMSE.score(truth, a * bad + (1 - a) * good) + 1e-9


def test_rank_averaging_and_a_question_share_are_refused_for_an_error_metric() -> None:
    with pytest.raises(UsageError, match="rank averaging needs a rank-based metric: task ell scores mcrmse"):
        EnsembleSpec(average="rank").check(2, ELL)
    with pytest.raises(UsageError, match="question share needs groups"):
        EnsembleSpec(question_share=True).check(2, ELL)
    with pytest.raises(UsageError, match="unknown post-processing method 'distribution' with metric mcrmse"):
        EnsembleSpec(postprocess="distribution").check(2, ELL)
    EnsembleSpec(postprocess="snap").check(2, ELL)
    EnsembleSpec(average="rank", postprocess="distribution").check(2)  # QUEST: as before


def test_gains_follow_the_metric_direction() -> None:
    rng = np.random.default_rng(1)
    truth = _ell_truth(300, 1)
    worse, better = truth + rng.normal(0, 0.6, truth.shape), truth + rng.normal(0, 0.2, truth.shape)
    out = gain_summary(truth, worse, better, np.arange(len(truth)), n_boot=50, seed=0, metric=MCRMSE)
    assert out["gain"] > 0 and out["ci_low"] > 0  # lower MCRMSE is a positive gain
    assert out["gain"] == pytest.approx(MCRMSE.score(truth, worse) - MCRMSE.score(truth, better))


# --- post-processing --------------------------------------------------------------------------
def test_snapping_is_kept_where_predictions_sit_near_the_levels() -> None:
    rng = np.random.default_rng(2)
    truth = _ell_truth(500, 2)
    pred = truth + rng.normal(0, 0.08, truth.shape)  # near the levels: snapping removes the noise
    pp = fit_postprocessor(pred, truth, np.arange(len(truth)), "snap", task=ELL)
    assert set(pp.chosen().values()) == {SNAP}
    out, _ = pp.apply(pred)
    assert MCRMSE.score(truth, out) < MCRMSE.score(truth, pred)
    assert set(np.unique(out)) <= set(ELL.targets[0].levels)


def test_snapping_is_dropped_where_it_does_not_help() -> None:
    rng = np.random.default_rng(3)
    truth = _ell_truth(500, 3)
    pred = 3.0 + 0.3 * (truth - 3.0) + rng.normal(0, 0.1, truth.shape)  # shrunk, between levels
    pp = fit_postprocessor(pred, truth, np.arange(len(truth)), "snap", task=ELL)
    assert set(pp.chosen().values()) == {IDENTITY}


def test_predictions_are_always_clipped_to_the_range() -> None:
    rng = np.random.default_rng(4)
    truth = _ell_truth(300, 4)
    pred = truth + rng.normal(0, 0.5, truth.shape)
    pred[:5] = 6.5
    pred[5:10] = -1.0
    pp = fit_postprocessor(pred, truth, np.arange(len(truth)), "identity", task=ELL)
    out, _ = pp.apply(pred)
    assert out.min() >= 1.0 and out.max() <= 5.0
    again = PostProcessor.from_dict(pp.to_dict())
    np.testing.assert_array_equal(again.apply(pred)[0], out)


def test_nested_fit_under_mcrmse_clips_and_keeps_snapping_only_where_it_helps() -> None:
    rng = np.random.default_rng(5)
    truth = _ell_truth(400, 5)
    near = truth + rng.normal(0, 0.08, truth.shape)
    noisy = truth + rng.normal(0, 0.9, truth.shape)
    noisy[:10] = 7.0  # out of range: clipped whatever else happens
    folds = np.arange(len(truth)) % 5
    spec = EnsembleSpec(postprocess="auto")
    res = nested_fit(np.stack([near, noisy]), truth, folds, np.arange(len(truth)), spec, None, ELL)
    assert res.nested.min() >= 1.0 and res.nested.max() <= 5.0
    assert set(res.final.postprocessor.chosen().values()) <= {SNAP, "shrink"}  # near the levels: kept
    assert MCRMSE.score(truth, res.nested) < MCRMSE.score(truth, near)
    # stacking outputs values (no squash into (0, 1)), clipped to the range
    stacked = nested_fit(
        np.stack([near, noisy]), truth, folds, np.arange(len(truth)), EnsembleSpec(method="stack"), None, ELL
    )
    assert stacked.nested.max() > 1.0 and stacked.nested.min() >= 1.0 and stacked.nested.max() <= 5.0
    assert MCRMSE.score(truth, stacked.nested) < MCRMSE.score(truth, noisy)


def test_the_question_share_applies_only_to_a_task_with_groups_and_first_segment_targets() -> None:
    assert len(shared_columns(load_task("quest"))) == 21
    assert shared_columns(ELL) == ()  # no groups
    assert shared_columns(load_task(yaml.safe_load(SPEC))) == ()  # groups, but no target reads one segment


# --- runs of two tasks ------------------------------------------------------------------------
def test_runs_of_two_tasks_are_refused_naming_both() -> None:
    quest = load_task("quest")
    with pytest.raises(UsageError) as err:
        check_same_task([("run-a", quest), ("run-b", ELL)])
    message = str(err.value)
    assert "run-a" in message and "run-b" in message and "'quest'" in message and "'ell'" in message
    assert check_same_task([("run-a", ELL), ("run-b", load_task("ell"))]) == ELL


# --- tuning -----------------------------------------------------------------------------------
def test_a_study_minimises_an_error_metric_and_its_best_trial_is_the_lowest() -> None:
    import optuna

    from questlab.tuning.common import study_direction
    from questlab.tuning.trials import _best_value

    assert study_direction(MCRMSE) == "minimize"
    assert study_direction(get_metric("spearman")) == "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=study_direction(MCRMSE))
    for value in (0.52, 0.47, 0.49):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    assert _best_value(study, MCRMSE) == 0.47 == study.best_value
    assert _best_value(study, get_metric("spearman")) == 0.52


# --- recipes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["fast", "fast-minilm", "best"])
def test_builtin_recipes_resolve_for_quest_as_before_and_for_ell(name: str) -> None:
    recipe = load_recipe(name)
    quest = recipe.for_task("quest")
    assert all(m.tasks == ["quest"] for m in quest.members)
    assert quest.ensemble.average == "rank" and quest.postprocess == "distribution" and quest.question_share
    ell = recipe.for_task("ell")
    mpnet6 = ["fast-task-embedding-mpnet6-krr", "fast-task-embedding-mpnet6-mlp", "fast-task-tfidf"]
    minilm = ["fast-task-embedding-krr", "fast-task-embedding-mlp"]
    expect = {
        "fast": mpnet6,
        "fast-minilm": [*minilm, "fast-task-embedding-krr512", "fast-task-tfidf"],
        "best": [*mpnet6, *minilm, "best-task-embedding-mpnet-krr", "best-task-embedding-mpnet-mlp"],
    }[name]
    assert [m.config["name"] for m in ell.members] == expect
    # best reuses the members it shares with fast and fast-minilm: the same name, the same model
    for other in ("fast", "fast-minilm") if name == "best" else ():
        shared = {m.config["name"]: m.config for m in load_recipe(other).for_task("ell").members}
        for m in (m for m in ell.members if m.config["name"] in shared):
            assert parse_config(m.config, name).model == parse_config(shared[m.config["name"]], other).model
    assert ell.ensemble.average == "value" and ell.ensemble.per_target and ell.ensemble.method == "stack+related"
    assert ell.postprocess == "auto" and not ell.question_share
    EnsembleSpec(average=ell.ensemble.average, postprocess=ell.postprocess).check(len(ell.members), ELL)


def test_a_recipe_without_members_for_a_task_says_so() -> None:
    recipe = parse_recipe({"name": "r", "members": [{"config": {"name": "a"}, "tasks": ["quest"]}]}, "r.yaml")
    with pytest.raises(ConfigError, match=r"r\.yaml: members: no member is meant for task 'ell'"):
        recipe.for_task("ell")


def test_the_default_task_is_not_part_of_a_members_key() -> None:
    config = load_recipe("fast").for_task("quest").member_configs(cuda=False)[0]
    assert "task" not in fitted_part(config)
