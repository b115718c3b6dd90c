"""The network (poolings, unknown categories), LR groups, bucketed batches and dynamic padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from questlab.models.transformer.batches import bucket_batches, collate
from questlab.models.transformer.network import QuestNet, build_vocab, load_encoder, lookup
from questlab.models.transformer.params import TransformerParams
from questlab.models.transformer.training import layer_depth, param_groups

pytest_plugins = ["helpers.transformer"]  # the tiny_encoder fixture


def test_vocab_comes_from_train_values_and_maps_unseen_values_to_zero():
    vocab = build_vocab(["b", "a", "b"])
    assert vocab == {"a": 1, "b": 2}
    assert lookup(vocab, ["a", "never-seen", "b"]) == [1, 0, 2]


@pytest.mark.parametrize("pooling", ["cls", "mean", "layers", "attention"])
def test_every_pooling_gives_one_output_row_per_input_and_trains_its_weights(tiny_encoder, pooling):
    torch.manual_seed(0)
    net = QuestNet(load_encoder(tiny_encoder), n_out=3, pooling=pooling, n_categories=2, n_hosts=2)
    ids = torch.randint(1000, 2000, (4, 9))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    out = net(ids, mask, torch.zeros_like(ids), torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2]))
    assert out.shape == (4, 3)
    out.sum().backward()
    assert net.head.weight.grad is not None and net.category_emb.weight.grad.abs().sum() > 0
    if pooling == "layers":
        assert net.layer_weights.grad.abs().sum() > 0
    if pooling == "attention":
        assert net.token_score.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_pooling_ignores_padding(tiny_encoder, pooling):
    net = QuestNet(load_encoder(tiny_encoder), n_out=2, pooling=pooling).eval()
    ids = torch.randint(1000, 2000, (1, 6))
    padded = torch.cat([ids, torch.zeros((1, 4), dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones_like(ids), torch.zeros((1, 4), dtype=torch.long)], dim=1)
    with torch.inference_mode():
        a = net(ids, torch.ones_like(ids), torch.zeros_like(ids))
        b = net(padded, mask, torch.zeros_like(padded))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_the_head_stays_fp32_under_bf16_autocast(tiny_encoder):
    net = QuestNet(load_encoder(tiny_encoder), n_out=2, n_hosts=2).eval()
    ids = torch.randint(1000, 2000, (3, 8))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(ids, torch.ones_like(ids), torch.zeros_like(ids), host=torch.tensor([0, 1, 2]))
    assert out.dtype == torch.float32


def test_unknown_pooling_names_the_choices(tiny_encoder):
    with pytest.raises(ValueError, match="cls, mean, layers"):
        QuestNet(load_encoder(tiny_encoder), n_out=2, pooling="max")


def test_param_groups_give_the_head_its_lr_and_decay_the_lr_down_the_encoder(tiny_encoder):
    net = QuestNet(load_encoder(tiny_encoder), n_out=2, n_categories=2)
    groups = param_groups(net, TransformerParams(lr=1e-4, head_lr=1e-2, layer_decay=0.5, weight_decay=0.1))
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(net.named_parameters())
    assert lr_of[id(named["head.weight"])] == (1e-2, 0.1)
    assert lr_of[id(named["head.bias"])] == (1e-2, 0.0)  # no weight decay on 1-D weights
    assert lr_of[id(named["category_emb.weight"])][0] == 1e-2
    top = next(n for n in named if n.startswith("encoder.encoder.layer.1."))
    bottom = next(n for n in named if n.startswith("encoder.encoder.layer.0."))
    emb = "encoder.embeddings.word_embeddings.weight"
    assert lr_of[id(named[top])][0] == pytest.approx(1e-4)
    assert lr_of[id(named[bottom])][0] == pytest.approx(0.5e-4)
    assert lr_of[id(named[emb])][0] == pytest.approx(0.25e-4)
    assert sum(len(g["params"]) for g in groups) == len(named)
    assert layer_depth("encoder.layer.11.attention.self.query.weight", 12) == 12


def test_bucket_batches_cover_every_row_once_are_seeded_and_cut_padding():
    lengths = np.random.default_rng(0).integers(10, 500, 400)
    batches = bucket_batches(lengths, 8, shuffle=True, seed=3, bucket_factor=10)
    assert sorted(i for b in batches for i in b) == list(range(400))
    assert batches == bucket_batches(lengths, 8, shuffle=True, seed=3, bucket_factor=10)
    assert batches != bucket_batches(lengths, 8, shuffle=True, seed=4, bucket_factor=10)

    def padded(bs: list[list[int]]) -> int:
        return sum(len(b) * lengths[b].max() for b in bs)

    random_batches = [list(range(i, i + 8)) for i in range(0, 400, 8)]
    assert padded(batches) < 0.75 * padded(random_batches)
    ordered = bucket_batches(lengths, 8, shuffle=False)
    assert [lengths[b].max() for b in ordered] == sorted(lengths[b].max() for b in ordered)


def test_collate_pads_to_the_longest_row_only():
    rows = [
        {"index": 0, "input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1], "category": 1, "host": 0},
        {"index": 1, "input_ids": [5], "token_type_ids": [0], "category": 0, "host": 2},
    ]
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert "targets" not in batch


def test_an_encoder_without_token_types_mpnet_works_and_gets_layer_wise_lrs(tmp_path, tiny_encoder):
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(
        vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    MPNetModel(config, add_pooling_layer=False).save_pretrained(tmp_path)
    net = QuestNet(load_encoder(tmp_path), n_out=3, pooling="layers")
    assert not net.uses_token_types
    ids = torch.randint(1000, 2000, (2, 7))
    assert net(ids, torch.ones_like(ids), torch.ones_like(ids)).shape == (2, 3)  # token types ignored
    groups = param_groups(net, TransformerParams(lr=1.0, head_lr=9.0, layer_decay=0.5))
    assert sorted({g["lr"] for g in groups}) == [0.25, 0.5, 1.0, 9.0]  # embeddings, layer 0, layer 1, head
