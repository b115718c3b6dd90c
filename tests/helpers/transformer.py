"""Test helpers for the transformer family: a tiny random-weight BERT fixture and synthetic QUEST frames.

Loaded by the transformer test modules with ``pytest_plugins = ["helpers.transformer"]``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from questlab.schema import ANSWER_TARGETS, QUESTION_TARGETS, TARGETS, TEST_COLUMNS

WORDS = [
    "apple",
    "lens",
    "camera",
    "focus",
    "code",
    "python",
    "error",
    "server",
    "light",
    "water",
    "question",
    "answer",
    "good",
    "bad",
    "fast",
    "slow",
]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and the packaged MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from questlab.models.pretrained import resolve_encoder

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder("all-MiniLM-L6-v2"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def synthetic_quest(n: int, seed: int = 0) -> pd.DataFrame:
    """A QUEST-shaped frame whose targets depend on the text (so a model can learn something)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, rng.integers(3, 8)))
        body = " ".join(rng.choice(WORDS, rng.integers(5, 60)))
        answer = " ".join(rng.choice(WORDS, rng.integers(5, 60)))
        rows.append(
            {
                "qa_id": i,
                "question_title": title,
                "question_body": body,
                "question_user_name": "u",
                "question_user_page": "p",
                "answer": answer,
                "answer_user_name": "v",
                "answer_user_page": "q",
                "url": f"https://site/{i}",
                "category": rng.choice(["TECHNOLOGY", "SCIENCE", "CULTURE"]),
                "host": rng.choice(["a.com", "b.com"]),
            }
        )
    frame = pd.DataFrame(rows)[list(TEST_COLUMNS)]
    q_signal = frame["question_body"].str.count("good") / 10
    a_signal = frame["answer"].str.count("fast") / 10
    for k, t in enumerate(TARGETS):
        base = q_signal if t in QUESTION_TARGETS else a_signal
        frame[t] = np.clip(base + 0.05 * k / len(TARGETS) + rng.normal(0, 0.05, n), 0, 1)
    assert set(ANSWER_TARGETS) <= set(frame.columns)
    return frame


@pytest.fixture(scope="session")
def make_quest():
    """``synthetic_quest`` as a fixture, so test modules need not import this plugin module."""
    return synthetic_quest
