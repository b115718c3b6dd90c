"""The style feature group (embedding model), ``style_weight`` (TF-IDF) and per-target alphas
chosen by leave-one-out on the training rows (``alpha: auto`` / ``ridge_alpha: auto``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from helpers.synthetic_task import SPEC, make_frame
from helpers.tiny_encoder import build_tiny_encoder
from questlab.models import FitLog, Model, build_model
from questlab.models.base import check_predictions
from questlab.models.embedding.heads import RidgeHead
from questlab.models.text_features import GENERIC_FEATURE_NAMES, column_features, text_features
from questlab.tasks import load_task

REVIEWS = load_task(yaml.safe_load(SPEC))


@pytest.fixture(scope="module")
def st_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("st") / "tiny-st")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "cache"))


def _split(n: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = make_frame(n, seed=0)
    return frame[:45].reset_index(drop=True), frame[45:].reset_index(drop=True)


def test_column_features_are_text_features_side_by_side():
    train, _ = _split()
    got = column_features(train, REVIEWS.text_names)
    want = np.hstack([text_features(train[c].tolist()) for c in REVIEWS.text_names])
    assert got.shape == (len(train), len(REVIEWS.text_names) * len(GENERIC_FEATURE_NAMES))
    # oov_share differs: column_features uses the default vocabulary
    oov = GENERIC_FEATURE_NAMES.index("oov_share")
    keep = [k for k in range(got.shape[1]) if k % len(GENERIC_FEATURE_NAMES) != oov]
    np.testing.assert_allclose(got[:, keep], want[:, keep])
    np.testing.assert_array_equal(column_features(train, REVIEWS.text_names), got)  # memoised: same numbers


def test_tfidf_style_weight_adds_standardised_style_columns(tmp_path):
    train, valid = _split()
    plain_log, style_log = FitLog(), FitLog()
    plain = build_model("tfidf", {"min_df": 1}, task=REVIEWS).fit(train, valid, plain_log)
    styled = build_model("tfidf", {"min_df": 1, "style_weight": 0.5}, task=REVIEWS).fit(train, valid, style_log)
    extra = style_log.info["n_features"] - plain_log.info["n_features"]
    assert extra == len(REVIEWS.text_names) * len(GENERIC_FEATURE_NAMES)
    pred = check_predictions(styled.predict(valid), len(valid), "tfidf", task=REVIEWS)
    assert not np.allclose(pred, plain.predict(valid))
    styled.save(tmp_path / "m")
    np.testing.assert_allclose(Model.load(tmp_path / "m").predict(valid), pred, rtol=1e-6)


def test_tfidf_style_weight_zero_is_the_default():
    train, valid = _split()
    a = build_model("tfidf", {"min_df": 1}, task=REVIEWS).fit(train, valid, FitLog())
    b = build_model("tfidf", {"min_df": 1, "style_weight": 0.0}, task=REVIEWS).fit(train, valid, FitLog())
    np.testing.assert_array_equal(a.predict(valid), b.predict(valid))


def test_tfidf_alpha_auto_picks_per_target_on_the_training_rows_only(tmp_path):
    train, valid = _split()
    params = {"min_df": 1, "alpha": "auto", "alphas": [0.1, 1.0, 10.0, 100.0]}
    log = FitLog()
    model = build_model("tfidf", params, task=REVIEWS).fit(train, valid, log)
    assert set(log.info["alpha"]) == set(REVIEWS.target_names)
    assert set(log.info["alpha"].values()) <= {0.1, 1.0, 10.0, 100.0}
    pred = check_predictions(model.predict(valid), len(valid), "tfidf", task=REVIEWS)
    # the valid rows play no part: fitting without them gives the same model
    alone = build_model("tfidf", params, task=REVIEWS).fit(train, None, FitLog())
    np.testing.assert_allclose(alone.predict(valid), pred, rtol=1e-6)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(Model.load(tmp_path / "m").predict(valid), pred, rtol=1e-6)


@pytest.mark.parametrize("bad", [{"alpha": 0}, {"alpha": "best"}, {"alphas": [1.0, -1.0]}, {"alphas": []}])
def test_tfidf_alpha_settings_are_checked(bad):
    with pytest.raises(ValueError):
        build_model("tfidf", bad, task=REVIEWS)


def test_ridge_head_auto_alpha_is_per_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 30)).astype(np.float32)
    y = np.column_stack([x[:, 0] * 0.3 + 0.5, rng.uniform(size=40)]).astype(np.float32)  # signal, noise
    log = FitLog()
    head = RidgeHead("auto", [1e-3, 1e3]).fit(x, y, None, None, log)
    assert log.info["ridge_alpha"] == [1e-3, 1e3]  # the signal wants little penalty, the noise much
    assert head.predict(x).shape == (40, 2)


def test_embedding_style_group_and_auto_ridge(st_encoder, tmp_path):
    train, valid = _split()
    params = {"encoder": str(st_encoder), "max_tokens": 32, "progress": False, "head": "ridge"}
    params |= {"features": ["lengths", "style"], "ridge_alpha": "auto", "ridge_alphas": [0.1, 10.0]}
    params |= {"ngram_weight": 0.3, "ngram_params": {"min_df": 1, "alpha": "auto", "style_weight": 0.5}}
    model = build_model("embedding", params, task=REVIEWS).fit(train, valid, FitLog())
    names = model.features_.names
    for col in REVIEWS.text_names:
        assert f"{col}_mattr50" in names
    # standardised on the training rows, like the other numeric groups
    x = model.features_.transform(train)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    pred = check_predictions(model.predict(valid), len(valid), "embedding", task=REVIEWS)
    model.save(tmp_path / "m")
    np.testing.assert_allclose(Model.load(tmp_path / "m").predict(valid), pred, rtol=1e-5)


def test_embedding_default_parts_and_features_follow_the_task_even_when_written_out(st_encoder):
    # a run config records every param: the defaults written out must still mean "the task's defaults"
    from questlab.models.embedding.model import EmbeddingParams

    train, valid = _split()
    params = EmbeddingParams(encoder=str(st_encoder), max_tokens=32, progress=False, head="ridge").model_dump()
    model = build_model("embedding", params, task=REVIEWS).fit(train, valid, FitLog())
    assert model._parts() == ["review", "reply"]
    assert "shop=shop0" in model.features_.names
