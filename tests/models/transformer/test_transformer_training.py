"""The training loop: the loss goes down, one schedule spans the run, and a killed run resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from questlab.models import FitLog
from questlab.models.transformer import TransformerModel, training
from questlab.models.transformer.batches import RowDataset
from questlab.models.transformer.inputs import encode_frame
from questlab.models.transformer.network import QuestNet, load_encoder
from questlab.models.transformer.training import TrainSettings, score_with_undefined
from questlab.schema import TARGETS

pytest_plugins = ["helpers.transformer"]  # the tiny_encoder and make_quest fixtures

TINY = {"max_length": 48, "batch_size": 8, "epochs": 2, "lr": 1e-3, "head_lr": 1e-2, "progress": False}


def tiny_model(encoder, **overrides) -> TransformerModel:
    return TransformerModel({"encoder": str(encoder), **TINY, "precision": "fp32", **overrides})


def test_training_lowers_the_loss(tiny_encoder, make_quest):
    from accelerate import Accelerator
    from transformers import AutoTokenizer

    frame = make_quest(32)
    enc = encode_frame(AutoTokenizer.from_pretrained(tiny_encoder), frame, 48, with_answer=True)
    data = RowDataset(enc.input_ids, enc.token_type_ids, [0] * 32, [0] * 32, frame[list(TARGETS)].to_numpy())
    accelerator = Accelerator()
    torch.manual_seed(0)
    net = QuestNet(load_encoder(tiny_encoder), n_out=30).to(accelerator.device)  # infer does not move it
    settings = TrainSettings.of(
        bf16=False, epochs=1, batch_size=32, eval_batch_size=64, head_lr=1e-2, warmup_ratio=0.0, progress=False
    )
    before = training.infer(net, data, settings, accelerator, shard=False)[1]
    net = training.train_network(net, data, None, settings, FitLog(), accelerator)  # one step: one batch of 32
    after = training.infer(net, data, settings, accelerator, shard=False)[1]
    assert after < before - 1e-3


def test_one_schedule_warms_up_and_decays_over_the_whole_run(tiny_encoder, make_quest):
    log = FitLog()
    tiny_model(tiny_encoder, epochs=2, batch_size=4, warmup_ratio=0.25).fit(make_quest(16), None, log)
    # 4 steps per epoch, 8 in all, 2 of warm-up: after epoch 1 the top LR is head_lr * 4/6, after epoch 2 zero.
    # A schedule re-created per epoch would restart its warm-up and never read these values.
    assert [e["lr"] for e in log.epochs] == pytest.approx([1e-2 * 4 / 6, 0.0])
    assert [e["epoch"] for e in log.epochs] == [1, 2] and "valid_loss" not in log.epochs[0]


def test_per_epoch_records_and_best_epoch(tiny_encoder, make_quest):
    frame = make_quest(24)
    log = FitLog()
    tiny_model(tiny_encoder, epochs=2).fit(frame[:16], frame[16:], log)
    assert {"epoch", "train_loss", "valid_loss", "valid_score", "lr", "seconds"} <= set(log.epochs[0])
    best = int(np.argmax([e["valid_score"] for e in log.epochs])) + 1
    assert log.info["stage0_best_epoch"] == best
    assert set(log.truncation) == {"title", "body", "answer"} and log.truncation["body"]["share_cut"] > 0


class Killed(Exception):
    pass


@pytest.mark.parametrize(
    "options",
    [
        {},  # defaults: checkpoints written in a thread, widths rounded to 8
        {"pad_to_multiple": 32, "compile": False, "background_checkpoints": False},  # few shapes, synchronous
    ],
)
def test_resume_after_a_kill_gives_the_same_result_as_an_uninterrupted_run(
    tiny_encoder, tmp_path, monkeypatch, make_quest, options
):
    frame = make_quest(24)
    train, valid = frame[:16], frame[16:]
    straight_log = FitLog(workdir=tmp_path / "straight")
    straight = tiny_model(tiny_encoder, epochs=2, **options).fit(train, valid, straight_log).predict(valid)

    real_save = training.save_checkpoint

    def save_then_die(folder, snap):
        path = real_save(folder, snap)
        if snap.progress.epoch == 1:
            raise Killed  # the process dies once epoch 1's checkpoint is on disk
        return path

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        tiny_model(tiny_encoder, epochs=2, **options).fit(train, valid, FitLog(workdir=tmp_path / "killed"))
    monkeypatch.setattr(training, "save_checkpoint", real_save)
    resumed_log = FitLog(workdir=tmp_path / "killed")
    resumed = tiny_model(tiny_encoder, epochs=2, **options).fit(train, valid, resumed_log).predict(valid)

    assert resumed_log.info["resumed_from"][0].endswith("epoch-1")
    np.testing.assert_array_equal(resumed, straight)
    strip = [{k: v for k, v in e.items() if k != "seconds"} for e in straight_log.epochs]
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in resumed_log.epochs] == strip


def test_checkpoints_of_another_fit_are_not_resumed(tiny_encoder, tmp_path, make_quest):
    """A workdir reused with other params (here: pooling) starts afresh, as a fresh workdir does."""
    frame = make_quest(24)
    train, valid = frame[:16], frame[16:]
    tiny_model(tiny_encoder, epochs=1, pooling="mean").fit(train, valid, FitLog(workdir=tmp_path / "reused"))
    fresh = tiny_model(tiny_encoder, epochs=1, pooling="cls").fit(train, valid, FitLog(workdir=tmp_path / "fresh"))
    log = FitLog(workdir=tmp_path / "reused")
    reused = tiny_model(tiny_encoder, epochs=1, pooling="cls").fit(train, valid, log)
    np.testing.assert_array_equal(reused.predict(valid), fresh.predict(valid))
    assert log.info.get("stale_checkpoints_removed") is True and "resumed_from" not in log.info


def test_an_incomplete_checkpoint_is_ignored(tmp_path):
    (tmp_path / "epoch-3").mkdir()  # killed while writing: no "complete" marker
    (tmp_path / "epoch-2").mkdir()
    (tmp_path / "epoch-2" / "complete").touch()
    assert training.latest_checkpoint(tmp_path) == tmp_path / "epoch-2"
    assert training.latest_checkpoint(tmp_path / "nothing") is None


def test_valid_score_is_the_competition_metric_and_counts_undefined_columns():
    truth = np.array([[0.1, 0.5], [0.2, 0.5], [0.3, 0.5]])
    score, undefined = score_with_undefined(truth, np.array([[0.1, 0.3], [0.2, 0.2], [0.3, 0.1]]))
    assert score == pytest.approx(0.5) and undefined == 1  # the constant-truth column scores 0, and is counted
    score, undefined = score_with_undefined(truth, np.array([[0.1, 0.3], [0.2, 0.3], [0.3, 0.3]]))
    assert score == pytest.approx(0.5) and undefined == 1  # a constant prediction too
