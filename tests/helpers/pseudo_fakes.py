"""Test doubles for pseudo-labels: a teacher whose labels say which rows it was kept from, and a
student that records every label it is given.

``FoldMarker`` predicts one value everywhere: the smallest ``qa_id`` of the valid rows it was kept
from, over 1e6. Its folds' valid rows are disjoint, so each fold model's marker is distinct, and a
label equal to fold k's marker can only come from the model that never saw fold k's valid rows.

``LabelRecorder`` writes into its fit log every train row it got (``qa_id`` -> its first target)
and the ids of its valid rows, then predicts a fixed, row-dependent pattern (never constant).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.folds import pseudo_rows
from questlab.models import register
from questlab.models.base import FitLog, Model, ModelParams, to_unit_interval
from questlab.schema import ID, TARGETS

MARKER_SCALE = 1e6  # QUEST qa_ids are below it: every marker lies in [0, 1)


class FoldMarkerParams(ModelParams):
    pass


class FoldMarker(Model):
    name = "fold_marker"
    Params = FoldMarkerParams

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> FoldMarker:
        self.marker_ = float(valid[ID].min()) / MARKER_SCALE if valid is not None and len(valid) else 0.0
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        return np.full((len(frame), len(TARGETS)), self.marker_)

    def _save_state(self, folder: Path) -> None:
        (folder / "state.json").write_text(json.dumps({"marker": self.marker_}))

    def _load_state(self, folder: Path) -> None:
        self.marker_ = json.loads((folder / "state.json").read_text())["marker"]


class LabelRecorderParams(ModelParams):
    pass


class LabelRecorder(Model):
    name = "label_recorder"
    Params = LabelRecorderParams

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame | None, log: FitLog) -> LabelRecorder:
        log.info["train_labels"] = {str(i): float(v) for i, v in zip(train[ID], train[TARGETS[0]], strict=True)}
        log.info["valid_ids"] = [int(i) for i in valid[ID]] if valid is not None else []
        log.info["marked_pseudo"] = [int(i) for i in train.loc[pseudo_rows(train), ID]]
        self.fitted_ = True
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.check_fitted()
        ids = frame[ID].to_numpy(np.float64)[:, None]
        return to_unit_interval(np.sin(ids * np.arange(1, len(TARGETS) + 1)))

    def _save_state(self, folder: Path) -> None:
        (folder / "state.json").write_text("{}")

    def _load_state(self, folder: Path) -> None:
        pass


register("fold_marker", "helpers.pseudo_fakes:FoldMarker")
register("label_recorder", "helpers.pseudo_fakes:LabelRecorder")
