"""The metrics a task can name: each knows its direction, its undefined cases and its interval.

``get_metric("spearman")`` returns a :class:`Metric`. Callers never ask which metric they hold:
they ask it for a score, per-target values with a status each, bootstrap resamples, and which of
two scores is better (``metric.gain(new, old)`` is positive when ``new`` is better, whichever way
the metric points). ``spearman`` is QUEST's (mean column-wise, higher is better); ``mcrmse`` (mean
column-wise RMSE) and ``rmse`` (one target) are lower-is-better.
"""

from __future__ import annotations

from questlab.metrics.base import Metric
from questlab.metrics.errors import MCRMSE, RMSE
from questlab.metrics.spearman import SPEARMAN

METRICS: dict[str, Metric] = {m.name: m for m in (SPEARMAN, MCRMSE, RMSE)}


def get_metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}: one of {', '.join(METRICS)}") from None


__all__ = ["METRICS", "Metric", "get_metric"]
