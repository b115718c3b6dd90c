"""Hand-made features on hand-made rows: counts, asker, vocabularies learned from train only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from questlab.models.embedding.features import FeatureExtractor, numeric_group, similarity_features


def row(title="How do I do it?", body="Some body.", answer="An answer.", q_user="ann", a_user="bob", cat="SCIENCE",
        host="physics.stackexchange.com") -> dict:  # fmt: skip
    return {
        "question_title": title,
        "question_body": body,
        "answer": answer,
        "question_user_name": q_user,
        "answer_user_name": a_user,
        "category": cat,
        "host": host,
        "url": "http://a.stackexchange.com/questions/1/t",
        "question_user_page": "https://a.stackexchange.com/users/1",
        "answer_user_page": "https://a.stackexchange.com/users/2",
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_counts_on_hand_made_text():
    answer = (
        "See https://example.com and www.foo.org.\n\n"
        "import os\n"
        "x = os.getcwd();\n"
        "- first point\n"
        "2. second point\n"
        "I think my way works? Really? Yes!"
    )
    f = numeric_group(frame(row(answer=answer, body="Plain words only")), "counts")
    assert np.expm1(f["answer_links"][0]) == pytest.approx(2)
    assert np.expm1(f["answer_question_marks"][0]) == pytest.approx(2)
    assert np.expm1(f["answer_exclamations"][0]) == pytest.approx(1)
    assert np.expm1(f["answer_code_lines"][0]) == pytest.approx(2)  # the import and the assignment
    assert np.expm1(f["answer_list_items"][0]) == pytest.approx(2)
    assert np.expm1(f["answer_first_person"][0]) == pytest.approx(2)  # "I", "my"
    assert f["body_code_lines"][0] == 0 and f["body_links"][0] == 0
    assert f["title_question_marks"][0] == 1


def test_lengths_and_asker():
    rows = frame(row(body="one two three", answer="one"), row(q_user="zed ", a_user="zed"))
    lengths = numeric_group(rows, "lengths")
    assert np.expm1(lengths["body_log_words"][0]) == pytest.approx(3)
    assert lengths["answer_body_log_ratio"][0] == pytest.approx(np.log1p(1) - np.log1p(3))
    assert numeric_group(rows, "asker")["asker_answered"].tolist() == [0.0, 1.0]


def test_question_words():
    rows = frame(row(title="Why is the sky blue"), row(title="Difference between A vs B"))
    qw = numeric_group(rows, "question_words")
    assert qw["title_starts_why"].tolist() == [1.0, 0.0]
    assert qw["title_cue_difference"].tolist() == [0.0, 1.0] and qw["title_cue_versus"].tolist() == [0.0, 1.0]


def test_ids_parse_and_flag_what_does_not_parse():
    rows = frame(row(), row())
    rows["url"] = ["http://a.stackexchange.com/questions/9169/some-title", "http://odd.example/no-id"]
    rows["question_user_page"] = ["https://a.stackexchange.com/users/1024", "https://a.stackexchange.com/users/7"]
    rows["answer_user_page"] = ["https://a.stackexchange.com/users/17", "https://a.stackexchange.com/users/-1"]
    ids = numeric_group(rows, "ids")
    assert np.expm1(ids["log_question_id"][0]) == pytest.approx(9169) and ids["question_id_missing"][0] == 0
    assert ids["question_id_missing"][1] == 1 and ids["log_question_id"][1] == 0
    assert ids["answerer_id_missing"].tolist() == [0.0, 1.0]  # -1: the community user, no real account
    assert ids["answerer_older_than_asker"][0] == 1.0


def test_similarity_of_identical_and_opposite_vectors():
    v = np.array([[1.0, 0.0], [0.0, 2.0]])
    sims = similarity_features({"title": v, "answer": v, "body": -v})
    assert sims["cos_title_answer"].tolist() == pytest.approx([1.0, 1.0])
    assert sims["cos_title_body"].tolist() == pytest.approx([-1.0, -1.0])
    assert "cos_title_body_answer" not in sims  # title_body not given


def test_vocabularies_come_from_train_only_and_unseen_values_map_to_unknown():
    train = frame(row(cat="SCIENCE", host="a.com"), row(cat="CULTURE", host="a.com"), row(cat="SCIENCE", host="b.com"))
    test = frame(row(cat="NEW_CATEGORY", host="c.com"), row(cat="CULTURE", host="b.com"))
    fx = FeatureExtractor(["category", "host"], host_min_count=2).fit(train)
    assert fx.categories_ == ["CULTURE", "SCIENCE"] and fx.hosts_ == ["a.com"]  # b.com seen once: too rare
    x = fx.transform(test)
    names = fx.names
    assert x.shape == (2, len(names))
    got = [dict(zip(names, r, strict=True)) for r in x]
    assert got[0]["category=unknown"] == 1 and got[0]["host=unknown"] == 1
    assert got[1]["category=CULTURE"] == 1 and got[1]["host=unknown"] == 1
    assert x.sum(1).tolist() == [2.0, 2.0]  # exactly one hot per vocabulary


def test_scaling_learned_on_train_and_round_trips():
    train = frame(row(answer="a"), row(answer="a b c d e f g h"), row(answer="a b"))
    fx = FeatureExtractor(["lengths", "asker"]).fit(train)
    x_train = fx.transform(train)
    col = fx.names.index("answer_log_words")
    assert x_train[:, col].mean() == pytest.approx(0, abs=1e-6) and x_train[:, col].std() == pytest.approx(1, abs=1e-5)
    # A constant column (nobody answered their own question) scales to 0, not NaN.
    assert np.isfinite(x_train).all() and (x_train[:, fx.names.index("asker_answered")] == 0).all()
    test = frame(row(answer=" ".join("w" * 50)))
    again = FeatureExtractor.from_dict(fx.to_dict())
    np.testing.assert_array_equal(again.transform(test), fx.transform(test))
    assert fx.transform(test)[0, col] > x_train[:, col].max()  # scaled with train statistics, not its own


def test_unknown_group_is_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match="known: lengths"):
        FeatureExtractor(["lengths", "emoji"])
