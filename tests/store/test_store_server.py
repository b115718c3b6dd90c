"""questlab against a real `mlflow server` (artifact proxying) on 127.0.0.1: every command works.

Artifacts go through MLflow's API only: the run is staged in questlab's cache and logged part by
part; readers download it. A fresh cache (another machine) sees the same runs.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.mlflow_server import mlflow_server
from helpers.runs import N_FOLDS, tiny_run
from helpers.runs import test_slice as slice_of_test
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.data import load_test
from questlab.predict import load_predictor
from questlab.store import Store

TFIDF = {"max_features": 2000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real MLflow tracking server with proxied artifacts; yields its URL and folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    with mlflow_server(f"sqlite:///{root / 'server.db'}", root) as url:
        yield url, root


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_run_on_a_server_is_recorded_through_the_api_and_read_back_anywhere(server, cache, tmp_path, monkeypatch):
    url, root = server
    store = Store(url)
    run_id = tiny_run(store, "tfidf", TFIDF, name="remote-tfidf")
    info = store.client.get_run(run_id)
    assert info.info.status == "FINISHED" and info.info.artifact_uri.startswith("mlflow-artifacts:")
    # standard MLflow tags
    assert info.data.tags["mlflow.runName"] == "remote-tfidf" and info.data.tags["mlflow.user"]
    listed = {a.path for a in store.client.list_artifacts(run_id)}
    assert {"run.json", "folds.csv", "oof.csv", "scores.json", "submission.csv", "folds", "model"} <= listed
    on_server = list((root / "artifacts").rglob(f"{run_id}/artifacts/folds/fold_0/model/model.json"))
    assert on_server, "the server holds the fold models"
    staged_pred = load_predictor(store, run_id).predict(load_test(slice_of_test()))

    # Another machine: an empty cache, the same server.
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "other-machine"))
    other = Store(url)
    assert run_id in [r.run_id for r in other.list_runs()]
    np.testing.assert_allclose(load_predictor(other, run_id).predict(load_test(slice_of_test())), staged_pred)
    runner = CliRunner()
    diag = runner.invoke(app, ["diagnose", run_id, "--store", url])
    assert diag.exit_code == 0, diag.output
    assert "report.html" in {a.path for a in other.client.list_artifacts(run_id)}
    out = tmp_path / "p.csv"
    pred = runner.invoke(
        app, ["predict", run_id[:8], "--input", str(slice_of_test()), "--output", str(out), "--store", url]
    )
    assert pred.exit_code == 0, pred.output
    # the MLflow model, straight from the server
    frame = load_test(slice_of_test())
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model") if _set_tracking(url) else None
    np.testing.assert_allclose(model.predict(frame).iloc[:, 1:].to_numpy(), staged_pred)
    # post-processing and ensembles are runs on the server too
    other_id = tiny_run(other, "tfidf", {**TFIDF, "alpha": 30.0}, name="remote-tfidf-2")
    pp = runner.invoke(app, ["postprocess", run_id, "--store", url, "--bootstrap", "20"])
    assert pp.exit_code == 0, pp.output
    ens = runner.invoke(app, ["ensemble", run_id, other_id, "--store", url, "--bootstrap", "20"])
    assert ens.exit_code == 0, ens.output
    ens_id = ens.stdout.strip().splitlines()[-1]
    assert other.get(ens_id).status == "FINISHED"
    cmp = runner.invoke(app, ["compare", run_id, other_id, "--store", url, "--n-boot", "50", "--json"])
    assert cmp.exit_code == 0, cmp.output
    bundle = tmp_path / "bundle"
    exp = runner.invoke(app, ["export", ens_id, str(bundle), "--store", url])
    assert exp.exit_code == 0, exp.output
    np.testing.assert_allclose(load_predictor(other, ens_id).predict(frame), _bundle_predict(bundle, frame), atol=1e-12)
    fnd = runner.invoke(app, ["finding", "add", "remote works", "--run", run_id, "--store", url])
    assert fnd.exit_code == 0, fnd.output
    assert "remote works" in runner.invoke(app, ["findings", "--store", url]).output


def _set_tracking(url: str) -> bool:
    mlflow.set_tracking_uri(url)
    return True


def _bundle_predict(bundle: Path, frame) -> np.ndarray:
    from questlab.export import load_bundle

    return load_bundle(bundle).predict(frame)


def test_failed_resumed_killed_and_single_fold_runs_on_a_server(server, cache, monkeypatch):
    import questlab.models.tfidf as tfidf
    from questlab.collect import collect_runs
    from questlab.cv import run_cv

    url, _ = server
    store = Store(url)
    real_fit = tfidf.TfidfModel.fit
    calls: list[int] = []

    def flaky(self, train, valid, log):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real_fit(self, train, valid, log)

    monkeypatch.setattr(tfidf.TfidfModel, "fit", flaky)
    with pytest.raises(RuntimeError, match="disk on fire"):
        tiny_run(store, "tfidf", TFIDF, name="flaky")
    failed = store.list_runs()[0]
    assert failed.status == "FAILED" and "disk on fire" in failed.tags["questlab.error"]
    # resumed from another machine's cache: the finished fold comes from the server, not refitted
    monkeypatch.setenv("QUESTLAB_CACHE", str(cache.parent / "resumer"))
    resumed = run_cv(
        None, slice_of_train(), slice_of_test(), store=Store(url), resume=failed.run_id, say=lambda _: None
    )
    assert resumed == failed.run_id and store.get(resumed).status == "FINISHED"
    assert len(calls) == 2 + (N_FOLDS - 1)

    def interrupted(self, train, valid, log):
        raise KeyboardInterrupt

    monkeypatch.setattr(tfidf.TfidfModel, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(store, "tfidf", TFIDF, name="killed")
    assert store.list_runs()[0].status == "KILLED"

    monkeypatch.setattr(tfidf.TfidfModel, "fit", real_fit)
    first = tiny_run(store, "tfidf", TFIDF, only_folds=[0])
    rest = tiny_run(store, "tfidf", TFIDF, only_folds=[1, 2])
    merged = collect_runs(store, [first, rest], slice_of_train(), slice_of_test(), say=lambda _: None)
    assert store.get(merged).tags["questlab.complete"] == "true"
    assert store.get(merged).metrics["cv_score"] == pytest.approx(store.get(resumed).metrics["cv_score"])
