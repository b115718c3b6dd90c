"""MPNet self-attention through SDPA: the mask made once per forward is never reused for another mask."""

from __future__ import annotations

import copy

import torch

from questlab.models.mpnet_attention import sdpa_mpnet_attention


def test_a_layer_given_the_same_bias_with_another_mask_uses_that_mask():
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    torch.manual_seed(0)
    plain = MPNetModel(config, add_pooling_layer=False).eval()
    fused = copy.deepcopy(plain)
    assert sdpa_mpnet_attention(fused) == 1
    layer_plain, layer_fused = plain.encoder.layer[0].attention.attn, fused.encoder.layer[0].attention.attn
    hidden = torch.randn(2, 5, 16)
    bias = plain.encoder.compute_position_bias(hidden)
    with torch.no_grad():  # the path that keeps the sum on the bias tensor
        for keep in (5, 2, 5):  # the same bias object each time, a new mask object each time
            mask = torch.zeros(2, 1, 1, 5)
            mask[1, ..., keep:] = torch.finfo(torch.float32).min
            got = layer_fused(hidden, mask, bias)[0]
            want = layer_plain(hidden, mask, bias)[0]
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
