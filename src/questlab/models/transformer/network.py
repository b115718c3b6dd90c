"""The network: a pretrained encoder, a pooling choice, optional category/host embeddings, a head.

The head returns logits; a sigmoid turns them into the 0..1 ratings (trained with BCE on the
soft targets). Multi-sample dropout averages the head over several dropout masks while
training, which steadies the gradient of a small head on a small data set.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import types
from collections import Counter
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import AutoConfig, AutoModel

from questlab.console import silence_third_party

Pooling = Literal["cls", "mean", "layers", "attention"]
POOLINGS: tuple[str, ...] = ("cls", "mean", "layers", "attention")
logger = logging.getLogger(__name__)
# transformers 5 names the load dtype ``dtype``; 4.x ``torch_dtype``.
_DTYPE_KW = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"


def build_vocab(values: list[str], min_count: int = 1) -> dict[str, int]:
    """Map each value seen at least ``min_count`` times (in TRAIN only) to an index from 1.

    Index 0 is "unknown": a category or host first seen at predict time gets it instead of a crash.
    """
    counts = Counter(values)
    return {v: i + 1 for i, v in enumerate(sorted(v for v, c in counts.items() if c >= min_count))}


def lookup(vocab: dict[str, int], values: list[str]) -> list[int]:
    """Indices of ``values`` in ``vocab``; unseen values map to 0 (unknown)."""
    return [vocab.get(v, 0) for v in values]


def load_encoder(folder: Path | str, pretrained: bool = True, sdpa: bool = True) -> nn.Module:
    """The encoder without its pooler (unused here, and unused weights break DDP), in fp32.

    Weights load as float32 whatever dtype the folder stores (transformers 5 keeps the stored
    one: an fp16 folder would otherwise give fp16 weights that AdamW updates in half precision;
    bf16 autocast does the fast part). PyTorch's SDPA attention where the architecture has it
    (BERT does); MPNet has none in transformers, so its attention layers are given one here
    (``sdpa_mpnet_attention``; ``sdpa=False`` keeps the default, for comparison).
    ``pretrained=False`` builds the architecture from ``config.json`` only: ``load`` then fills
    in the fine-tuned weights.
    """
    silence_third_party()  # no LOAD REPORT for the pooler left out on purpose (--verbose keeps it)
    for attention in ("sdpa", None):
        # a fresh config per attempt: a refused SDPA attempt leaves "sdpa" written into the one it got
        config = AutoConfig.from_pretrained(folder)
        kwargs: dict = {_DTYPE_KW: torch.float32, **({"attn_implementation": attention} if attention and sdpa else {})}
        for pooler in ({"add_pooling_layer": False}, {}):  # architectures without a pooler refuse the flag
            try:
                if pretrained:
                    model = AutoModel.from_pretrained(folder, **pooler, **kwargs)
                else:
                    model = AutoModel.from_config(config, **pooler, **kwargs)
                if sdpa and attention is None:
                    sdpa_mpnet_attention(model)
                return model.float()  # modules a folder leaves out still follow the default dtype
            except TypeError:
                continue
            except ValueError as exc:  # this architecture has no SDPA: default attention
                if attention is None:
                    raise
                logger.info("%s: no SDPA attention (%s); using the default", folder, str(exc).splitlines()[0])
                break
    raise TypeError(f"cannot build an encoder from {folder}")


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


def sdpa_mpnet_attention(encoder: nn.Module) -> int:
    """Route every MPNet self-attention layer of ``encoder`` through SDPA; the number of layers changed.

    transformers has no SDPA for MPNet (as of 5.x); its eager attention writes the full score
    tensor several times per layer. Other architectures, and MPNet versions whose attention
    takes other arguments than this was written for, are left as they are (0).
    """
    changed = 0
    for module in encoder.modules():
        cls = type(module)
        if cls.__name__ != "MPNetSelfAttention":
            continue
        params = list(inspect.signature(cls.forward).parameters)[:5]
        if params != ["self", "hidden_states", "attention_mask", "position_bias", "output_attentions"]:
            logger.info("MPNet attention takes %s: left on its default attention", params)
            return 0
        module.forward = types.MethodType(_mpnet_sdpa_forward, module)
        changed += 1
    return changed


class QuestNet(nn.Module):
    """Encoder + pooling + [category, host embeddings] + multi-sample-dropout linear head."""

    def __init__(
        self,
        encoder: nn.Module,
        n_out: int,
        pooling: Pooling = "mean",
        n_categories: int = 0,
        n_hosts: int = 0,
        meta_dim: int = 16,
        dropout: float = 0.2,
        n_dropout_samples: int = 5,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        self.encoder, self.pooling, self.n_dropout_samples = encoder, pooling, n_dropout_samples
        hidden = encoder.config.hidden_size
        # Some encoders (MPNet, RoBERTa-like) have no token-type embeddings worth using.
        self.uses_token_types = getattr(encoder.config, "type_vocab_size", 1) >= 2
        if pooling == "layers":  # one learned weight per hidden state (embeddings + each layer)
            self.layer_weights = nn.Parameter(torch.zeros(encoder.config.num_hidden_layers + 1))
        if pooling == "attention":  # one learned score per token, softmax over the unmasked ones
            self.token_score = nn.Linear(hidden, 1)
        self.freeze_encoder = False  # set by the loop: encoder forward without gradients (head warm-up)
        # +1: index 0 is "unknown"; a zero count disables the embedding.
        self.category_emb = nn.Embedding(n_categories + 1, meta_dim) if n_categories else None
        self.host_emb = nn.Embedding(n_hosts + 1, meta_dim) if n_hosts else None
        n_meta = meta_dim * ((n_categories > 0) + (n_hosts > 0))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + n_meta, n_out)

    def pool(self, out, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return out.last_hidden_state[:, 0]
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(out.last_hidden_state.dtype)
            return (out.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.pooling == "attention":
            hidden = out.last_hidden_state
            scores = self.token_score(hidden).squeeze(-1).float()
            scores = scores.masked_fill(attention_mask == 0, torch.finfo(scores.dtype).min)
            weights = torch.softmax(scores, dim=1).to(hidden.dtype)
            return (weights.unsqueeze(-1) * hidden).sum(1)
        weights = torch.softmax(self.layer_weights, dim=0)
        stacked = torch.stack([h[:, 0] for h in out.hidden_states], dim=0)  # (layers, batch, hidden)
        return (weights[:, None, None] * stacked).sum(0)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        category: torch.Tensor | None = None,
        host: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if self.uses_token_types and token_type_ids is not None else {}
        with torch.no_grad() if self.freeze_encoder else contextlib.nullcontext():
            out = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=self.pooling == "layers",
                **kwargs,
            )
        features = [self.pool(out, attention_mask)]
        if self.category_emb is not None:
            features.append(self.category_emb(category))
        if self.host_emb is not None:
            features.append(self.host_emb(host))
        # The head runs in fp32 even under bf16 autocast: bf16 logits (8 bits of mantissa) tie many
        # rows, and ties cost Spearman on targets whose predictions vary little.
        x = torch.cat([f.float() for f in features], dim=-1)
        with torch.autocast(device_type=x.device.type, enabled=False):
            if not self.training or self.n_dropout_samples <= 1:
                return self.head(self.dropout(x))
            return torch.stack([self.head(self.dropout(x)) for _ in range(self.n_dropout_samples)]).mean(0)
