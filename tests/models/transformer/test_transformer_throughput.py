"""The loop's throughput machinery: few batch shapes, one tokenisation per text, background
checkpoints, the micro-batch search, torch.compile; GPU-only paths skip without CUDA."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from questlab.models import FitLog
from questlab.models.transformer import TransformerModel, TransformerParams, training
from questlab.models.transformer.batches import collate, padded_width
from questlab.models.transformer.checkpoints import CheckpointWriter
from questlab.models.transformer.inputs import CACHE_STATS, clear_token_cache, encode_frame, tokenizer_fingerprint
from questlab.models.transformer.optim import largest_fitting_micro_batch, make_optimizer
from questlab.schema import TARGETS

pytest_plugins = ["helpers.transformer"]
TINY = {"max_length": 48, "batch_size": 4, "epochs": 1, "lr": 1e-3, "head_lr": 1e-2, "progress": False}
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA-only path: no GPU here")


def tiny_model(encoder, **overrides) -> TransformerModel:
    return TransformerModel({"encoder": str(encoder), **TINY, "precision": "fp32", **overrides})


@pytest.mark.parametrize(
    ("longest", "multiple", "cap", "width"),
    [(1, 32, 512, 32), (33, 32, 512, 64), (64, 32, 512, 64), (500, 64, 512, 512), (47, 32, 48, 48), (50, 1, None, 50)],
)
def test_batch_widths_round_up_to_the_multiple_but_never_past_the_max_length(longest, multiple, cap, width):
    assert padded_width(longest, multiple, cap) == width


def test_collate_pads_to_the_rounded_width_and_masks_the_padding():
    rows = [
        {"index": i, "input_ids": [5] * n, "token_type_ids": [0] * n, "category": 0, "host": 0}
        for i, n in [(0, 3), (1, 7)]
    ]
    batch = collate(rows, pad_id=0, multiple=8, cap=64)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(1).tolist() == [3, 7]


def test_training_sees_only_a_few_batch_shapes(tiny_encoder, make_quest, monkeypatch):
    widths: set[int] = set()
    real_forward = training.forward

    def spy(net, batch):
        widths.add(batch["input_ids"].shape[1])
        return real_forward(net, batch)

    monkeypatch.setattr(training, "forward", spy)
    frame = make_quest(40)
    tiny_model(tiny_encoder, pad_to_multiple=16).fit(frame[:32], frame[32:], FitLog())
    assert widths and widths <= {16, 32, 48}  # multiples of 16, capped at max_length 48


def test_padding_to_a_multiple_does_not_change_predictions(tiny_encoder, make_quest):
    # The same trained weights, predicting with exact and with rounded widths: padding is masked out.
    # (Training itself differs between the two: dropout masks are drawn over the padded shape.)
    frame = make_quest(24)
    model = tiny_model(tiny_encoder, pad_to_multiple=1).fit(frame[:16], None, FitLog())
    exact = model.predict(frame[16:])
    model.params = model.params.model_copy(update={"pad_to_multiple": 32})
    np.testing.assert_allclose(model.predict(frame[16:]), exact, atol=2e-5)


def test_each_text_is_tokenised_once_per_tokenizer(tiny_encoder, make_quest):
    from transformers import AutoTokenizer

    clear_token_cache()
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    frame = make_quest(12)
    first = encode_frame(tokenizer, frame, 48, with_answer=True)
    misses = CACHE_STATS["misses"]
    assert misses == frame[["question_title", "question_body", "answer"]].nunique().sum()
    again = encode_frame(tokenizer, frame.iloc[::-1], 32, with_answer=True)  # other order, other budget
    assert CACHE_STATS["misses"] == misses and CACHE_STATS["hits"] == 3 * len(frame)
    clear_token_cache()
    uncached = encode_frame(tokenizer, frame.iloc[::-1], 32, with_answer=True)
    assert again.input_ids == uncached.input_ids and first.lengths().max() <= 48


def test_a_changed_tokenizer_gets_its_own_cache(tiny_encoder, tmp_path):
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(tiny_encoder)
    other_dir = tmp_path / "cased"
    shutil.copytree(tiny_encoder, other_dir)
    other = AutoTokenizer.from_pretrained(other_dir, do_lower_case=False)
    assert tokenizer_fingerprint(base) == tokenizer_fingerprint(AutoTokenizer.from_pretrained(tiny_encoder))
    assert tokenizer_fingerprint(base) != tokenizer_fingerprint(other)


def test_a_dual_fit_reuses_the_first_stages_tokens(tiny_encoder, make_quest):
    clear_token_cache()
    log = FitLog()
    tiny_model(tiny_encoder, mode="dual").fit(make_quest(16), None, log)
    # the answer stage tokenises only the answers afresh: titles and bodies come from the cache
    assert log.info["token_cache"]["hits"] >= 2 * 16


def test_a_failed_background_write_surfaces_in_the_training_thread():
    writer = CheckpointWriter()
    done = []
    writer.write(done.append, 1)
    writer.write(lambda: 1 / 0)
    assert done == [1]
    with pytest.raises(ZeroDivisionError):
        writer.wait()
    writer.wait()  # reported once


def test_the_last_checkpoint_of_a_stage_keeps_only_what_a_finished_stage_needs(tiny_encoder, make_quest, tmp_path):
    tiny_model(tiny_encoder, epochs=2).fit(make_quest(16), None, FitLog(workdir=tmp_path))
    last = tmp_path / "transformer" / "joint" / "epoch-2"
    assert sorted(p.name for p in last.iterdir()) == ["best.safetensors", "complete", "progress.json"]
    log = FitLog(workdir=tmp_path)  # a rerun finds the finished stage and trains nothing
    tiny_model(tiny_encoder, epochs=2).fit(make_quest(16), None, log)
    assert log.info["resumed_from"][0].endswith("epoch-2") and len(log.epochs) == 2


@pytest.mark.parametrize(("effective", "limit", "size"), [(16, 6, 4), (12, 6, 6), (16, 100, 16), (7, 3, 1)])
def test_the_micro_batch_is_the_largest_divisor_that_fits(effective, limit, size):
    tried = []

    def fits(n):
        tried.append(n)
        return n <= limit

    assert largest_fitting_micro_batch(effective, fits) == size
    assert tried == sorted(tried, reverse=True) and 1 not in tried  # one row always "fits"


def test_adamw_is_fused_only_on_cuda(tiny_encoder):
    from questlab.models.transformer.network import QuestNet, load_encoder

    net = QuestNet(load_encoder(tiny_encoder), n_out=2)
    optimizer = make_optimizer(net, TransformerParams(), torch.device("cpu"))
    assert not optimizer.defaults.get("fused")


@NEEDS_CUDA
def test_on_cuda_adamw_is_fused_and_the_micro_batch_is_chosen(tiny_encoder, make_quest):
    log = FitLog()
    model = tiny_model(tiny_encoder, batch_size=2, accumulation=4, precision="bf16").fit(make_quest(16), None, log)
    micro, accumulation = log.info["stage0_micro_batch"]
    assert micro * accumulation == 8 and micro == 8  # a tiny model fits 8 rows of 48 tokens
    assert model.predict(make_quest(4, seed=1)).shape == (4, 30)


@NEEDS_CUDA
def test_on_cuda_at_most_one_host_sync_per_step(tiny_encoder, make_quest):
    # torch reports each synchronising call; count those that grow with the steps taken. Measured
    # on an H200: the 0.4.0 loop 8 per step (accelerate copied each batch tensor to the GPU with a
    # blocking copy: 295 syncs at 32 rows vs 199 at 8); now 1 (183 vs 171), the one inside
    # transformers, whose SDPA mask builder reads `padding_mask.all()` on the host every forward
    # (masking_utils._ignore_bidirectional_mask_sdpa) to choose its kernel.
    def syncs(rows: int) -> int:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                tiny_model(tiny_encoder, batch_size=2, auto_micro_batch=False).fit(make_quest(rows), None, FitLog())
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in seen)

    extra_steps = (32 - 8) // 2  # batch_size 2, one epoch
    assert syncs(32) - syncs(8) <= extra_steps


HAS_COMPILER = shutil.which("g++") is not None or shutil.which("cc") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile on CPU needs a C++ compiler")
def test_a_compiled_fit_trains_and_its_valid_pass_matches_eager(tiny_encoder, make_quest):
    frame = make_quest(24)
    log = FitLog()
    model = tiny_model(tiny_encoder, pad_to_multiple=16, compile=True).fit(frame[:16], frame[16:], log)
    # The valid pass ran through the compiled network; predict runs eager on the same weights.
    eager = model.predict(frame[16:])
    truth = torch.tensor(frame[16:][list(TARGETS)].to_numpy())
    bce = torch.nn.functional.binary_cross_entropy(torch.tensor(eager), truth).item()
    assert np.isfinite(log.epochs[0]["train_loss"])
    assert log.epochs[0]["valid_loss"] == pytest.approx(bce, rel=1e-4)
