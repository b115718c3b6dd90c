"""Predict, bundles, MLflow models, serve and pseudo-labels read the predictor's task (issue 29).

The synthetic task ``reviews`` (tests/helpers/synthetic_task.py) stands for any task: a predictor
folder keeps it in ``task.json``, a file is read against it, the submission is its id and its
three targets, the HTTP schema is built from its columns. A QUEST bundle refuses an ELL file,
naming both tasks. Tests whose data checks or model fitting need the task support of
``questlab.data`` / ``questlab.models`` skip, saying so, where those do not read a task yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from helpers.synthetic_task import TARGETS, make_frame, write_spec
from questlab.bundle import BUNDLE_FORMAT, MANIFEST, PREDICTOR_DIR, BundleModel, load_bundle
from questlab.data import validate_frame
from questlab.errors import DataError, UsageError
from questlab.mlflow_model import pyfunc_signature
from questlab.models import get_model_class
from questlab.models.base import FitLog
from questlab.predict import predict_file, predict_frame
from questlab.predictors import TASK_FILE, EnsemblePredictor, FoldAverage, load_folder
from questlab.provenance import file_sha256
from questlab.pseudo import check_pseudo_task
from questlab.serve import create_app
from questlab.strictjson import strict_json
from questlab.tasks import Task, load_task

RECORDED = Path(__file__).resolve().parent / "data" / "v0_9_0"
ELL_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "ell" / "train.csv"


@pytest.fixture(scope="module")
def reviews(tmp_path_factory: pytest.TempPathFactory) -> Task:
    return load_task(write_spec(tmp_path_factory.mktemp("spec")))


def _needs_data_tasks(task: Task) -> None:
    """Skip unless ``questlab.data`` checks a frame against ``task`` (helper DATA's ``task=``)."""
    try:
        validate_frame(make_frame(6, with_targets=False), "test", source="probe", task=task)
    except DataError as exc:
        pytest.skip(f"questlab.data does not read task {task.name!r} yet ({exc})")


def _fitted_means(task: Task, folder: Path, n_folds: int = 2) -> list[Path]:
    """``n_folds`` mean models of ``task`` fitted on synthetic rows and saved; skip where models
    do not predict a task's targets yet (helper MODELS)."""
    frame = make_frame(60, seed=1)
    dirs = []
    for k in range(n_folds):
        model = get_model_class("mean")(task=task)
        try:
            model.fit(frame[frame.index % n_folds != k], None, FitLog())
            pred = model.predict(frame.head(4))
        except (KeyError, ValueError) as exc:
            pytest.skip(f"the mean model does not fit task {task.name!r} yet ({type(exc).__name__}: {exc})")
        if np.asarray(pred).shape != (4, task.n_targets):
            pytest.skip(f"the mean model predicts {np.asarray(pred).shape[1]} targets, not task {task.name!r}'s")
        model.save(folder / f"fold_{k}")
        dirs.append(folder / f"fold_{k}")
    return dirs


class Midpoints:
    """A predictor of any task predicting each target's midpoint (serve tests need no model)."""

    def __init__(self, task: Task) -> None:
        self.run_id, self.task, self.notes = "midpoints", task, []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.tile((self.task.lows + self.task.highs) / 2, (len(frame), 1))

    def encoders(self) -> set[str]:
        return set()


# --- a predictor folder carries its task ----------------------------------------------------------
def test_a_predictor_folder_keeps_its_task(reviews: Task, tmp_path: Path) -> None:
    FoldAverage("run-r", [], [], task=reviews).save(tmp_path / "p")
    assert json.loads((tmp_path / "p" / TASK_FILE).read_text()) == reviews.to_data()
    loaded = load_folder(tmp_path / "p")
    assert loaded.task.fingerprint == reviews.fingerprint and loaded.task.target_names == TARGETS


def test_a_0_9_0_bundle_without_task_json_predicts_quest() -> None:
    assert not (RECORDED / "bundle" / PREDICTOR_DIR / TASK_FILE).exists()
    predictor = load_bundle(RECORDED / "bundle")
    assert predictor.task.name == "quest" and all(m.task.name == "quest" for m in predictor.members)


def test_an_ensemble_refuses_a_member_of_another_task(reviews: Task) -> None:
    member = FoldAverage("run-q", [], [])  # quest
    with pytest.raises(UsageError, match=r"predicts task 'quest', not task 'reviews'"):
        EnsemblePredictor("ens", [member], {}, None, None, task=reviews)


# --- a file of another task ------------------------------------------------------------------------
def _ell_like(folder: Path) -> Path:
    if ELL_TRAIN.exists():
        frame = pd.read_csv(ELL_TRAIN, nrows=5)
    else:  # the columns are what matter
        frame = pd.DataFrame({"text_id": ["A1", "B2"], "full_text": ["An essay.", "Another essay."]})
    path = folder / "ell.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_quest_bundle_refuses_an_ell_file_naming_both_tasks(tmp_path: Path) -> None:
    path = _ell_like(tmp_path)
    predictor = load_bundle(RECORDED / "bundle")
    with pytest.raises(UsageError, match=r"predicts task 'quest'; the file looks like task 'ell'"):
        predict_file(predictor, path, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(UsageError, match=r"task 'quest'.*task 'ell'"):
        BundleModel(RECORDED / "bundle").predict(pd.read_csv(path))


# --- predicting a task's file -----------------------------------------------------------------------
def test_a_reviews_file_predicts_its_id_and_three_targets(reviews: Task, tmp_path: Path) -> None:
    _needs_data_tasks(reviews)
    dirs = _fitted_means(reviews, tmp_path / "models")
    predictor = FoldAverage("run-r", dirs, [0, 1], task=reviews)
    test = make_frame(9, seed=5, with_targets=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    out = predict_file(predictor, tmp_path / "test.csv", tmp_path / "sub.csv")
    assert list(out.columns) == ["review_id", *TARGETS]
    assert list(pd.read_csv(tmp_path / "sub.csv").columns) == ["review_id", *TARGETS]
    assert (out[list(TARGETS)].to_numpy() >= reviews.lows).all()
    assert (out[list(TARGETS)].to_numpy() <= reviews.highs).all()


def _bundle(predictor: FoldAverage, root: Path) -> Path:
    """A bundle folder as ``write_bundle`` lays it out (no store needed: the predictor is given)."""
    predictor.save(root / PREDICTOR_DIR)
    files = {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}
    manifest = {"bundle_format": BUNDLE_FORMAT, "run_id": predictor.run_id, "task": predictor.task.name}
    (root / MANIFEST).write_text(strict_json({**manifest, "encoders": {}, "files": files}))
    return root


def test_a_reviews_bundle_loads_and_predicts(reviews: Task, tmp_path: Path) -> None:
    _needs_data_tasks(reviews)
    dirs = _fitted_means(reviews, tmp_path / "models")
    root = _bundle(FoldAverage("run-r", dirs, [0, 1], task=reviews), tmp_path / "bundle")
    model = BundleModel(root)
    assert model.task.fingerprint == reviews.fingerprint
    rows = make_frame(4, seed=3, with_targets=False).drop(columns=["review_id", "author"])  # both may be left out
    out = model.predict(rows)
    assert list(out.columns) == ["review_id", *TARGETS] and list(out["review_id"]) == [0, 1, 2, 3]
    assert predict_frame(load_bundle(root), validate_frame(make_frame(3, with_targets=False), "test", task=reviews))[
        "review_id"
    ].tolist() == ["r0-0", "r0-1", "r0-2"]


def test_the_pyfunc_signature_follows_the_task(reviews: Task) -> None:
    signature = pyfunc_signature(reviews)
    inputs = {c.name: c.required for c in signature.inputs.inputs}
    assert inputs == {"review_id": False, "review": True, "reply": True, "shop": True, "author": False,
                      "product": False}  # fmt: skip
    assert [c.name for c in signature.outputs.inputs] == ["review_id", *TARGETS]
    quest = pyfunc_signature()
    assert len(quest.outputs.inputs) == 31 and quest.outputs.inputs[0].name == "qa_id"


# --- serving a task -------------------------------------------------------------------------------
def _row(**change: object) -> dict:
    row = {"review_id": 7, "review": "great product, thanks", "reply": "kind of you", "shop": "shop1"}
    return {k: v for k, v in {**row, **change}.items() if v is not None}


def test_serve_states_the_task_and_its_schema(reviews: Task) -> None:
    with TestClient(create_app(Midpoints(reviews), batch_window_ms=None)) as client:
        health = client.get("/health").json()
        assert health["task"] == "reviews" and health["targets"] == list(TARGETS)
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["Row"]["required"]) == {"review", "reply", "shop"}
    assert {"review_id", "author", "product"} <= set(schemas["Row"]["properties"])
    assert set(schemas["Prediction"]["required"]) == {"review_id", *TARGETS}


def test_serve_refuses_a_row_without_a_text_column_naming_it(reviews: Task) -> None:
    with TestClient(create_app(Midpoints(reviews), batch_window_ms=None)) as client:
        response = client.post("/predict", json={"pairs": [_row(), _row(review_id=8, reply=None)]})
        assert response.status_code == 422
        (item,) = response.json()["detail"]
        assert item["field"] == "reply" and item["pair"] == 1
        unknown = client.post("/predict", json={"pairs": [_row(question_title="a QUEST column")]})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["field"] == "question_title"


def test_serve_predicts_a_valid_row_with_the_task_targets(reviews: Task) -> None:
    _needs_data_tasks(reviews)
    with TestClient(create_app(Midpoints(reviews), batch_window_ms=None)) as client:
        response = client.post("/predict", json={"pairs": [_row(), _row(review_id=9, author="ann")]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["review_id"] for p in body["predictions"]] == [7, 9]
    assert body["predictions"][0] == {"review_id": 7, "helpful": 5.0, "polite": 3.0, "clear": 3.0}


def test_a_quest_server_keeps_its_api() -> None:
    class Quest(Midpoints):
        def __init__(self) -> None:
            super().__init__(load_task())
            del self.task  # a 0.9.0-style predictor, no task: quest

    with TestClient(create_app(Quest(), batch_window_ms=None)) as client:
        assert client.get("/health").json()["task"] == "quest"
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "Pair" in schemas and "Row" not in schemas and "qa_id" in schemas["Prediction"]["properties"]


# --- pseudo-labels ---------------------------------------------------------------------------------
def test_a_teacher_of_another_task_is_refused_naming_both(reviews: Task) -> None:
    with pytest.raises(UsageError, match=r"run t1 of task 'quest'; this run is task 'reviews'"):
        check_pseudo_task(load_task(), reviews, "pseudo.csv", "t1")
    check_pseudo_task(reviews, reviews, "pseudo.csv", "t1")  # the same task: fine
