"""Stacking: a per-target ridge over members' OOF predictions, fitted nested like blend weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers.runs import test_slice as quest_test_slice
from helpers.runs import tiny_run
from questlab.data import load_test
from questlab.ensemble import EnsembleSpec, nested_fit
from questlab.ensemble.stack import Stacker, fit_stacker
from questlab.ensemble_runs import build_ensemble
from questlab.export import export_run, load_bundle
from questlab.metric import spearman_per_target
from questlab.predict import load_predictor
from questlab.rundir import read_predictions
from questlab.schema import TARGETS
from questlab.store import Store

N, N_FOLDS = 1500, 5


def _world(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two members over 30 targets. Member 0 predicts every target with noise, except that its
    column 0 carries target 1's signal and its column 1 is noise; member 1 is noise on target 1."""
    rng = np.random.default_rng(seed)
    truth = rng.random((N, 30))
    x = truth[None] + rng.normal(0, 0.5, (2, N, 30))
    x[0, :, 0] = truth[:, 1] + rng.normal(0, 0.2, N)  # target 1's signal lives in another column
    x[0, :, 1] = rng.random(N)
    x[1, :, 1] = rng.random(N)
    groups = np.arange(N) // 2
    folds = groups % N_FOLDS
    return x, truth, folds, groups


def _refs(x: np.ndarray) -> list[np.ndarray]:
    return [np.sort(m, axis=0) for m in x]


def _rho(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    return spearman_per_target(truth, pred)[0]


def test_stacking_with_related_targets_finds_the_signal_a_weighted_average_cannot() -> None:
    x, truth, folds, groups = _world()
    refs = _refs(x)
    weighted = nested_fit(x, truth, folds, groups, EnsembleSpec(per_target=True, average="rank"), refs)
    own = nested_fit(x, truth, folds, groups, EnsembleSpec(method="stack", average="rank"), refs)
    related = nested_fit(x, truth, folds, groups, EnsembleSpec(method="stack+related", average="rank"), refs)
    assert abs(_rho(truth, weighted.nested)[1]) < 0.15 and abs(_rho(truth, own.nested)[1]) < 0.15
    assert _rho(truth, related.nested)[1] > 0.7
    # elsewhere the stack is no worse than the weights (both combine two noisy copies of the truth)
    others = np.arange(2, 30)
    assert _rho(truth, related.nested)[others].mean() > _rho(truth, weighted.nested)[others].mean() - 0.02


def test_the_held_out_fold_never_reaches_its_meta_model() -> None:
    x, truth, folds, groups = _world(1)
    spec = EnsembleSpec(method="stack+related", average="rank", question_share=True)
    base = nested_fit(x, truth, folds, groups, spec, _refs(x))
    for k in (0, 3):
        scrambled = truth.copy()
        held = folds == k
        scrambled[held] = np.random.default_rng(k).random((held.sum(), 30))  # other labels for fold k only
        again = nested_fit(x, scrambled, folds, groups, spec, _refs(x))
        np.testing.assert_array_equal(again.nested[held], base.nested[held])
        assert not np.array_equal(again.nested[~held], base.nested[~held])  # the other folds did see them


def test_stacker_output_is_strictly_increasing_in_01_and_round_trips() -> None:
    x, truth, _, _ = _world(2)
    stacker = fit_stacker(x, truth, related=False)
    out = stacker.predict(x)
    assert out.min() > 0 and out.max() < 1
    ts = stacker.targets[5]
    raw = np.column_stack([x[0, :, 5], x[1, :, 5]]) @ np.asarray(ts.coef) + ts.intercept
    order = np.argsort(raw)
    assert np.all(np.diff(out[order, 5]) > 0)  # the squash keeps the ridge's order and makes no ties
    np.testing.assert_array_equal(Stacker.from_dict(stacker.to_dict()).predict(x), out)
    with pytest.raises(ValueError, match="2 members"):
        stacker.predict(x[:1])


def test_a_stacked_run_predicts_like_its_submission_from_the_store_and_a_bundle(store: Store, tmp_path: Path) -> None:
    a = tiny_run(store, "tfidf", {"max_features": 2000}, name="a")
    b = tiny_run(store, "tfidf", {"max_features": 2000, "ngram_max": 1, "alpha": 2.0}, name="b")
    spec = EnsembleSpec(method="stack+related", average="rank", postprocess="distribution")
    run_id, report = build_ensemble(store, [a, b], spec, n_boot=0)
    stored = store.folder(run_id).read_ensemble()
    assert stored["method"] == "stack+related" and len(stored["stack"]["targets"]) == 30
    frame = load_test(quest_test_slice())
    submission = read_predictions(store.folder(run_id) / "submission.csv")[list(TARGETS)].to_numpy()
    np.testing.assert_allclose(load_predictor(store, run_id).predict(frame), submission, atol=1e-12)
    bundle = export_run(store, run_id, tmp_path / "bundle")
    np.testing.assert_allclose(load_bundle(bundle).predict(frame), submission, atol=1e-12)
    assert report["nested_score"] == pytest.approx(store.get(run_id).metrics["cv_score"])


def test_cli_ensemble_method_stack(store: Store) -> None:
    from typer.testing import CliRunner

    from questlab.cli import app

    a = tiny_run(store, "tfidf", {"max_features": 2000}, name="a")
    b = tiny_run(store, "tfidf", {"max_features": 2000, "ngram_max": 1}, name="b")
    args = ["ensemble", a, b, "--average", "rank", "--bootstrap", "0", "--store", store.uri]
    result = CliRunner().invoke(app, [*args, "--method", "stack+related"])
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    assert store.folder(run_id).read_ensemble()["method"] == "stack+related"
    bad = CliRunner().invoke(app, [*args, "--method", "blend"])
    assert bad.exit_code == 2 and "stack+related" in bad.output and "Traceback" not in bad.output
    given = CliRunner().invoke(app, [*args, "--method", "stack", "--weights", "0.5,0.5"])
    assert given.exit_code == 2 and "apply to method 'weights'" in given.output
