"""The 0.9.0 import path of the Spearman score (``questlab.metric``): now ``questlab.metrics``."""

import numpy as np

from questlab.metrics.base import CONSTANT_PREDICTION, CONSTANT_TRUTH, OK, CVScore
from questlab.metrics.spearman import (
    SPEARMAN,
    bootstrap_fold_means,
    bootstrap_paired,
    bootstrap_scores,
    bootstrap_target_scores,
    constant_in_every_fold,
    fold_mean_score,
    is_constant,
    mean_spearman,
    spearman_per_target,
    without_fold_offsets,
)


def score_cv(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    folds: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    targets: tuple[str, ...] | None = None,
) -> CVScore:
    """Mean-Spearman CV score with 0.9.0's signature; ``targets`` default to QUEST's 30."""
    if targets is None:
        from questlab.schema import TARGETS

        targets = TARGETS
    return SPEARMAN.score_cv(y_true, y_pred, folds, groups, targets, n_boot=n_boot, seed=seed)


__all__ = [
    "CONSTANT_PREDICTION",
    "CONSTANT_TRUTH",
    "OK",
    "CVScore",
    "bootstrap_fold_means",
    "bootstrap_paired",
    "bootstrap_scores",
    "bootstrap_target_scores",
    "constant_in_every_fold",
    "fold_mean_score",
    "is_constant",
    "mean_spearman",
    "score_cv",
    "spearman_per_target",
    "without_fold_offsets",
]
