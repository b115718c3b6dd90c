"""Predictions for new pairs: every predictor behind one small interface, nothing refitted.

A predictor has ``run_id``, ``predict(frame) -> (n, 30)`` and ``notes`` (batch-level remarks of
the last call). Two kinds exist:

- :class:`FoldAverage`: a CV run's stored fold models, averaged and clipped to [0, 1];
- :class:`EnsemblePredictor`: member predictors combined by a stored :class:`Combiner`
  (weights, rank references, post-processing maps).

They are loaded from a store (:func:`load_predictor`) or from an exported bundle
(:func:`questlab.export.load_bundle`); ``questlab predict``, ``questlab serve`` and the MLflow
pyfunc model all use the same classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from questlab.data import load_test
from questlab.ensemble.combine import Combiner
from questlab.ensemble.postprocess import PostProcessor
from questlab.models import Model
from questlab.rundir import POSTPROCESS_FILE, RunFolder, predictions_frame
from questlab.schema import ID, TARGETS
from questlab.store import Store


class Predictor(Protocol):
    run_id: str
    notes: list[str]

    def predict(self, frame: pd.DataFrame) -> np.ndarray: ...


class FoldAverage:
    """The mean of a CV run's fold models, clipped to [0, 1]."""

    def __init__(self, run_id: str, model_dirs: list[Path]) -> None:
        self.run_id = run_id
        self.models: list[Model] = [Model.load(d) for d in model_dirs]
        self.notes: list[str] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        preds = [m.predict(frame) for m in self.models]
        return np.clip(np.mean(preds, axis=0), 0.0, 1.0)


class EnsemblePredictor:
    """Member predictors combined with stored weights, rank references and maps."""

    def __init__(self, run_id: str, members: list[Predictor], combiner: Combiner) -> None:
        self.run_id = run_id
        self.members = members
        self.combiner = combiner
        self.notes: list[str] = []  # constant-column fallbacks of the last batch

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, 30) predictions for a test-format frame; nothing is refitted.

        Each row is mapped on its own (ranks against stored OOF, stored weights and maps), with
        one exception that is a property of the batch: a column the maps would make constant over
        a batch whose raw blend varies is left unmapped for that batch (see ``self.notes``).
        """
        pred, self.notes = self.combiner.apply(np.stack([m.predict(frame) for m in self.members]))
        return pred


def combiner_from_spec(spec: dict, references: list[np.ndarray] | None, postprocess: Path | None) -> Combiner:
    """The Combiner an ``ensemble.json`` describes (weights per target, averaging, maps)."""
    return Combiner(
        weights=np.array([spec["weights"][t] for t in TARGETS], dtype=np.float64),
        average=spec["average"],
        references=references,
        postprocessor=PostProcessor.load(postprocess) if postprocess is not None and postprocess.exists() else None,
    )


def sorted_oof(run: RunFolder) -> np.ndarray:
    """A member's OOF predictions, each column sorted: the reference its ranks are taken against."""
    return np.sort(run.read_oof()[list(TARGETS)].to_numpy(np.float64), axis=0)


def load_predictor(store: Store, run_id: str) -> Predictor:
    """Load the predictor of a recorded run (CV or ensemble, members resolved in the same store)."""
    record = store.get(run_id)
    run = store.folder(record.run_id, models=True)
    meta = run.read_meta()
    if meta.kind == "ensemble":
        spec = run.read_ensemble()
        members = [load_predictor(store, m) for m in spec["members"]]
        refs = [sorted_oof(store.folder(m)) for m in spec["members"]] if spec["average"] == "rank" else None
        return EnsemblePredictor(record.run_id, members, combiner_from_spec(spec, refs, run / POSTPROCESS_FILE))
    return FoldAverage(record.run_id, run.fold_model_dirs(meta.folds_selected))


def predict_frame(predictor: Predictor, frame: pd.DataFrame) -> pd.DataFrame:
    """qa_id + the 30 predictions, submission column order, for a validated test-format frame."""
    return predictions_frame(frame[ID], predictor.predict(frame))


def predict_file(predictor: Predictor, input_path: Path, output_path: Path | None) -> pd.DataFrame:
    """Validate ``input_path`` (a test-format CSV), predict; write qa_id + 30 targets to ``output_path``
    (when given) and return them."""
    frame = load_test(input_path)
    out = predict_frame(predictor, frame)
    if output_path is not None:
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(output_path, index=False)
    return out
