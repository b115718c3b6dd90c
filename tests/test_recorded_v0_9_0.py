"""Runs and a bundle recorded by questlab 0.9.0 load and predict exactly as they did then.

``tests/data/v0_9_0`` holds a store (TF-IDF, mean, and their rank-averaged ensemble with
distribution post-processing and a question share), a bundle of the ensemble, synthetic data and
the predictions 0.9.0 made with each (``make.py`` says how they were made). Any change to how runs,
ensembles or bundles are read must keep these byte for byte.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from questlab.data import load_test
from questlab.export import BundleModel, load_bundle
from questlab.predict import load_predictor, predict_frame
from questlab.store import Store

RECORDED = Path(__file__).resolve().parent / "data" / "v0_9_0"
RUNS: dict[str, str] = json.loads((RECORDED / "expected" / "runs.json").read_text())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    copy = tmp_path_factory.mktemp("v0_9_0") / "store"
    shutil.copytree(RECORDED / "store", copy)  # opening a moved store may rewrite its paths: not the repo's copy
    return Store(copy / "mlflow.db", create=False)


def _csv(frame) -> str:
    return frame.to_csv(index=False)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_recorded_run_predicts_as_0_9_0_did(store: Store, name: str) -> None:
    test = load_test(RECORDED / "test.csv")
    got = predict_frame(load_predictor(store, RUNS[name]), test)
    assert _csv(got) == (RECORDED / "expected" / f"{name}.csv").read_text()


def test_recorded_runs_read_as_recorded(store: Store) -> None:
    import questlab as ql

    ens = ql.load_run(RUNS["ensemble"], store=store)
    assert ens.kind == "ensemble" and ens.status == "FINISHED"
    assert ens.ensemble_report is not None and set(ens.ensemble_report["members"]) == {RUNS["tfidf"], RUNS["mean"]}
    tfidf = ql.load_run(RUNS["tfidf"], store=store)
    assert tfidf.model == "tfidf" and len(tfidf.fold_scores) == 3 and tfidf.ci[0] <= tfidf.cv <= tfidf.ci[1]


def test_recorded_bundle_predicts_as_0_9_0_did() -> None:
    test = load_test(RECORDED / "test.csv")
    expected = (RECORDED / "expected" / "bundle.csv").read_text()
    assert _csv(predict_frame(load_bundle(RECORDED / "bundle"), test)) == expected
    assert expected == (RECORDED / "expected" / "ensemble.csv").read_text()
    model = BundleModel(RECORDED / "bundle")
    assert _csv(model.predict(test)) == expected


def test_recorded_mlflow_model_predicts_as_0_9_0_did(store: Store) -> None:
    test = load_test(RECORDED / "test.csv")
    model_dir = store.folder(RUNS["ensemble"]).path / "model"
    assert _csv(BundleModel(model_dir).predict(test)) == (RECORDED / "expected" / "ensemble.csv").read_text()


def test_loading_runs_uri_leaves_nothing_in_the_temp_folder(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow downloads runs:/ models into the system temp folder and keeps them; questlab's loader
    moves the bundle into its cache (once per content) and removes the download."""
    import tempfile

    import mlflow

    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "cache"))
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", store.uri)  # as set_tracking_uri, undone after
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    test = load_test(RECORDED / "test.csv")
    expected = (RECORDED / "expected" / "ensemble.csv").read_text()
    for _ in range(2):
        model = mlflow.pyfunc.load_model(f"runs:/{RUNS['ensemble']}/model")
        assert _csv(model.predict(test)) == expected
        assert not [p for p in system_temp.iterdir() if p.name.startswith("tmp")], list(system_temp.iterdir())
    assert len(list((tmp_path / "cache" / "bundles").iterdir())) == 1
