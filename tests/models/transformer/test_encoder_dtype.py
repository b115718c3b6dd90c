"""Any local encoder folder trains in fp32, whatever dtype its weights were stored in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from questlab.models import FitLog
from questlab.models.transformer import TransformerModel
from questlab.models.transformer.network import load_encoder

pytest_plugins = ["helpers.transformer"]


def _half_folder(tiny_encoder: Path, tmp_path: Path) -> Path:
    """The tiny encoder re-saved in fp16, as most published checkpoints are."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path / "tiny-fp16"
    AutoModel.from_pretrained(tiny_encoder).half().save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(folder)
    return folder


def test_an_fp16_folder_loads_as_fp32(tiny_encoder, tmp_path):
    from safetensors import safe_open

    folder = _half_folder(tiny_encoder, tmp_path)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:  # the folder really holds fp16
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118 (safe_open is no dict)
    dtypes = {p.dtype for p in load_encoder(folder).parameters()}
    assert dtypes == {torch.float32}


def test_a_training_step_from_an_fp16_folder_runs_in_fp32(tiny_encoder, tmp_path, make_quest):
    folder = _half_folder(tiny_encoder, tmp_path)
    params = {"encoder": str(folder), "max_length": 48, "batch_size": 8, "epochs": 1, "precision": "fp32"}
    model = TransformerModel({**params, "progress": False}).fit(make_quest(16), None, FitLog())
    net = model.networks_["joint"]
    assert {p.dtype for p in net.parameters()} == {torch.float32}
    pred = model.predict(make_quest(8, seed=1))
    assert pred.shape == (8, 30) and torch.isfinite(torch.from_numpy(pred)).all()


def _tiny_mpnet(tiny_encoder: Path, tmp_path: Path) -> Path:
    """A tiny random MPNet (no SDPA attention, no token types) with the tiny encoder's tokenizer."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    config = MPNetConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514,
    )  # fmt: skip
    folder = tmp_path / "tiny-mpnet"
    torch.manual_seed(0)
    MPNetModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_an_architecture_without_sdpa_builds_from_its_config_alone(tiny_encoder, tmp_path):
    # The path a saved fine-tuned model is loaded through (its weights come after): a refused
    # SDPA attempt used to leave "sdpa" in the config it retried with, so MPNet never loaded.
    folder = _tiny_mpnet(tiny_encoder, tmp_path)
    for pretrained in (True, False):
        encoder = load_encoder(folder, pretrained=pretrained)
        assert type(encoder).__name__ == "MPNetModel"
        assert {p.dtype for p in encoder.parameters()} == {torch.float32}


def test_a_fine_tuned_mpnet_saves_and_loads_to_the_same_predictions(tiny_encoder, tmp_path, make_quest):
    folder = _tiny_mpnet(tiny_encoder, tmp_path)
    params = {"encoder": str(folder), "max_length": 48, "batch_size": 8, "epochs": 1, "precision": "fp32"}
    model = TransformerModel({**params, "progress": False}).fit(make_quest(16), None, FitLog())
    rows = make_quest(8, seed=1)
    model.save(tmp_path / "saved")
    restored = TransformerModel.load(tmp_path / "saved")
    assert np.allclose(restored.predict(rows), model.predict(rows), atol=1e-6)


def test_mpnet_attention_through_sdpa_computes_what_its_own_attention_does(tiny_encoder, tmp_path):
    # transformers has no SDPA for MPNet; questlab routes its layers through one. Same outputs and
    # gradients as the library's attention, with padding in the batch (the mask) and in fp32.
    folder = _tiny_mpnet(tiny_encoder, tmp_path)
    fused, plain = load_encoder(folder), load_encoder(folder, sdpa=False)
    assert fused.encoder.layer[0].attention.attn.forward.__func__.__name__ == "_mpnet_sdpa_forward"
    assert "forward" not in vars(plain.encoder.layer[0].attention.attn)
    ids = torch.randint(5, 100, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 9:], mask[2, 4:] = 0, 0
    outs = []
    for net in (fused, plain):
        net.eval()
        out = net(input_ids=ids, attention_mask=mask).last_hidden_state
        (out * mask[..., None]).sum().backward()
        outs.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}))
    (a, grads_a), (b, grads_b) = outs
    assert torch.allclose(a, b, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and any("relative_attention_bias" in n for n in grads_a)
    assert all(torch.allclose(grads_a[n], grads_b[n], atol=1e-4) for n in grads_a)
    # asked for the attention probabilities, the layer falls back to the library's computation
    probs = fused(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert probs is not None and probs[0].shape == (3, 2, 17, 17)
