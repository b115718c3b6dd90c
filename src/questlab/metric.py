"""The 0.9.0 import path of the Spearman score (``questlab.metric``): now ``questlab.metrics``."""

from questlab.metrics.base import CONSTANT_PREDICTION, CONSTANT_TRUTH, OK, CVScore
from questlab.metrics.spearman import (
    bootstrap_fold_means,
    bootstrap_paired,
    bootstrap_scores,
    bootstrap_target_scores,
    constant_in_every_fold,
    fold_mean_score,
    is_constant,
    mean_spearman,
    score_cv,
    spearman_per_target,
    without_fold_offsets,
)

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
