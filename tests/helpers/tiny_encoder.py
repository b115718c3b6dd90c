"""A tiny random-weight BERT in sentence-transformers layout (mean pooling + Normalize), for fast tests.

Built once per session from MiniLM's tokenizer (so real texts tokenise as in production) and a
2-layer, 32-wide config; tests import the ``tiny_encoder`` fixture from here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


def build_tiny_encoder(folder: Path, pooling: str = "mean", normalize: bool = True) -> Path:
    """Write a random 2-layer BERT sentence-transformers folder to ``folder`` and return it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from questlab.models.pretrained import resolve_encoder

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_encoder("minilm")).save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    if normalize:
        (folder / "2_Normalize").mkdir(exist_ok=True)
    return folder


_MASTER: list[Path] = []  # built once per session, copied per test


@pytest.fixture
def tiny_encoder(tmp_path_factory, tmp_path) -> Path:
    """A private copy of the tiny encoder folder per test (the original is built once)."""
    if not _MASTER:
        _MASTER.append(build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny-bert"))
    return Path(shutil.copytree(_MASTER[0], tmp_path / "tiny-bert"))


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    """A private embedding-cache root, set as $QUESTLAB_CACHE."""
    root = tmp_path / "cache"
    monkeypatch.setenv("QUESTLAB_CACHE", str(root))
    return root
