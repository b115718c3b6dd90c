"""A test model that takes the time it is told to: seconds per train row, optionally only inside CV.

``seconds_per_row`` sleeps in every fit (so a recipe's probe measures it); ``hidden_fold_s`` sleeps
only when the fit has validation rows (a CV fold, not a probe), so the plan underestimates it and
the runner's guard has to stop the member. Predictions are :class:`SeededLength`'s.
"""

from __future__ import annotations

import time

import pandas as pd
from pydantic import Field

from helpers.seeded_model import SeededLength
from questlab.models import register
from questlab.models.base import FitLog, ModelParams


class SlowParams(ModelParams):
    """How slow: per train row, and per CV fold where probes cannot see it."""

    seconds_per_row: float = Field(0.0, description="seconds slept per train row in every fit")
    hidden_fold_s: float = Field(0.0, description="seconds slept per CV fold only (probes cannot see it)")


class Slow(SeededLength):
    """:class:`SeededLength` that sleeps as its params say."""

    name = "slow"
    Params = SlowParams

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> Slow:
        time.sleep(self.params.seconds_per_row * len(train) + (self.params.hidden_fold_s if valid is not None else 0))
        super().fit(train, valid, log)
        return self


register("slow", "helpers.slow_model:Slow")
