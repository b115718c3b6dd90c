"""``questlab pretrain``: MLM on the task's own texts writes an encoder folder any config can use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from questlab.cli import app
from questlab.errors import UsageError
from questlab.models import FitLog
from questlab.models.transformer import TransformerModel
from questlab.models.transformer.network import load_encoder
from questlab.pretrain import PretrainConfig, corpus, pretrain
from questlab.schema import TARGETS

pytest_plugins = ["helpers.transformer"]


@pytest.fixture
def texts(tmp_path: Path, make_quest) -> list[Path]:
    """A train CSV and a test CSV (no labels) of a 16-word vocabulary: a very repetitive corpus."""
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    make_quest(40).to_csv(train, index=False)
    make_quest(20, seed=1).drop(columns=list(TARGETS)).to_csv(test, index=False)
    return [train, test]


def test_the_corpus_holds_each_question_and_answer_once(make_quest):
    frame = make_quest(6)
    frame.loc[1, ["question_title", "question_body"]] = frame.loc[0, ["question_title", "question_body"]].values
    texts = corpus([frame, frame])  # the same frame twice, and two rows of one question
    assert len(texts) == 5 + 6 == len(set(texts))
    assert f"{frame.loc[0, 'question_title']}\n{frame.loc[0, 'question_body']}" in texts


def test_mlm_loss_falls_and_the_folder_trains_a_transformer(tiny_encoder, texts, tmp_path, make_quest):
    out = tmp_path / "adapted"
    cfg = PretrainConfig(
        encoder=str(tiny_encoder), texts=texts, output=out, epochs=2, max_steps=24, batch_size=8, lr=5e-3,
        max_length=64, log_every=6, precision="fp32", warmup_ratio=0.0,
    )  # fmt: skip
    result = pretrain(cfg)
    assert result.steps == 24 and result.n_texts > 40
    assert any(k.startswith("cls.predictions") for k in result.head_initialised)  # the tiny BERT has no MLM head
    assert result.losses[-1] < result.losses[0] - 1.0, result.losses  # ~10.3 (uniform over 30k tokens) down

    encoder = load_encoder(out)  # questlab's loader reads the folder (MLM head left out)
    source = load_encoder(tiny_encoder)
    assert {p.dtype for p in encoder.parameters()} == {torch.float32}
    word = "embeddings.word_embeddings.weight"
    assert not torch.equal(encoder.state_dict()[word], source.state_dict()[word])  # trained, not a copy
    params = {"encoder": str(out), "max_length": 48, "batch_size": 8, "epochs": 1, "precision": "fp32"}
    model = TransformerModel({**params, "progress": False}).fit(make_quest(16), None, FitLog())
    assert model.predict(make_quest(4, seed=2)).shape == (4, 30)


def test_a_used_output_folder_is_refused(tiny_encoder, texts, tmp_path):
    out = tmp_path / "used"
    out.mkdir()
    (out / "x").write_text("keep me")
    with pytest.raises(UsageError, match="not an empty folder"):
        pretrain(PretrainConfig(encoder=str(tiny_encoder), texts=texts, output=out, max_steps=1))
    assert (out / "x").read_text() == "keep me"


def test_the_cli_prints_the_folder(tiny_encoder, texts, tmp_path):
    out = tmp_path / "cli-adapted"
    args = ["pretrain", "--train", str(texts[0]), "--test", str(texts[1]), "--encoder", str(tiny_encoder)]
    result = CliRunner().invoke(app, [*args, "--output", str(out), "--max-steps", "2", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert (out / "config.json").exists() and (out / "pretrain.json").exists()
    again = CliRunner().invoke(app, [*args, "--output", str(out), "--max-steps", "2"])
    assert again.exit_code == 2 and "not an empty folder" in again.output
