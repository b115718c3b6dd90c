"""Small seeded fits of every model family on a synthetic QUEST frame, for the "QUEST unchanged" test.

``seeded_predictions`` fits mean, TF-IDF, embedding (ridge and MLP heads, every feature group)
and transformer (joint and dual) models with fixed seeds and returns their predictions on a
second frame. ``tests/models/data/quest_seeded_baseline.npz`` holds what questlab 0.10.0
(main at 5757ca3, before models read a task) returned for the very same fits; the test asserts
the current code returns the same numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.transformer import synthetic_quest
from questlab.models import FitLog, build_model

BASELINE = Path(__file__).parent / "data" / "quest_seeded_baseline.npz"
TRANSFORMER = {"max_length": 48, "batch_size": 8, "epochs": 2, "lr": 1e-3, "head_lr": 1e-2, "progress": False}
TRANSFORMER |= {"cpu": True, "seed": 3}


def seeded_predictions(st_encoder: Path, bert_encoder: Path) -> dict[str, np.ndarray]:
    """{fit name: predictions on the test frame}; encoders are the tiny random-weight test encoders."""
    train, valid, test = synthetic_quest(48, seed=0), synthetic_quest(16, seed=1), synthetic_quest(12, seed=2)
    emb = {"encoder": str(st_encoder), "max_tokens": 32, "progress": False, "host_min_count": 2}
    emb |= {"max_epochs": 3, "patience": 2, "n_seeds": 2, "hidden": 16}
    groups = ["lengths", "counts", "asker", "category", "host", "question_words", "similarity", "ids"]
    every = {"features": groups, "parts": ["title", "body", "answer", "title_body"]}
    fits = {
        "mean": ("mean", {}),
        "tfidf": ("tfidf", {"min_df": 1}),
        "tfidf_nostats": ("tfidf", {"min_df": 1, "stats_weight": 0.0, "ngram_max": 1}),
        "embedding_ridge": ("embedding", emb | {"head": "ridge"}),
        "embedding_all": ("embedding", emb | {"head": "mlp+ridge"} | every),
        "embedding_split": ("embedding", emb | {"head": "mlp", "split_question_head": True}),
        "transformer_joint": ("transformer", TRANSFORMER | {"encoder": str(bert_encoder)}),
        "transformer_dual": ("transformer", TRANSFORMER | {"encoder": str(bert_encoder), "mode": "dual"}),
    }  # fmt: skip
    out = {}
    for key, (name, params) in fits.items():
        model = build_model(name, params).fit(train, valid, FitLog())
        out[key] = np.asarray(model.predict(test), dtype=np.float64)
    return out
