"""A test model whose fit draws from numpy's global generator, so its outputs depend on the fold seed.

``run_cv`` seeds the global generators with ``seed + fold`` before each fit; a resume that seeded
differently, reused the wrong folds or refitted a kept fold gives other predictions and scores
with this model (TF-IDF, being deterministic, would hide a wrong seed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.models import register
from questlab.models.base import FitLog, Model, ModelParams, to_unit_interval
from questlab.schema import ANSWER, BODY


class SeededLengthParams(ModelParams):
    """Nothing to set: the randomness comes from the run's seed."""


class SeededLength(Model):
    """Per target, a random (seeded) mix of the answer and body lengths, plus the train mean."""

    name = "seeded_length"
    Params = SeededLengthParams

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> SeededLength:
        targets = list(self.task.target_names)  # QUEST's TARGETS unless built with a task
        self.means_ = train[targets].to_numpy(dtype=np.float64).mean(axis=0)
        self.mix_ = np.random.normal(size=(2, len(targets)))  # the global generator run_cv seeded
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        lengths = np.log1p(np.stack([frame[ANSWER].str.len(), frame[BODY].str.len()], axis=1).astype(np.float64))
        return to_unit_interval(self.means_ + 0.1 * lengths @ self.mix_)

    def _save_state(self, folder: Path) -> None:
        (folder / "state.json").write_text(json.dumps({"means": self.means_.tolist(), "mix": self.mix_.tolist()}))

    def _load_state(self, folder: Path) -> None:
        state = json.loads((folder / "state.json").read_text())
        self.means_, self.mix_ = np.array(state["means"]), np.array(state["mix"])


register("seeded_length", "helpers.seeded_model:SeededLength")
