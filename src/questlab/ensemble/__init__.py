"""Runs of runs: ensembles and post-processing, fitted on out-of-fold predictions and measured nested.

``combine`` holds the maths (weights on the simplex, rank averaging, the nested fit),
``postprocess`` the per-target level maps, ``build`` the recorded runs they make.
"""

from questlab.ensemble.build import Member, build_ensemble, check_members, load_member, postprocess_run
from questlab.ensemble.combine import (
    Combiner,
    EnsembleSpec,
    NestedResult,
    fit_combiner,
    fit_weights,
    gain_summary,
    nested_fit,
    simplex_grid,
    to_quantiles,
)

__all__ = [
    "Combiner",
    "EnsembleSpec",
    "Member",
    "NestedResult",
    "build_ensemble",
    "check_members",
    "fit_combiner",
    "fit_weights",
    "gain_summary",
    "load_member",
    "nested_fit",
    "postprocess_run",
    "simplex_grid",
    "to_quantiles",
]
