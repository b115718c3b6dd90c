"""Recipe options: head-only warm-up epochs (frozen encoder), gradual unfreezing, and the pairwise ranking loss."""

from __future__ import annotations

import pydantic
import pytest
import torch

from questlab.models import FitLog
from questlab.models.transformer import TransformerModel, training
from questlab.models.transformer.optim import pairwise_rank_loss, training_loss

pytest_plugins = ["helpers.transformer"]
TINY = {"max_length": 48, "batch_size": 4, "lr": 1e-3, "head_lr": 1e-2, "progress": False, "precision": "fp32"}


@pytest.fixture
def snaps(monkeypatch) -> dict:
    """Each epoch's checkpoint snapshot, by epoch number, as the loop writes them."""
    kept, real_save = {}, training.save_checkpoint

    def keep(folder, snap):
        kept[snap.progress.epoch] = snap
        return real_save(folder, snap)

    monkeypatch.setattr(training, "save_checkpoint", keep)
    return kept


def test_frozen_epochs_train_the_head_only_then_the_encoder(tiny_encoder, make_quest, tmp_path, snaps):
    params = {"encoder": str(tiny_encoder), **TINY, "epochs": 2, "freeze_encoder_epochs": 1}
    model = TransformerModel(params).fit(make_quest(16), None, FitLog(workdir=tmp_path))
    from questlab.models.transformer.network import load_encoder

    torch.manual_seed(model.params.seed)  # the network as fit built it, before any step
    initial = model._network(load_encoder(tiny_encoder), 30).state_dict()
    after_one, final = snaps[1].weights, model.networks_["joint"].state_dict()
    encoder_keys = [k for k in initial if k.startswith("encoder.")]
    assert all(torch.equal(after_one[k], initial[k]) for k in encoder_keys)  # epoch 1: encoder frozen
    assert not torch.equal(after_one["head.weight"], initial["head.weight"])  # ... the head trained
    assert any(not torch.equal(final[k], initial[k]) for k in encoder_keys)  # epoch 2: fine-tuned


def test_gradual_unfreezing_trains_one_more_layer_each_epoch_from_the_top(tiny_encoder, make_quest, tmp_path, snaps):
    params = {"encoder": str(tiny_encoder), **TINY, "epochs": 4, "freeze_encoder_epochs": 1}
    params["unfreeze_layers_per_epoch"] = 1
    log = FitLog(workdir=tmp_path)
    model = TransformerModel(params).fit(make_quest(16), None, log)
    from questlab.models.transformer.network import load_encoder

    torch.manual_seed(model.params.seed)  # the network as fit built it, before any step
    before = {0: model._network(load_encoder(tiny_encoder), 30).state_dict()}
    after = {e: snaps[e].weights for e in (1, 2, 3)} | {4: model.networks_["joint"].state_dict()}
    parts = {  # the tiny BERT has 2 layers
        "embeddings": [k for k in before[0] if k.startswith("encoder.embeddings.")],
        "layer 0": [k for k in before[0] if k.startswith("encoder.encoder.layer.0.")],
        "layer 1": [k for k in before[0] if k.startswith("encoder.encoder.layer.1.")],
        "head": ["head.weight", "head.bias"],
    }
    weights = before | after

    def changed(e: int, keys: list[str]) -> bool:
        return any(not torch.equal(weights[e][k], weights[e - 1][k]) for k in keys)

    trained = {e: {part for part, keys in parts.items() if changed(e, keys)} for e in (1, 2, 3, 4)}
    assert trained == {
        1: {"head"},  # head-only epoch
        2: {"head", "layer 1"},  # the top layer
        3: {"head", "layer 1", "layer 0"},  # the top two
        4: {"head", "layer 1", "layer 0", "embeddings"},  # everything
    }
    assert [log.info[f"stage0_epoch{e}_training_layers"] for e in (2, 3, 4)] == [1, 2, 2]
    assert all(p.requires_grad for p in model.networks_["joint"].parameters())  # the fitted net is whole


def test_an_encoder_frozen_for_every_epoch_is_refused():
    with pytest.raises(pydantic.ValidationError, match="freeze_encoder_epochs"):
        TransformerModel.Params(epochs=2, freeze_encoder_epochs=2)


def test_the_ranking_term_rewards_the_right_order_and_ignores_ties():
    targets = torch.tensor([[0.0, 0.5], [0.0, 0.5], [1.0, 0.5]])  # column 1: all tied
    right = torch.tensor([[-2.0, 0.0], [-2.0, 3.0], [2.0, -3.0]])
    wrong = torch.tensor([[2.0, 0.0], [2.0, 3.0], [-2.0, -3.0]])
    assert pairwise_rank_loss(right, targets) < 0.05 < 3.0 < pairwise_rank_loss(wrong, targets)
    tied = torch.full((3, 2), 0.5)
    assert pairwise_rank_loss(right, tied) == 0.0  # no ordered pair: nothing to rank
    assert training_loss(right, targets, 0.0) == training.bce(right, targets)


def test_a_fit_with_the_ranking_loss_runs_and_records_a_larger_loss(tiny_encoder, make_quest):
    frame = make_quest(16)
    plain, ranked = FitLog(), FitLog()
    base = {"encoder": str(tiny_encoder), **TINY, "epochs": 1}
    TransformerModel(base).fit(frame, None, plain)
    TransformerModel({**base, "rank_loss_weight": 0.5}).fit(frame, None, ranked)
    assert ranked.epochs[0]["train_loss"] > plain.epochs[0]["train_loss"]
