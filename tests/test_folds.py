"""Grouped folds: no question on both sides, deterministic, re-loadable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from questlab.data import load_train
from questlab.folds import check_grouped, load_folds, make_folds, question_groups, save_folds


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
    with pytest.raises(ValueError, match="distinct questions"):
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
