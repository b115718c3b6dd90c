"""Runs of runs: ensembles and post-processing, fitted on out-of-fold predictions and measured nested.

``combine`` holds the maths (weights on the simplex, rank averaging, the nested fit), ``stack``
the per-target ridge meta-model, ``question_share`` the sharing of question predictions over a
question's answers, ``postprocess`` the per-target level maps, ``build`` the recorded runs they make.

The maths imports nothing that records runs: ``build``'s names load on first use, so a
predictor (which needs only the maths) does not pull in the run writer.
"""

from typing import Any

from questlab.ensemble.combine import (
    Combiner,
    EnsembleSpec,
    NestedResult,
    fit_combiner,
    fit_weights,
    fold_mean_summary,
    gain_summary,
    nested_fit,
    simplex_grid,
    to_quantiles,
)
from questlab.ensemble.question_share import QuestionShare, fit_question_share
from questlab.ensemble.stack import Stacker, fit_stacker

__all__ = [
    "Combiner",
    "EnsembleSpec",
    "Member",
    "NestedResult",
    "QuestionShare",
    "Stacker",
    "build_ensemble",
    "check_members",
    "fit_combiner",
    "fit_question_share",
    "fit_stacker",
    "fit_weights",
    "fold_mean_summary",
    "gain_summary",
    "load_member",
    "nested_fit",
    "postprocess_run",
    "simplex_grid",
    "to_quantiles",
]

_BUILD_NAMES = ("Member", "build_ensemble", "check_members", "load_member", "postprocess_run")


def __getattr__(name: str) -> Any:
    if name in _BUILD_NAMES:
        from questlab.ensemble import build

        return getattr(build, name)
    raise AttributeError(f"module 'questlab.ensemble' has no attribute {name!r}")
