"""The floor: predict each target's train mean for every row.

Every column it predicts is constant, so its Spearman is undefined; it exists so the metric and
``diagnose`` prove they report "constant prediction" instead of a silent 0 or a skipped NaN.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.models.base import FitLog, Model, ModelParams


class MeanParams(ModelParams):
    """The mean model has nothing to set."""


class MeanModel(Model):
    """Predicts the train mean of each target."""

    name = "mean"
    Params = MeanParams

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> MeanModel:
        self.means_ = train[list(self.task.target_names)].to_numpy(dtype=np.float64).mean(axis=0)
        log.info["fit"] = "train means; no epochs"
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        return np.tile(self.means_, (len(frame), 1))

    def _save_state(self, folder: Path) -> None:
        (folder / "means.json").write_text(
            json.dumps(dict(zip(self.task.target_names, self.means_.tolist(), strict=True)))
        )

    def _load_state(self, folder: Path) -> None:
        means = json.loads((folder / "means.json").read_text())
        self.means_ = np.array([means[t] for t in self.task.target_names], dtype=np.float64)
