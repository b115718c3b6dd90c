"""TF-IDF featurisation: hashed counts equal sklearn's vocabulary-based TF-IDF up to column order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer
from typer.testing import CliRunner

from helpers.paths import REPO
from helpers.runs import train_slice
from questlab.cli import app
from questlab.data import load_train
from questlab.errors import ConfigError, SettingsCannotFitError
from questlab.models import FitLog, tfidf
from questlab.models.tfidf import HASH_BUCKETS, TfidfModel, frequent_columns, hashed_counts, select_columns
from questlab.store import Store

DOCS = [
    "How do I parse JSON in Python?",
    "Parsing JSON in Python is easy: use the json module.",
    "Why does my café's espresso taste bitter?",
    "The espresso is bitter because the grind is too fine.",
    "How do I parse XML in Python?",
    "json module, json loads, json dumps",
]


def test_hashed_counts_match_sklearn_tfidf_up_to_column_order() -> None:
    min_df, max_features = 1, 1000
    ref = TfidfVectorizer(
        ngram_range=(1, 2), min_df=min_df, max_features=max_features, sublinear_tf=True, strip_accents="unicode"
    )
    expected = ref.fit_transform(DOCS).toarray()
    counts = hashed_counts(DOCS, ngram_max=2)
    cols = frequent_columns(counts, min_df, max_features)
    from sklearn.feature_extraction.text import TfidfTransformer

    ours = TfidfTransformer(sublinear_tf=True).fit_transform(select_columns(counts, cols)).toarray()
    # The bucket of an n-gram: hash the n-gram itself as one feature.
    hasher = HashingVectorizer(analyzer=lambda term: [term], n_features=HASH_BUCKETS, alternate_sign=False)
    buckets = [int(hasher.transform([t]).indices[0]) for t in ref.get_feature_names_out()]
    # Each term lands in its own bucket here (no collision in this small corpus) ...
    assert len(set(buckets)) == len(buckets) == len(cols)
    position = {int(c): i for i, c in enumerate(cols)}
    perm = [position[b] for b in buckets]
    # ... so our columns are sklearn's, permuted.
    np.testing.assert_allclose(ours[:, perm], expected, rtol=1e-6, atol=1e-7)


def test_hashed_counts_memoise_per_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfidf, "_COUNTS_MEMO", {})
    calls: list[int] = []
    real = HashingVectorizer.transform

    def counting(self, raw):  # type: ignore[no-untyped-def]
        calls.append(len(raw))
        return real(self, raw)

    monkeypatch.setattr(HashingVectorizer, "transform", counting)
    first = hashed_counts(DOCS[:4], ngram_max=2)
    again = hashed_counts(DOCS[2:] + DOCS[:1], ngram_max=2)  # two new texts, three seen
    assert calls == [4, 2]
    hashed_counts(DOCS[:4], ngram_max=1)  # another n-gram setting is its own memo
    assert calls == [4, 2, 4]
    fresh = HashingVectorizer(
        ngram_range=(1, 2), n_features=HASH_BUCKETS, alternate_sign=False, norm=None, strip_accents="unicode"
    ).transform(DOCS[2:] + DOCS[:1])
    # Rows assembled from the memo equal a fresh transform, in the order asked for.
    np.testing.assert_array_equal(again.toarray(), fresh.toarray())
    # A text's row does not depend on which call hashed it.
    np.testing.assert_array_equal(first[2:].toarray(), again[:2].toarray())


def test_frequent_columns_min_df_and_cap_with_deterministic_ties() -> None:
    # rows x buckets counts: bucket 5 in 3 rows (total 3), 7 in 2 rows (total 5), 9 in 2 rows
    # (total 2), 11 in 1 row (total 9), 13 in 2 rows (total 2).
    dense = np.zeros((3, HASH_BUCKETS), dtype=np.float32)
    dense[:, 5] = 1
    dense[0, 7], dense[1, 7] = 4, 1
    dense[1, 9], dense[2, 9] = 1, 1
    dense[0, 11] = 9
    dense[0, 13], dense[2, 13] = 1, 1
    counts = sp.csr_matrix(dense)
    assert frequent_columns(counts, min_df=2, max_features=100).tolist() == [5, 7, 9, 13]
    assert frequent_columns(counts, min_df=1, max_features=100).tolist() == [5, 7, 9, 11, 13]
    # cap 3 at min_df 2: totals 7→5, 5→3, then 9 and 13 tie at 2: the lower bucket wins.
    assert frequent_columns(counts, min_df=2, max_features=3).tolist() == [5, 7, 9]


def test_select_columns_renumbers_and_drops_the_rest() -> None:
    counts = sp.csr_matrix(([1.0, 2.0, 3.0, 4.0], ([0, 0, 1, 2], [3, 8, 8, 100])), shape=(3, HASH_BUCKETS))
    out = select_columns(counts, np.array([8, 100]))
    assert out.shape == (3, 2)
    np.testing.assert_array_equal(out.toarray(), [[2.0, 0.0], [3.0, 0.0], [0.0, 4.0]])


# --- settings that cannot fit the rows ------------------------------------------------------------
def test_min_df_above_what_the_rows_hold_is_a_settings_error_naming_the_value_and_what_to_do() -> None:
    rows = load_train(train_slice()).head(120)
    with pytest.raises(SettingsCannotFitError) as err:
        TfidfModel({"min_df": 500}).fit(rows, None, FitLog())
    message = str(err.value)
    assert isinstance(err.value, ConfigError) and "\n" not in message
    assert message.startswith("model.params.min_df=500 leaves no question_title terms in the 120 training rows")
    top = int(message.rsplit("at most ", 1)[1])
    assert 1 <= top < 120 and "lower min_df" in message
    TfidfModel({"min_df": top}).fit(rows, None, FitLog())  # the value it names fits


def test_run_cli_with_min_df_above_the_fold_rows_exits_2_in_one_line_and_marks_the_run_failed(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load((REPO / "configs" / "tfidf.yaml").read_text())
    assert config["parallel_folds"] == 2  # the folds are fitted in worker processes: the error crosses back
    uri = str(tmp_path / "store")
    argv = ["run", str(REPO / "configs" / "tfidf.yaml"), "--train", str(train_slice()), "--store", uri]
    out = CliRunner().invoke(app, [*argv, "--set", "model.params.min_df=500"])
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output and "internal error" not in out.output
    last = out.output.strip().splitlines()[-1]
    assert last.startswith("error: fold ") and "model.params.min_df=500 leaves no " in last
    assert "in the 240 training rows" in last and "lower min_df to at most" in last  # 300 rows, 5 folds
    (run,) = Store(uri).list_runs()
    assert run.status == "FAILED" and run.tags["questlab.error"].startswith("SettingsCannotFitError: fold ")


def test_the_memo_is_lru_bounded_by_texts_and_by_bytes() -> None:
    row = (np.arange(100, dtype=np.int32), np.ones(100, dtype=np.float32))  # 800 bytes of arrays
    memo = tfidf._CountsMemo(max_texts=3, max_bytes=10**9)
    for text in "abcd":
        memo.put(text, row)
    assert len(memo) == 3 and "a" not in memo  # the oldest went first
    memo.get_many(["b"])  # a hit makes "b" the most recent ...
    memo.put("e", row)
    assert "b" in memo and "c" not in memo  # ... so "c" went instead
    by_bytes = tfidf._CountsMemo(max_texts=1000, max_bytes=10_000)
    for k in range(100):
        by_bytes.put(f"text {k}", row)
    assert by_bytes.nbytes <= 10_000 and 5 <= len(by_bytes) < 12 and "text 99" in by_bytes
    assert by_bytes.nbytes == sum(by_bytes._size(t, r) for t, r in by_bytes._rows.items())


def test_a_long_text_is_read_to_max_text_chars_before_it_is_hashed_or_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tfidf, "_COUNTS_MEMO", {})
    hashed: list[int] = []
    real = HashingVectorizer.transform

    def counting(self, raw):  # type: ignore[no-untyped-def]
        hashed.extend(len(t) for t in raw)
        return real(self, raw)

    monkeypatch.setattr(HashingVectorizer, "transform", counting)
    long = " ".join(f"w{i}" for i in range(3_000_000))  # ~21 MB of unique words
    counts = hashed_counts([long, DOCS[0]], ngram_max=2)
    assert max(hashed) == tfidf.MAX_TEXT_CHARS
    assert max(len(t) for t in tfidf._COUNTS_MEMO[2]._rows) == tfidf.MAX_TEXT_CHARS
    cut = hashed_counts([long[: tfidf.MAX_TEXT_CHARS], DOCS[0]], ngram_max=2)
    assert (counts != cut).nnz == 0


def test_predictions_of_real_texts_are_unchanged_by_the_length_cap(
    monkeypatch: pytest.MonkeyPatch, raw_train, raw_test
) -> None:
    """Every QUEST text is shorter than the cap, so the model reads it whole, as before the cap."""
    from questlab.models.base import FitLog
    from questlab.models.registry import build_model
    from questlab.schema import ANSWER, TARGETS

    longest = max(int(f[c].str.len().max()) for f in (raw_train, raw_test) for c in tfidf.TEXT_PARTS)
    assert longest == 22_636 and longest < tfidf.MAX_TEXT_CHARS / 4
    train = raw_train.head(300).copy()
    train[list(TARGETS)] = train[list(TARGETS)].astype(float)
    test = raw_test.head(50).copy()
    model = build_model("tfidf", {"max_features": 2000}).fit(train, None, FitLog())
    capped = model.predict(test)
    monkeypatch.setattr(tfidf, "_COUNTS_MEMO", {})  # nothing remembered from the capped run
    monkeypatch.setattr(tfidf, "MAX_TEXT_CHARS", 10**12)  # no cap: every text read whole
    np.testing.assert_array_equal(model.predict(test), capped)
    monkeypatch.undo()
    # A text over the cap predicts as its first MAX_TEXT_CHARS characters (statistics included).
    huge = test.head(2).copy()
    huge[ANSWER] = [" ".join(f"w{i}" for i in range(2_000_000))] * 2
    cut = huge.assign(**{ANSWER: huge[ANSWER].str.slice(0, tfidf.MAX_TEXT_CHARS)})
    np.testing.assert_array_equal(model.predict(huge), model.predict(cut))
