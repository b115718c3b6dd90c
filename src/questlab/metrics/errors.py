"""Error metrics, lower is better: MCRMSE (mean column-wise RMSE) and RMSE (one target).

Unlike a rank correlation, an error is defined for a constant prediction (it is merely weak), so
every target always has a value; rows resample by group, as for any metric.
"""

from __future__ import annotations

import numpy as np

from questlab.metrics.base import OK, Metric, as_2d, group_weights


def rmse_per_target(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Root mean squared error per column."""
    y_true, y_pred = as_2d(y_true, y_pred)
    return np.sqrt(np.mean((y_pred - y_true) ** 2, axis=0))


class MCRMSEMetric(Metric):
    """Mean over the targets of each target's RMSE; lower is better."""

    name = "mcrmse"
    higher_is_better = False
    column = "rmse"
    rank_based = False

    def per_target(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
        values = rmse_per_target(y_true, y_pred)
        return values, [OK] * len(values)

    def combine(self, values: np.ndarray) -> float:
        values = np.asarray(values, dtype=np.float64)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    def bootstrap_targets(
        self, y_true: np.ndarray, y_preds: list[np.ndarray], groups: np.ndarray, n_boot: int = 1000, seed: int = 0
    ) -> list[np.ndarray]:
        checked = [as_2d(y_true, p) for p in y_preds]
        weights = np.array(list(group_weights(groups, n_boot, seed)))  # (n_boot, n_rows)
        totals = weights.sum(axis=1, keepdims=True)
        return [np.sqrt(weights @ ((p - t) ** 2) / totals) for t, p in checked]


class RMSEMetric(MCRMSEMetric):
    """RMSE of a task with one target; lower is better."""

    name = "rmse"

    def per_target(self, y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, list[str]]:
        values, status = super().per_target(y_true, y_pred)
        if len(values) != 1:
            raise ValueError(f"rmse scores one target, got {len(values)}: use mcrmse for several")
        return values, status


MCRMSE = MCRMSEMetric()
RMSE = RMSEMetric()
