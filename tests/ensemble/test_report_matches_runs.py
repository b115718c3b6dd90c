"""An ensemble report scores its members and itself as the runs record their own scores.

A mean model predicts each fold's train means: constant inside every fold, so its runs record
CV 0 (metric.score_cv). Pooled, those per-fold constants rank fold offsets; the report once
scored such a member at -0.022 and a mean-only recipe at "nested CV -0.0560, gain +0.0080".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble, postprocess_run
from questlab.store import Store

RECORDED = Path(__file__).resolve().parents[1] / "data" / "v0_9_0"


def _run(store: Store, model: str, seed: int = 5) -> str:
    import questlab as ql

    params = {"min_df": 1, "max_features": 300} if model == "tfidf" else {}
    config = {
        "name": model,
        "seed": seed,
        "folds": {"n_splits": 3, "seed": 5},
        "bootstrap": 5,
        "parallel_folds": 1,
        "model": {"name": model, "params": params},
    }
    return ql.run(config, RECORDED / "train.csv", store=store, quiet=True).id


def test_a_mean_member_scores_what_its_run_records(tmp_path: Path) -> None:
    store = Store(tmp_path / "store" / "mlflow.db")
    mean, tfidf = _run(store, "mean"), _run(store, "tfidf")
    new_id, report = build_ensemble(store, [mean, tfidf], EnsembleSpec(weights="equal"), n_boot=10)
    for run_id, score in report["members"].items():
        assert score == pytest.approx(store.get(run_id).metrics["cv_score"], abs=1e-12)
    assert report["nested_score"] == pytest.approx(store.get(new_id).metrics["cv_score"], abs=1e-12)


def test_a_mean_only_ensemble_reports_zero_and_no_gain(tmp_path: Path) -> None:
    store = Store(tmp_path / "store" / "mlflow.db")
    mean = _run(store, "mean")
    new_id, report = postprocess_run(store, mean, method="distribution", n_boot=10)
    assert report["members"][mean] == 0.0 == store.get(mean).metrics["cv_score"]
    assert report["nested_score"] == store.get(new_id).metrics["cv_score"] == 0.0
    assert report["nested_gain"]["gain"] == 0.0
