"""MPNet's self-attention through PyTorch's fused SDPA, for the fine-tuned and the frozen encoder.

transformers has no SDPA for MPNet (as of 5.x): its eager attention writes the (batch, heads,
length, length) scores several times per layer (scale, add the relative position bias, add the
mask, softmax, cast). Routing each layer through ``F.scaled_dot_product_attention``, with bias
plus mask as the additive mask, computes the same thing in fused kernels: on an H100 training
step 288 -> 406 seq/s (docs/transformer.md); frozen MPNet embedding on 2 CPU cores: see
docs/embedding.md. Same outputs up to float rounding (tests: 1e-5 in fp32).
"""

from __future__ import annotations

import inspect
import logging
import types

import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)
_SIGNATURE = ["self", "hidden_states", "attention_mask", "position_bias", "output_attentions"]


def _mpnet_sdpa_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kw):
    """MPNetSelfAttention.forward through ``F.scaled_dot_product_attention``: the same sum (scaled
    scores + relative position bias + padding mask), softmax, dropout and values, in fused
    kernels instead of a (batch, heads, length, length) tensor per step."""
    if output_attentions:  # the probabilities are asked for: only the original computes them
        return type(self).forward(self, hidden_states, attention_mask, position_bias, output_attentions, **kw)
    shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
    bias = position_bias
    if attention_mask is not None:
        bias = attention_mask if bias is None else bias + attention_mask
    context = F.scaled_dot_product_attention(
        q, k, v,
        attn_mask=None if bias is None else bias.to(q.dtype),  # SDPA wants the query's dtype (bf16 under autocast)
        dropout_p=self.dropout.p if self.training else 0.0,
    )  # fmt: skip
    return (self.o(context.transpose(1, 2).reshape(*hidden_states.shape[:-1], self.all_head_size)),)


def mpnet_sdpa_supported() -> bool:
    """Whether this transformers' MPNet attention takes the arguments the SDPA forward was written for."""
    try:
        from transformers.models.mpnet.modeling_mpnet import MPNetSelfAttention
    except ImportError:
        return False
    return list(inspect.signature(MPNetSelfAttention.forward).parameters)[:5] == _SIGNATURE


def sdpa_mpnet_attention(encoder: nn.Module) -> int:
    """Route every MPNet self-attention layer of ``encoder`` through SDPA; the number of layers changed.

    Other architectures, and MPNet versions whose attention takes other arguments than this was
    written for, are left as they are (0).
    """
    changed = 0
    for module in encoder.modules():
        cls = type(module)
        if cls.__name__ != "MPNetSelfAttention":
            continue
        params = list(inspect.signature(cls.forward).parameters)[:5]
        if params != _SIGNATURE:
            logger.info("MPNet attention takes %s: left on its default attention", params)
            return 0
        module.forward = types.MethodType(_mpnet_sdpa_forward, module)
        changed += 1
    return changed
