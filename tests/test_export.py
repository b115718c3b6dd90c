"""Bundles and MLflow models: a run predicts from a folder anywhere, or through mlflow.pyfunc."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from helpers.tiny_encoder import cache_dir, tiny_encoder  # noqa: F401  (fixtures)
from questlab.cli import app
from questlab.data import DataError, load_test
from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble
from questlab.export import BUNDLE_FORMAT, BundleError, export_run, load_bundle
from questlab.predict import load_predictor
from questlab.schema import ID, TARGETS
from questlab.store import Store

TFIDF = {"max_features": 2000}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A store with two TF-IDF runs and their rank ensemble with post-processing."""
    root = tmp_path_factory.mktemp("export")
    store = Store(root / "store")
    a = tiny_run(store, "tfidf", TFIDF, name="a")
    b = tiny_run(store, "tfidf", {**TFIDF, "alpha": 40.0}, name="b")
    spec = EnsembleSpec(weights="auto", per_target=True, average="rank", postprocess="auto", min_gain=-1.0)
    ens, _ = build_ensemble(store, [a, b], spec, n_boot=20)
    return {"store": store, "root": root, "a": a, "b": b, "ens": ens, "frame": load_test(slice_of_test())}


@pytest.mark.parametrize("which", ["a", "ens"])
def test_a_bundle_predicts_like_its_run_after_the_store_is_gone(world, tmp_path: Path, which: str) -> None:
    store, frame = world["store"], world["frame"]
    expected = load_predictor(store, world[which]).predict(frame)
    store_copy = tmp_path / "store"
    shutil.copytree(world["root"] / "store", store_copy)
    bundle = export_run(Store(store_copy), world[which], tmp_path / "bundle")
    shutil.rmtree(store_copy)  # nothing of the store is needed any more
    moved = tmp_path / "elsewhere" / "b"
    shutil.copytree(bundle, moved)
    shutil.rmtree(bundle)
    manifest = json.loads((moved / "bundle.json").read_text())
    assert manifest["bundle_format"] == BUNDLE_FORMAT and manifest["run_id"] == world[which]
    assert all(len(d) == 64 for d in manifest["files"].values())
    np.testing.assert_allclose(load_bundle(moved).predict(frame), expected, atol=1e-12)
    out = tmp_path / "sub.csv"
    res = CliRunner().invoke(
        app, ["predict", "--model", str(moved), "--input", str(slice_of_test()), "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    written = pd.read_csv(out)
    assert list(written.columns) == [ID, *TARGETS] and (written[ID] == frame[ID]).all()
    np.testing.assert_allclose(written[list(TARGETS)].to_numpy(), expected, atol=1e-9)


@pytest.fixture(scope="module")
def bundle(world, tmp_path_factory) -> Path:
    return export_run(world["store"], world["a"], tmp_path_factory.mktemp("bundles") / "a")


def _broken_copy(bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    return copy


def test_a_tampered_or_missing_file_is_refused(bundle: Path, tmp_path: Path) -> None:
    copy = _broken_copy(bundle, tmp_path)
    victim = next(p for p in sorted((copy / "predictor").rglob("*")) if p.is_file() and p.suffix == ".json")
    victim.write_text(victim.read_text() + " ")
    with pytest.raises(BundleError, match="does not match its sha256"):
        load_bundle(copy)
    victim.unlink()
    res = CliRunner().invoke(
        app, ["predict", "--model", str(copy), "--input", str(slice_of_test()), "--output", "x.csv"]
    )
    assert res.exit_code == 2 and "is missing" in res.output and "Traceback" not in res.output


def test_a_newer_bundle_says_to_upgrade(bundle: Path, tmp_path: Path) -> None:
    copy = _broken_copy(bundle, tmp_path)
    manifest = json.loads((copy / "bundle.json").read_text())
    (copy / "bundle.json").write_text(json.dumps({**manifest, "bundle_format": BUNDLE_FORMAT + 1}))
    with pytest.raises(BundleError, match="upgrade questlab"):
        load_bundle(copy)
    with pytest.raises(BundleError, match="not a questlab bundle"):
        load_bundle(tmp_path)


def test_export_refuses_a_non_empty_target_and_leaves_nothing(world, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    res = CliRunner().invoke(app, ["export", world["a"], str(target), "--store", str(world["root"] / "store")])
    assert res.exit_code == 2 and "not empty" in res.output
    assert [p.name for p in tmp_path.iterdir()] == ["taken"] and [p.name for p in target.iterdir()] == ["keep.txt"]
    res = CliRunner().invoke(app, ["export", "nope", str(tmp_path / "new"), "--store", str(world["root"] / "store")])
    assert res.exit_code == 2 and "no run 'nope'" in res.output and not (tmp_path / "new").exists()


@pytest.mark.parametrize("which", ["a", "ens"])
def test_every_run_is_an_mlflow_model(world, which: str) -> None:
    store, frame = world["store"], world["frame"]
    run_id = world[which]
    mlflow.set_tracking_uri(store.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    out = model.predict(frame)
    np.testing.assert_allclose(out[list(TARGETS)].to_numpy(), load_predictor(store, run_id).predict(frame), atol=1e-12)
    assert model.metadata.get_input_schema().input_names()[0] == ID
    # no qa_id: row positions become the ids; the optional columns (user names, url) may be left out
    no_id = model.predict(frame.drop(columns=[ID]))
    np.testing.assert_allclose(no_id[list(TARGETS)].to_numpy(), out[list(TARGETS)].to_numpy())
    assert list(no_id[ID]) == list(range(len(frame)))
    slim = frame[["question_title", "question_body", "answer", "category", "host"]]
    assert model.predict(slim).shape == (len(frame), 31)
    bad = slim.copy()
    bad.loc[2, "answer"] = "   "
    with pytest.raises(Exception, match=r"column 'answer', row 3") as info:
        model.predict(bad)
    assert isinstance(info.value, DataError) or "DataError" in repr(info.value) or "row 3" in str(info.value)


def test_a_run_model_can_be_registered(world) -> None:
    mlflow.set_tracking_uri(world["store"].uri)
    version = mlflow.register_model(f"runs:/{world['a']}/model", "questlab-tfidf")
    assert int(version.version) == 1
    loaded = mlflow.pyfunc.load_model("models:/questlab-tfidf/1")
    assert loaded.predict(world["frame"]).shape == (len(world["frame"]), 31)


def test_an_embedding_bundle_carries_its_encoder(tiny_encoder: Path, cache_dir: Path, tmp_path: Path, monkeypatch):  # noqa: F811
    from questlab.models.embedding import model as embedding

    params = {"encoder": str(tiny_encoder), "max_tokens": 32, "progress": False, "host_min_count": 2, "head": "ridge"}
    store = Store(tmp_path / "store")
    run_id = tiny_run(store, "embedding", params)
    frame = load_test(slice_of_test())
    expected = load_predictor(store, run_id).predict(frame)
    bundle = export_run(store, run_id, tmp_path / "bundle")
    manifest = json.loads((bundle / "bundle.json").read_text())
    (enc_dir,) = manifest["encoders"].values()
    assert (bundle / enc_dir / "config.json").exists()
    # a new process on another machine: no encoder folder, an empty embedding cache
    shutil.rmtree(tiny_encoder)
    shutil.rmtree(tmp_path / "store")
    embedding._ENCODERS.clear()
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "fresh-cache"))
    np.testing.assert_allclose(load_bundle(bundle).predict(frame), expected, atol=1e-5)


def test_a_bundle_serves_over_http(bundle: Path, world) -> None:
    from fastapi.testclient import TestClient

    from questlab.serve import create_app

    client = TestClient(create_app(load_bundle(bundle)))
    assert client.get("/health").json()["run_id"] == world["a"]
    pairs = world["frame"].head(3).drop(columns=[ID]).to_dict(orient="records")
    got = client.post("/predict", json={"pairs": pairs}).json()["predictions"]
    expected = load_predictor(world["store"], world["a"]).predict(world["frame"].head(3))
    np.testing.assert_allclose([[row[t] for t in TARGETS] for row in got], expected, atol=1e-9)
