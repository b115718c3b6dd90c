"""The question share: question_* predictions averaged over a question's answers, only where it helps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.question_world import A_COLS, Q_COLS, question_world
from helpers.runs import train_slice
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.data import load_test
from questlab.ensemble import EnsembleSpec, nested_fit
from questlab.ensemble.question_share import QuestionShare, fit_question_share, question_means
from questlab.ensemble_runs import build_ensemble, postprocess_run
from questlab.errors import UsageError
from questlab.folds import question_groups
from questlab.metric import mean_spearman
from questlab.predict import load_predictor, stream_predictions
from questlab.rundir import read_predictions
from questlab.schema import ANSWER_TARGETS, QUESTION_TARGETS, TARGETS, TEST_COLUMNS
from questlab.store import Store


def test_question_means_average_over_each_group() -> None:
    pred = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    np.testing.assert_allclose(question_means(pred, np.array([7, 7, 2])), [[2, 1], [2, 1], [5, 4]])


def test_sharing_helps_noisy_answers_nested_and_never_touches_answer_targets() -> None:
    x, truth, folds, groups = question_world(answer_noise=0.5)
    spec = EnsembleSpec(weights="equal", question_share=True)
    res = nested_fit(x, truth, folds, groups, spec, None)
    assert mean_spearman(truth[:, Q_COLS], res.nested[:, Q_COLS]) > mean_spearman(truth[:, Q_COLS], x[0][:, Q_COLS])
    shares = np.asarray(res.final.question_share.shares)
    assert (shares[Q_COLS] > 0).all() and (shares[A_COLS] == 0).all()
    np.testing.assert_array_equal(res.nested[:, A_COLS], np.clip(x[0][:, A_COLS], 0, 1))


def test_sharing_is_left_out_where_it_cannot_help() -> None:
    x, truth, _, groups = question_world(answer_noise=0.0)  # a question's answers already agree
    share = fit_question_share(x[0], truth, groups)
    assert share.chosen() == {}
    np.testing.assert_array_equal(share.apply(x[0], groups), x[0])


def test_share_round_trips_and_leaves_a_lone_answer_alone() -> None:
    x, truth, _, groups = question_world(answer_noise=0.5)
    share = fit_question_share(x[0], truth, groups)
    again = QuestionShare.from_dict(share.to_dict())
    np.testing.assert_array_equal(again.apply(x[0], groups), share.apply(x[0], groups))
    one = x[0][:1]
    np.testing.assert_array_equal(share.apply(one, groups[:1]), one)
    np.testing.assert_array_equal(share.apply(x[0], None), x[0])


@pytest.fixture
def several_answers(tmp_path: Path, quest_dir: Path) -> Path:
    """A test file whose questions have two answers each (QUEST's test.csv has one per question)."""
    rows = pd.read_csv(quest_dir / "train.csv", dtype=str, keep_default_na=False).iloc[300:330][list(TEST_COLUMNS)]
    other = rows.copy()
    other["answer"] = rows["answer"].to_numpy()[::-1]
    other["qa_id"] = [str(900_000 + i) for i in range(len(other))]
    path = tmp_path / "test_pairs.csv"
    pd.concat([rows, other]).to_csv(path, index=False)
    return path


def _run(store: Store, name: str, test: Path, **params: object) -> str:
    cfg = parse_config({"name": name, "folds": {"n_splits": 3, "seed": 1}, "bootstrap": 0,
                        "model": {"name": "tfidf", "params": {"max_features": 2000, **params}}})  # fmt: skip
    return run_cv(cfg, train_slice(), test, store=store, say=lambda _: None)


def test_shared_runs_predict_like_their_submission(store: Store, several_answers: Path) -> None:
    a = _run(store, "a", several_answers)
    with pytest.raises(UsageError, match="--test"):
        postprocess_run(store, a, "identity", question_share=True, n_boot=0)  # the test rows need grouping
    run_id, report = postprocess_run(store, a, "identity", question_share=True, n_boot=0, test=several_answers)
    assert set(report["question_share_chosen"]) <= set(QUESTION_TARGETS)
    frame = load_test(several_answers)
    assert len(np.unique(question_groups(frame))) <= len(frame) // 2
    submission = read_predictions(store.folder(run_id) / "submission.csv")[list(TARGETS)].to_numpy()
    np.testing.assert_allclose(load_predictor(store, run_id).predict(frame), submission, atol=1e-12)
    b = _run(store, "b", several_answers, ngram_max=1)
    spec = EnsembleSpec(per_target=True, average="rank", question_share=True, postprocess="distribution")
    ens, _ = build_ensemble(store, [a, b], spec, n_boot=0, test=several_answers)
    shares = store.folder(ens).read_ensemble()["question_share"]["shares"]
    submission = read_predictions(store.folder(ens) / "submission.csv")[list(TARGETS)].to_numpy()
    np.testing.assert_allclose(load_predictor(store, ens).predict(frame), submission, atol=1e-12)
    assert set(shares) == set(TARGETS) and all(shares[t] == 0 for t in ANSWER_TARGETS)
    assert any(v > 0 for v in shares.values())  # the submission is really shared, and predict agrees
    assert report["question_share_chosen"]
    # a question's answers lie 30 rows apart: streaming in 7-row pieces must still share over both
    out = several_answers.with_name("streamed.csv")
    stream_predictions(load_predictor(store, ens), several_answers, out, chunk_rows=7)
    np.testing.assert_allclose(read_predictions(out)[list(TARGETS)].to_numpy(), submission, atol=1e-12)
