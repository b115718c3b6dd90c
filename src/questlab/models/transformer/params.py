"""``TransformerParams``: every setting of the transformer family, each written once.

A config's ``model.params`` is checked against these, a saved model's ``model.json`` holds
them, and the training loop reads its knobs from them (``training.TrainSettings`` holds the
params plus the precision chosen for the device), so no field lives in two places.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from questlab.models.base import ModelParams


class TransformerParams(ModelParams):
    """Settings of the transformer family; a config's ``model.params`` is checked against these."""

    encoder: str = "all-MiniLM-L6-v2"  # a known packaged encoder name or a local HF model folder
    mode: Literal["joint", "dual"] = "joint"  # one model for 30 targets, or question + answer models
    dual_answer_targets: Literal["answer", "all"] = "answer"  # dual: the answer model's targets
    max_length: int = Field(512, ge=8, le=4096)  # total token budget, special tokens included
    head_share: float = Field(0.5, ge=0.0, le=1.0)  # of a cut part, the share kept from its start
    pooling: Literal["cls", "mean", "layers", "attention"] = Field(
        "mean", description="how token vectors become one: CLS, mean, learned layer or token weights"
    )  # layers: learned weights over every
    # layer's CLS; attention: learned per-token weights (softmax over the unmasked tokens)
    use_category: bool = True  # learn a category embedding (index 0 = unseen at predict time)
    use_host: bool = True  # learn a host embedding (index 0 = unseen)
    meta_dim: int = Field(16, ge=1)  # size of each category/host embedding
    dropout: float = Field(0.2, ge=0.0, lt=1.0)  # head dropout
    n_dropout_samples: int = Field(5, ge=1)  # multi-sample dropout: masks averaged while training
    epochs: int = Field(3, ge=1, description="passes over the fold's train rows")
    batch_size: int = Field(16, ge=1)  # per process, per micro-batch (CUDA + auto_micro_batch: see there)
    accumulation: int = Field(1, ge=1)  # micro-batches per optimizer step
    auto_micro_batch: bool = True  # CUDA: the largest micro-batch dividing batch_size * accumulation that fits
    freeze_encoder_epochs: int = Field(0, ge=0)  # the first N epochs train the head only (encoder frozen)
    # gradual unfreezing after those: the top k encoder layers train in the next epoch, 2k in the
    # one after, ... the embeddings last (0: every layer from the start)
    unfreeze_layers_per_epoch: int = Field(
        0, ge=0, description="gradual unfreezing: encoder layers added per epoch, from the top (0 = all)"
    )
    rank_loss_weight: float = Field(0.0, ge=0)  # + this x pairwise ranking loss per column (0 = BCE only)
    lr: float = Field(5e-5, gt=0)  # encoder LR (top layer)
    head_lr: float = Field(1e-3, gt=0)  # head, pooling weights, embeddings
    layer_decay: float = Field(1.0, gt=0, le=1.0)  # layer-wise LR decay down the encoder (1 = off)
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)  # share of all steps spent warming up linearly
    max_grad_norm: float = Field(1.0, ge=0)  # gradient clipping (0 = off)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on CPU and on bf16-capable GPUs
    eval_batch_size: int = Field(64, ge=1, description="rows per batch when predicting")
    bucket_factor: int = Field(50, ge=1)  # batches per length-sorted bucket (randomness vs padding)
    pad_to_multiple: int = Field(8, ge=1)  # batch widths rounded up to a multiple (64: 8 shapes up to 512)
    compile: bool = False  # torch.compile the network (pair it with pad_to_multiple: 64)
    select_best_epoch: bool = True  # keep the epoch with the best Spearman on the stopping rows (else the last)
    # The stopping rows. "valid": the fold's valid rows (the original spec): the epoch is picked on
    # the rows that are scored, so CV is optimistic wherever an earlier epoch wins. "holdout": a
    # share of the fold's train questions, held out whole and not trained on; valid is only scored.
    early_stopping: Literal["valid", "holdout"] = Field(
        "valid", description="best epoch chosen on: the scored valid rows (optimistic) or held-out train groups"
    )
    holdout_share: float = Field(0.1, gt=0.0, lt=0.5)  # early_stopping: holdout: share of questions
    seed: int = Field(42, description="seed of weights, shuffling and held-out questions")
    progress: bool = True  # progress bars with ETA (main process only)
    cpu: bool = False  # run on CPU even when a GPU is there
    num_threads: int = Field(0, ge=0)  # torch CPU threads; 0 leaves torch's default
    malloc_tuning: bool = True  # CPU: glibc malloc keeps big blocks, no page faults per step (models/cpu_malloc.py)
    log_every: int = Field(50, ge=1)  # micro-batches between progress-bar loss reads (each read syncs a GPU)
    background_checkpoints: bool = True  # epoch checkpoints written by a thread while training goes on

    @model_validator(mode="after")
    def _encoder_trains(self) -> TransformerParams:
        if self.freeze_encoder_epochs >= self.epochs:
            raise ValueError(
                f"freeze_encoder_epochs ({self.freeze_encoder_epochs}) must be below epochs ({self.epochs}): "
                "the encoder would never be fine-tuned"
            )
        return self
