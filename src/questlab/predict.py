"""Predictions for new pairs from a recorded run: the mean of its stored fold models.

Nothing is refitted. The same function serves batch files (``questlab predict``) and the HTTP
server (``questlab serve``); ensemble runs are delegated to ``questlab.ensemble``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.data import load_test
from questlab.models import Model
from questlab.runs import fold_is_done, predictions_frame
from questlab.store import Store


class RunPredictor:
    """Loads a run's fold models once; ``predict(frame)`` averages them and clips to [0, 1]."""

    def __init__(self, store: Store, run_id: str) -> None:
        record = store.get(run_id)
        self.run_id, self.kind = record.run_id, record.kind
        if self.kind == "ensemble":
            from questlab.ensemble import EnsemblePredictor

            self._delegate = EnsemblePredictor(store, record)
            return
        self._delegate = None
        meta = json.loads((record.dir / "run.json").read_text())
        fold_dirs = [record.dir / "folds" / f"fold_{k}" for k in meta["folds_selected"]]
        missing = [d.name for d in fold_dirs if not fold_is_done(d)]
        if missing:
            raise RuntimeError(
                f"run {record.run_id} lacks finished fold models ({', '.join(missing)}): it cannot predict"
            )
        self.models: list[Model] = [Model.load(d / "model") for d in fold_dirs]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if self._delegate is not None:
            return self._delegate.predict(frame)
        preds = [m.predict(frame) for m in self.models]
        return np.clip(np.mean(preds, axis=0), 0.0, 1.0)


def predict_file(store: Store, run_id: str, input_path: Path, output_path: Path) -> pd.DataFrame:
    """Validate ``input_path`` (a test-format CSV), predict, write qa_id + 30 targets to ``output_path``."""
    frame = load_test(input_path)
    predictor = RunPredictor(store, run_id)
    out = predictions_frame(frame["qa_id"], predictor.predict(frame))
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(output_path, index=False)
    return out
