"""The Model contract of the transformer family: dual-mode routing, save/load, unseen categories, params."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from questlab.models import FitLog, Model, build_model
from questlab.models.transformer import TransformerModel
from questlab.models.transformer.model import Stage, combine, stages_for
from questlab.schema import ANSWER_TARGETS, QUESTION_TARGETS, TARGETS

pytest_plugins = ["helpers.transformer"]  # the tiny_encoder and make_quest fixtures

TINY = {"max_length": 48, "batch_size": 8, "epochs": 1, "lr": 1e-3, "head_lr": 1e-2, "progress": False}
Q_COLS = [TARGETS.index(t) for t in QUESTION_TARGETS]
A_COLS = [TARGETS.index(t) for t in ANSWER_TARGETS]


@pytest.fixture(scope="module")
def dual_model(tiny_encoder, make_quest) -> tuple[TransformerModel, FitLog]:
    log = FitLog()
    frame = make_quest(32)
    model = TransformerModel({"encoder": str(tiny_encoder), **TINY, "mode": "dual"}).fit(frame[:24], frame[24:], log)
    return model, log


def test_stages_per_mode():
    assert stages_for(TransformerModel.Params(mode="joint")) == [Stage("joint", True, TARGETS)]
    question, answer = stages_for(TransformerModel.Params(mode="dual"))
    assert (question.with_answer, question.targets) == (False, QUESTION_TARGETS)
    assert (answer.with_answer, answer.targets) == (True, ANSWER_TARGETS)
    assert stages_for(TransformerModel.Params(mode="dual", dual_answer_targets="all"))[1].targets == TARGETS


def test_combine_routes_each_stage_to_its_targets_and_averages_overlaps():
    question, answer = Stage("question", False, QUESTION_TARGETS), Stage("answer", True, ANSWER_TARGETS)
    out = combine({question: np.full((2, 21), 0.1), answer: np.full((2, 9), 0.9)}, 2)
    assert np.allclose(out[:, Q_COLS], 0.1) and np.allclose(out[:, A_COLS], 0.9)
    both = Stage("answer", True, TARGETS)
    out = combine({question: np.full((2, 21), 0.1), both: np.full((2, 30), 0.5)}, 2)
    assert np.allclose(out[:, Q_COLS], 0.3) and np.allclose(out[:, A_COLS], 0.5)
    with pytest.raises(ValueError, match="no stage predicts"):
        combine({question: np.full((2, 21), 0.1)}, 2)


def test_dual_mode_trains_a_question_and_an_answer_network(dual_model):
    model, log = dual_model
    assert {k: net.head.out_features for k, net in model.networks_.items()} == {"question": 21, "answer": 9}
    assert sorted({e["stage"] for e in log.epochs}) == [0, 1] and log.info["stages"] == ["question", "answer"]


def test_dual_mode_question_targets_do_not_see_the_answer(dual_model, make_quest):
    model, _ = dual_model
    frame = make_quest(8, seed=5)
    other = frame.copy()
    other["answer"] = "slow slow slow bad bad answer " * 5
    a, b = model.predict(frame), model.predict(other)
    np.testing.assert_array_equal(a[:, Q_COLS], b[:, Q_COLS])  # the question network never reads answers
    assert np.abs(a[:, A_COLS] - b[:, A_COLS]).max() > 0  # the answer network does


def test_save_load_gives_identical_predictions_and_handles_unseen_categories(dual_model, tmp_path, make_quest):
    model, _ = dual_model
    frame = make_quest(8, seed=6)
    frame.loc[0, "category"], frame.loc[1, "host"] = "NEVER-SEEN", "new.host"
    pred = model.predict(frame)
    assert pred.shape == (8, 30) and pred.min() >= 0 and pred.max() <= 1
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "encoder" / "tokenizer.json").exists()
    assert (tmp_path / "m" / "question" / "model.safetensors").exists()
    loaded = Model.load(tmp_path / "m")
    assert isinstance(loaded, TransformerModel)
    np.testing.assert_array_equal(loaded.predict(frame), pred)


def test_params_are_typed_and_the_family_is_registered():
    assert isinstance(build_model("transformer", {"epochs": 2}), TransformerModel)
    with pytest.raises(pydantic.ValidationError, match="extra"):
        TransformerModel.Params(epoch=2)  # a typo'd key
    with pytest.raises(pydantic.ValidationError, match="'cls', 'mean', 'layers' or 'attention'"):
        TransformerModel.Params(pooling="max")


def test_a_missing_encoder_is_a_clear_error(tmp_path, make_quest):
    from questlab.models.pretrained import EncoderNotFoundError

    model = TransformerModel({"encoder": str(tmp_path / "nope"), **TINY})
    with pytest.raises(EncoderNotFoundError, match="known"):
        model.fit(make_quest(8), None, FitLog())


def _fit_scores(tiny_encoder, train, valid, **over) -> tuple[np.ndarray, FitLog]:
    log = FitLog()
    params = {"encoder": str(tiny_encoder), **TINY, "epochs": 2, **over}
    return TransformerModel(params).fit(train, valid, log).predict(valid), log


def test_holdout_early_stopping_never_reads_the_valid_labels(tiny_encoder, make_quest):
    """``early_stopping: holdout`` picks the epoch on held-out train questions: scrambling the
    valid labels changes nothing. With ``valid`` (the default) the per-epoch scores read them."""
    frame = make_quest(48)
    train, valid = frame[:36].reset_index(drop=True), frame[36:].reset_index(drop=True)
    scrambled = valid.copy()
    scrambled[list(TARGETS)] = 1.0 - valid[list(TARGETS)].to_numpy()[::-1]

    held, log = _fit_scores(tiny_encoder, train, valid, early_stopping="holdout", holdout_share=0.25)
    held_scrambled, log_scrambled = _fit_scores(
        tiny_encoder, train, scrambled, early_stopping="holdout", holdout_share=0.25
    )
    np.testing.assert_array_equal(held, held_scrambled)
    assert log.info["early_stopping"] == {"rows": "holdout", "n_holdout": 9, "n_train": 27}
    assert [e["valid_score"] for e in log.epochs] == [e["valid_score"] for e in log_scrambled.epochs]

    _, log_valid = _fit_scores(tiny_encoder, train, valid)
    _, log_valid_scrambled = _fit_scores(tiny_encoder, train, scrambled)
    assert "early_stopping" not in log_valid.info
    assert [e["valid_score"] for e in log_valid.epochs] != [e["valid_score"] for e in log_valid_scrambled.epochs]
    # without best-epoch selection there is nothing to stop on: every train row is trained on
    _, log_last = _fit_scores(tiny_encoder, train, valid, early_stopping="holdout", select_best_epoch=False)
    assert "early_stopping" not in log_last.info
    # rows the CV runner marks as pseudo-labelled are never held out
    with pytest.raises(ValueError, match=r"^0 group\(s\) in the fit"):
        _fit_scores(tiny_encoder, train.assign(questlab_pseudo=True), valid, early_stopping="holdout")
