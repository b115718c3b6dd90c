"""Runs of runs: ensembles and post-processing, fitted on out-of-fold predictions and measured nested.

``combine`` holds the maths (weights on the simplex, rank averaging, the nested fit), ``stack``
the per-target ridge meta-model, ``question_share`` the sharing of question predictions over a
question's answers, ``postprocess`` the per-target level maps, ``report`` the typed report of
what combining gained. The recorded runs they make are :mod:`questlab.ensemble_runs`' (above the
run writer); the maths here records nothing, so predictors use it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from questlab.ensemble.combine import (
        Combiner,
        EnsembleSpec,
        NestedResult,
        fit_combiner,
        fit_weights,
        nested_fit,
        simplex_grid,
        to_quantiles,
    )
    from questlab.ensemble.gains import fold_mean_summary, gain_summary
    from questlab.ensemble.question_share import QuestionShare, fit_question_share
    from questlab.ensemble.report import EnsembleReport
    from questlab.ensemble.stack import Stacker, fit_stacker

# Loaded on first use (PEP 562): ``combine`` imports scipy.stats (~0.7 s), which reading a run's
# ensemble report (``questlab.ensemble.report``, e.g. from ``questlab runs``) does not need.
_HOME = {
    **dict.fromkeys(
        [
            "Combiner",
            "EnsembleSpec",
            "NestedResult",
            "fit_combiner",
            "fit_weights",
            "nested_fit",
            "simplex_grid",
            "to_quantiles",
        ],
        "combine",
    ),
    "fold_mean_summary": "gains",
    "gain_summary": "gains",
    "QuestionShare": "question_share",
    "fit_question_share": "question_share",
    "EnsembleReport": "report",
    "Stacker": "stack",
    "fit_stacker": "stack",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f"questlab.ensemble.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Combiner",
    "EnsembleReport",
    "EnsembleSpec",
    "NestedResult",
    "QuestionShare",
    "Stacker",
    "fit_combiner",
    "fit_question_share",
    "fit_stacker",
    "fit_weights",
    "fold_mean_summary",
    "gain_summary",
    "nested_fit",
    "simplex_grid",
    "to_quantiles",
]
