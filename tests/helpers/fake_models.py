"""Test doubles: models whose failures are known in advance, so diagnose can be checked against them.

``NoisyOracle`` predicts the true ratings plus seeded noise when a frame carries them (the valid
rows do) and the train means otherwise. Its params produce the failures of the seed's "BERT
baseline": one fold predicting constants, training stopped while the valid score still rose,
over-fitting, and token budgets that cut the texts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.models.base import FitLog, Model, ModelParams, to_unit_interval
from questlab.schema import ANSWER, BODY, ID, TARGETS, TITLE


class NoisyOracleParams(ModelParams):
    noise: float = 0.3  # std of the noise added to the truth at the final epoch
    constant_if_valid_has: int | None = None  # qa_id: the fold whose valid rows hold it predicts constants
    fail_if_valid_has: int | None = None  # qa_id: the fold whose valid rows hold it raises (a crashed run)
    epochs: int = 0  # > 0: log this many epochs of a learning curve (noise shrinking with each epoch)
    overfit_after: int | None = None  # from this epoch on, valid noise grows while train noise keeps shrinking
    token_budget: int | None = None  # record truncation of title/body/answer at this many (word) tokens


def _noise(ids: np.ndarray) -> np.ndarray:
    table = np.random.default_rng(0).normal(size=(20_000, len(TARGETS)))
    return table[np.asarray(ids) % len(table)]


class NoisyOracle(Model):
    name = "noisy_oracle"
    Params = NoisyOracleParams

    def _valid_noise(self, epoch: int) -> float:
        p = self.params
        if p.overfit_after is not None and epoch > p.overfit_after:
            return p.noise * 4 / p.overfit_after * (1 + 0.5 * (epoch - p.overfit_after))
        return p.noise * 4 / epoch if p.epochs else p.noise

    def _scores(self, frame: pd.DataFrame, noise: float) -> np.ndarray:
        return frame[list(TARGETS)].to_numpy(dtype=np.float64) + noise * _noise(frame[ID].to_numpy())

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> NoisyOracle:
        from questlab.metric import mean_spearman

        p = self.params
        self.means_ = train[list(TARGETS)].to_numpy(dtype=np.float64).mean(axis=0)
        self.constant_ = valid is not None and p.constant_if_valid_has in set(valid[ID])
        if valid is not None and p.fail_if_valid_has in set(valid[ID]):
            raise RuntimeError("out of memory (simulated)")
        self.noise_ = p.noise
        for epoch in range(1, p.epochs + 1):
            self.noise_ = self._valid_noise(epoch)
            train_truth = train[list(TARGETS)].to_numpy(dtype=np.float64)
            log.log_epoch(
                epoch=epoch,
                train_loss=float(np.mean((self._scores(train, p.noise * 4 / epoch) - train_truth) ** 2)),
                train_score=mean_spearman(train_truth, self._scores(train, p.noise * 4 / epoch)),
                valid_score=mean_spearman(valid[list(TARGETS)].to_numpy(), self._scores(valid, self.noise_)),
            )
        if p.token_budget:
            for part in (TITLE, BODY, ANSWER):
                n = train[part].str.split().str.len().to_numpy()
                log.record_truncation(part, n, np.minimum(n, p.token_budget))
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        if self.constant_ or not set(TARGETS) <= set(frame.columns):
            return np.tile(self.means_, (len(frame), 1))
        return to_unit_interval(self._scores(frame, self.noise_))

    def _save_state(self, folder: Path) -> None:
        state = {"means": self.means_.tolist(), "constant": self.constant_, "noise": self.noise_}
        (folder / "state.json").write_text(json.dumps(state))

    def _load_state(self, folder: Path) -> None:
        state = json.loads((folder / "state.json").read_text())
        self.means_, self.constant_, self.noise_ = np.array(state["means"]), state["constant"], state["noise"]
