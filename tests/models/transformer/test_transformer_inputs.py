"""Input building: the shared budget, the head + tail cut and token types, on hand-made cases."""

from __future__ import annotations

import pandas as pd
import pytest

from questlab.models.transformer.inputs import build_input, encode_frame, head_tail, split_budget

pytest_plugins = ["helpers.transformer"]  # the tiny_encoder fixture

CLS, SEP = 101, 102


def test_split_budget_keeps_everything_that_fits():
    assert split_budget([3, 10, 7], 100) == [3, 10, 7]


def test_split_budget_lets_a_short_part_give_its_unused_share_to_the_others():
    # Equal shares would be 35 each; the title needs 5, so body and answer split the other 100.
    assert split_budget([5, 300, 300], 105) == [5, 50, 50]
    # The body fits in its share once the title's unused share flowed to it; the answer takes the rest.
    assert split_budget([5, 40, 300], 105) == [5, 40, 60]


def test_split_budget_gives_an_uneven_remainder_to_the_earlier_parts_and_skips_empty_ones():
    assert split_budget([50, 50, 50], 10) == [4, 3, 3]
    assert split_budget([0, 50, 50], 10) == [0, 5, 5]
    assert split_budget([10, 10], 0) == [0, 0]
    with pytest.raises(ValueError, match="budget"):
        split_budget([1], -1)


def test_head_tail_keeps_the_beginning_and_the_end():
    ids = list(range(10))
    assert head_tail(ids, 4) == [0, 1, 8, 9]
    assert head_tail(ids, 5) == [0, 1, 2, 8, 9]  # the odd token goes to the head
    assert head_tail(ids, 3, head_share=1.0) == [0, 1, 2]
    assert head_tail(ids, 3, head_share=0.0) == [7, 8, 9]
    assert head_tail(ids, 20) == ids
    assert head_tail(ids, 0) == []


def test_build_input_layout_and_token_types_of_a_pair():
    ids, types, kept = build_input([[1, 2], [3, 4, 5], [6]], 20, CLS, SEP)
    assert ids == [CLS, 1, 2, SEP, 3, 4, 5, SEP, 6, SEP]
    assert types == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]  # the answer and its closing [SEP] are type 1
    assert kept == [2, 3, 1]


def test_build_input_question_only_is_all_type_zero():
    ids, types, _ = build_input([[1, 2], [3]], 20, CLS, SEP)
    assert ids == [CLS, 1, 2, SEP, 3, SEP]
    assert types == [0] * 6


def test_build_input_cuts_long_parts_head_and_tail_within_the_budget():
    title, body, answer = [1, 2], list(range(10, 30)), list(range(40, 60))
    ids, types, kept = build_input([title, body, answer], 14, CLS, SEP)
    assert len(ids) == 14 and kept == [2, 4, 4]  # 10 text tokens: title 2, the rest split
    assert ids == [CLS, 1, 2, SEP, 10, 11, 28, 29, SEP, 40, 41, 58, 59, SEP]
    assert types == [0] * 9 + [1] * 5
    with pytest.raises(ValueError, match="no room"):
        build_input([title, body, answer], 4, CLS, SEP)


def test_encode_frame_tokenises_and_counts_the_cut(tiny_encoder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    frame = pd.DataFrame(
        {
            "question_title": ["short title", "why"],
            "question_body": ["word " * 100, "a tiny body"],
            "answer": ["reply " * 100, "yes"],
        }
    )
    enc = encode_frame(tokenizer, frame, 32, with_answer=True)
    assert enc.lengths().tolist() == [32, 1 + 1 + 1 + 3 + 1 + 1 + 1]  # row 2: why / a tiny body / yes
    assert enc.n_tokens["body"].tolist() == [100, 3] and enc.kept["body"].tolist() == [(32 - 4 - 2) // 2, 3]
    assert enc.kept["title"].tolist() == [2, 1]
    assert enc.input_ids[1][0] == tokenizer.cls_token_id and enc.input_ids[1][-1] == tokenizer.sep_token_id
    question_only = encode_frame(tokenizer, frame, 32, with_answer=False)
    assert set(question_only.n_tokens) == {"title", "body"} and max(max(t) for t in question_only.token_type_ids) == 0
