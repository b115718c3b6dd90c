"""What the loop optimises and with what: losses, AdamW groups, and the micro-batch a GPU can hold.

- ``bce`` on the soft targets, optionally plus ``pairwise_rank_loss``: the metric is a per-column
  Spearman, and on the imbalanced columns (most rows share one value) BCE is mostly satisfied by
  predicting the common value; the ranking term rewards ordering the rare rows right instead.
- ``param_groups``: a higher LR for the head than for the encoder, decayed layer by layer down the
  encoder (layer-wise LR decay), no weight decay on biases and norms.
- ``make_optimizer``: torch's fused AdamW kernel on CUDA (one launch for all parameters).
- ``largest_fitting_micro_batch``: on CUDA, the largest micro-batch that divides the effective
  batch and fits in memory, the rest made up by gradient accumulation.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import torch
from torch import nn

from questlab.models.transformer.params import TransformerParams

logger = logging.getLogger(__name__)


def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE on soft targets, in fp32 whatever the autocast dtype."""
    return nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.float())


def pairwise_rank_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss over the within-batch pairs each column orders (``t_i > t_j``).

    Per column, every pair of rows whose targets differ should have its logits in the same order;
    pairs with equal targets carry no ranking information and are left out. No boolean indexing,
    so no host synchronisation: the pairs are weighted by a 0/1 mask.
    """
    s, t = logits.float(), targets.float()
    ordered = (t.unsqueeze(1) - t.unsqueeze(0) > 0).float()  # (batch, batch, columns): i above j
    margin = s.unsqueeze(1) - s.unsqueeze(0)
    return (nn.functional.softplus(-margin) * ordered).sum() / ordered.sum().clamp(min=1.0)


def training_loss(logits: torch.Tensor, targets: torch.Tensor, rank_weight: float = 0.0) -> torch.Tensor:
    """BCE, plus ``rank_weight`` times the pairwise ranking term when it is on."""
    loss = bce(logits, targets)
    return loss + rank_weight * pairwise_rank_loss(logits, targets) if rank_weight > 0 else loss


def layer_depth(name: str, n_layers: int) -> int:
    """Depth of an encoder parameter: 0 for embeddings, i+1 for layer i, n_layers for the rest."""
    if ".embeddings." in f".{name}":
        return 0
    found = re.search(r"\.layer\.(\d+)\.", name)
    return int(found.group(1)) + 1 if found else n_layers


def unfreeze_top_layers(net: nn.Module, epoch: int, s: TransformerParams) -> int:
    """Gradual unfreezing, top down: set which encoder parameters train in ``epoch`` (0-based).

    With ``s.unfreeze_layers_per_epoch`` k > 0, the first training epoch after the head-only ones
    (``s.freeze_encoder_epochs``) trains the top k encoder layers, the next the top 2k, and so on;
    the embeddings (depth 0) come last. The head, pooling and meta embeddings always train. The
    others get ``requires_grad=False``: no gradient, so AdamW leaves them exactly as they are
    (no weight decay either). Returns the number of encoder layers training (all: k = 0).
    """
    n_layers = net.encoder.config.num_hidden_layers
    k = s.unfreeze_layers_per_epoch
    top = n_layers + 1 if k == 0 else k * (epoch - s.freeze_encoder_epochs + 1)
    for name, p in net.encoder.named_parameters():
        p.requires_grad_(layer_depth(name, n_layers) > n_layers - top)
    return min(top, n_layers)


def param_groups(net: nn.Module, s: TransformerParams) -> list[dict]:
    """AdamW groups: encoder LR decayed layer by layer, the head at ``head_lr``, no decay on 1-D weights.

    Reads ``s.lr``, ``s.head_lr``, ``s.layer_decay`` and ``s.weight_decay`` (the model's params).
    """
    n_layers = net.encoder.config.num_hidden_layers
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder."):
            lr = s.lr * s.layer_decay ** (n_layers - layer_depth(name[len("encoder.") :], n_layers))
        else:
            lr = s.head_lr
        wd = 0.0 if p.ndim < 2 else s.weight_decay  # biases and norms: no weight decay
        groups.setdefault((lr, wd), []).append(p)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def make_optimizer(net: nn.Module, s: TransformerParams, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over ``param_groups``; fused into one kernel on CUDA (not offered on CPU here)."""
    fused = device.type == "cuda"
    return torch.optim.AdamW(param_groups(net, s), fused=fused or None)


def largest_fitting_micro_batch(effective: int, fits: Callable[[int], bool]) -> int:
    """The largest divisor of ``effective`` for which ``fits(size)`` holds (1 if none is tried true).

    Divisors are tried from the largest down, so the effective batch (micro-batch x accumulation)
    stays exactly what the config asks for.
    """
    for size in sorted((d for d in range(1, effective + 1) if effective % d == 0), reverse=True):
        if size == 1 or fits(size):
            return size
    return 1


def cuda_fits(net: nn.Module, forward: Callable, max_length: int, device: torch.device, bf16: bool) -> Callable:
    """A probe for ``largest_fitting_micro_batch``: one forward + backward of ``size`` full-length rows.

    Runs under ``fork_rng`` (the probe's dropout draws leave the training RNG untouched) and
    leaves no gradients behind; an out-of-memory error means "does not fit".
    """

    def fits(size: int) -> bool:
        ids = torch.full((size, max_length), 100, dtype=torch.long, device=device)
        batch = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "token_type_ids": torch.zeros_like(ids),
            "category": torch.zeros(size, dtype=torch.long, device=device),
            "host": torch.zeros(size, dtype=torch.long, device=device),
        }
        torch.cuda.reset_peak_memory_stats(device)
        try:
            with (
                torch.random.fork_rng(devices=[device]),
                torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=bf16),
            ):
                forward(net, batch).float().sum().backward()
            # AdamW's two fp32 moments are not allocated yet: leave room for them, and 10% spare.
            moments = 2 * sum(p.numel() * 4 for p in net.parameters() if p.requires_grad)
            total = torch.cuda.get_device_properties(device).total_memory
            ok = torch.cuda.max_memory_allocated(device) + moments < 0.9 * total
        except torch.OutOfMemoryError:
            ok = False
        net.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        logger.info("micro-batch probe: %d rows of %d tokens %s", size, max_length, "fit" if ok else "do not fit")
        return ok

    return fits
