"""Grouped folds: no question on both sides, deterministic, re-loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from questlab.data import load_train
from questlab.folds import (
    check_grouped,
    holdout_rows,
    load_folds,
    make_folds,
    pseudo_rows,
    question_groups,
    save_folds,
)


def test_same_question_under_several_answers_is_one_group() -> None:
    frame = pd.DataFrame(
        {
            "question_title": ["How to X?", "How to X?", "how  to x?", "Other", "Third", "Fourth"],
            "question_body": ["Body", "Body", "body ", "B", "C", "D"],
            # row 4 re-types the body of row 3's question but shares its URL
            "url": ["u1", "u1", "u1b", "u2", "u2", "u3"],
        }
    )
    groups = question_groups(frame)
    assert groups[0] == groups[1] == groups[2]  # same text (whitespace and case aside)
    assert groups[3] == groups[4]  # same URL, different text
    assert len({groups[0], groups[3], groups[5]}) == 3


def test_real_folds_are_grouped_balanced_and_deterministic(quest_dir: Path) -> None:
    train = load_train(quest_dir / "train.csv")
    folds = make_folds(train, n_splits=5, seed=7)
    check_grouped(folds)
    assert folds.groupby("group")["fold"].nunique().max() == 1
    assert folds["group"].nunique() == 2856
    sizes = folds["fold"].value_counts()
    assert sizes.min() > 0.8 * len(train) / 5
    again = make_folds(train, n_splits=5, seed=7)
    assert (again["fold"] == folds["fold"]).all()
    other = make_folds(train, n_splits=5, seed=8)
    assert (other["fold"] != folds["fold"]).any()


def test_folds_round_trip_and_must_cover(tmp_path: Path, train_slice_csv: Path) -> None:
    train = load_train(train_slice_csv)
    folds = make_folds(train, n_splits=3, seed=1)
    save_folds(folds, tmp_path)
    loaded = load_folds(tmp_path / "folds.csv", train.iloc[::-1].reset_index(drop=True))
    assert (loaded.set_index("qa_id")["fold"].sort_index() == folds.set_index("qa_id")["fold"].sort_index()).all()
    bigger = pd.concat([train, train.assign(qa_id=train.qa_id + 10**6)])
    with pytest.raises(ValueError, match="do not cover"):
        load_folds(tmp_path / "folds.csv", bigger)


def test_leaky_folds_are_caught() -> None:
    folds = pd.DataFrame({"qa_id": [1, 2, 3], "group": [0, 0, 1], "fold": [0, 1, 1]})
    with pytest.raises(ValueError, match="leak"):
        check_grouped(folds)
    with pytest.raises(ValueError, match="distinct groups"):
        make_folds(
            pd.DataFrame(
                {
                    "qa_id": [1, 2],
                    "question_title": ["a", "b"],
                    "question_body": ["x", "y"],
                    "url": ["u", "v"],
                    "category": ["C", "C"],
                }
            ),
            n_splits=3,
        )
    assert np.array_equal(
        question_groups(pd.DataFrame({"question_title": ["a"], "question_body": ["b"], "url": [""]})), [0]
    )


def _questions(n: int, urls: bool = True, categories: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
    """``n`` distinct questions, one answer each (synthetic: no data needed)."""
    return pd.DataFrame(
        {
            "qa_id": np.arange(100, 100 + n),
            "question_title": [f"title {i}" for i in range(n)],
            "question_body": [f"body {i}" for i in range(n)],
            "url": [f"https://site/q/{i}" if urls else "" for i in range(n)],
            "category": [categories[i % len(categories)] for i in range(n)],
        }
    )


def test_questions_without_a_url_are_not_joined_by_their_empty_url() -> None:
    groups = question_groups(_questions(4, urls=False))
    assert len(set(groups)) == 4
    assert groups.dtype == np.int64


def test_group_ids_do_not_depend_on_row_order() -> None:
    frame = _questions(12)
    frame.loc[5, ["question_title", "question_body"]] = frame.loc[2, ["question_title", "question_body"]].to_numpy()
    by_id = dict(zip(frame["qa_id"], question_groups(frame), strict=True))
    shuffled = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    assert dict(zip(shuffled["qa_id"], question_groups(shuffled), strict=True)) == by_id
    assert by_id[102] == by_id[105] and len(set(by_id.values())) == 11


@pytest.mark.parametrize("n_splits", [2, 3, 7])
def test_make_folds_gives_n_splits_folds_even_with_exactly_that_many_questions(n_splits: int) -> None:
    # one category: sklearn's stratifier refuses a category with fewer questions than folds
    folds = make_folds(_questions(n_splits, categories=("A",)), n_splits=n_splits, seed=0)
    assert sorted(folds["fold"]) == list(range(n_splits))  # every question its own fold
    bigger = make_folds(_questions(10 * n_splits), n_splits=n_splits, seed=0)
    assert set(bigger["fold"]) == set(range(n_splits)) and bigger["fold"].dtype == np.int64
    assert list(bigger.columns) == ["qa_id", "group", "fold"]
    assert (bigger["qa_id"] == _questions(10 * n_splits)["qa_id"]).all()  # input row order


def test_make_folds_defaults_to_five_folds() -> None:
    assert set(make_folds(_questions(20))["fold"]) == set(range(5))


def test_make_folds_refuses_fewer_than_two_folds_or_too_few_questions() -> None:
    with pytest.raises(ValueError, match=r"^n_splits must be at least 2, got 1$"):
        make_folds(_questions(10), n_splits=1)
    with pytest.raises(ValueError, match=r"^only 2 distinct groups: cannot make 3 grouped folds$"):
        make_folds(_questions(2), n_splits=3)


def test_saved_folds_are_three_columns_and_load_back_as_integers(tmp_path: Path) -> None:
    frame = _questions(9)
    folds = make_folds(frame, n_splits=3, seed=0)
    path = save_folds(folds, tmp_path)
    assert path == tmp_path / "folds.csv"
    assert path.read_text().splitlines()[0] == "qa_id,group,fold"
    loaded = load_folds(path, frame)
    assert list(loaded.columns) == ["qa_id", "group", "fold"]
    assert loaded["fold"].dtype == np.int64 and loaded["group"].dtype == np.int64
    pd.testing.assert_frame_equal(loaded, folds)


def test_load_folds_names_what_is_wrong(tmp_path: Path) -> None:
    frame = _questions(9)
    save_folds(make_folds(frame, n_splits=3, seed=0).iloc[:-2], tmp_path)  # the last two rows lost
    with pytest.raises(ValueError, match=r"qa_id 107 has no fold\); they were made for another train file$"):
        load_folds(tmp_path / "folds.csv", frame)
    (tmp_path / "bad.csv").write_text("qa_id,group\n1,0\n")
    with pytest.raises(ValueError, match=r"bad.csv: not a folds file \(no 'fold' column\)$"):
        load_folds(tmp_path / "bad.csv", frame)


def test_check_grouped_names_the_leaking_group() -> None:
    folds = pd.DataFrame({"qa_id": [1, 2, 3, 4], "group": [0, 1, 1, 2], "fold": [0, 0, 1, 1]})
    with pytest.raises(ValueError, match=r"^group 1 spans several folds: the folds leak$"):
        check_grouped(folds)
    check_grouped(folds.assign(fold=[0, 1, 1, 0]))  # grouped: no error


def test_holdout_rows_hold_out_whole_questions() -> None:
    groups = np.repeat(np.arange(40), 3)  # 40 questions, 3 answers each
    mask = holdout_rows(groups, 0.25, seed=1)
    held = np.unique(groups[mask])
    assert len(held) == 10
    assert not np.isin(groups[~mask], held).any()  # no answer of a held-out question is trained on
    np.testing.assert_array_equal(mask, holdout_rows(groups, 0.25, seed=1))  # seeded
    assert not np.array_equal(mask, holdout_rows(groups, 0.25, seed=2))
    assert np.unique(groups[holdout_rows(groups, 0.1, seed=1)]).size == 4  # round(0.1 * 40)
    assert np.unique(groups[holdout_rows(groups, 0.001, seed=1)]).size == 1  # at least one question
    with pytest.raises(ValueError, match=r"1 group\(s\) in the fit: too few to hold out 0\.25 "):
        holdout_rows(np.zeros(5, dtype=int), 0.25, seed=1)
    assert holdout_rows(np.arange(2), 0.5, seed=1).sum() == 1  # 1 of 2 questions: fine
    with pytest.raises(ValueError, match="too few"):
        holdout_rows(np.arange(2), 0.75, seed=1)  # round(1.5) = 2 of 2: nothing left to train on


def test_holdout_rows_draw_only_eligible_questions_and_pseudo_rows_are_read_from_the_marker() -> None:
    groups = np.repeat(np.arange(40), 3)
    eligible = groups >= 20  # questions 0-19 are pseudo-labelled (one of their rows is enough)
    eligible[3 * 25] = False  # question 25: one pseudo row among its three
    for seed in range(5):
        mask = holdout_rows(groups, 0.25, seed=seed, eligible=eligible)
        held = np.unique(groups[mask])
        assert len(held) == round(0.25 * 19) and held.min() >= 20 and 25 not in held
    as_ints = eligible.astype(int)  # a 0/1 mask means the same (never ~1 == -2 as an index)
    np.testing.assert_array_equal(holdout_rows(groups, 0.25, 3, as_ints), holdout_rows(groups, 0.25, 3, eligible))
    with pytest.raises(ValueError, match=r"^0 group\(s\) in the fit.*use more rows, or early_stopping: valid$"):
        holdout_rows(groups, 0.25, seed=0, eligible=np.zeros(len(groups), dtype=bool))
    frame = pd.DataFrame({"qa_id": [1, 2, 3]})
    assert pseudo_rows(frame).dtype == bool and pseudo_rows(frame.assign(questlab_pseudo=[0, 1, 0])).dtype == bool
    np.testing.assert_array_equal(pseudo_rows(frame), [False, False, False])
    np.testing.assert_array_equal(pseudo_rows(frame.assign(questlab_pseudo=[False, True, False])), [False, True, False])
