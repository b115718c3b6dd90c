"""Every command on a task nobody built in (issue 29, part 5).

The synthetic task ``reviews`` (tests/helpers/synthetic_task.py: two text columns, a group column,
three targets, metric mcrmse) exists only as a YAML file. Through the CLI, on 150 train rows and 30
test rows: task init, check, run (mean, tfidf), runs, diagnose, report, postprocess, ensemble, a
recipe, tune, pseudo-label and a student run, predict, export (and predict with the bundle), serve.
Then bad files: each one line naming the spec/file, the column and the row, exit 2, no run made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

import questlab.serve
from helpers.synthetic_task import TARGETS, make_frame, write_spec
from questlab.cli import app
from questlab.store import Store
from questlab.tasks import load_task

FAST = ["--set", "folds.n_splits=3", "--set", "bootstrap=20", "--set", "log_model=false"]
TFIDF = [*FAST, "--set", "model.params.min_df=1", "--set", "model.params.max_features=2000"]


def cli(*args: object) -> Result:
    """Invoke ``questlab`` with ``args``; the exit code is checked by the caller."""
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> Result:
    """Invoke ``questlab`` and require exit 0 (the output is the failure message)."""
    result = cli(*args)
    assert result.exit_code == 0, f"questlab {' '.join(map(str, args))}\n{result.output}"
    return result


def last_line(result: Result) -> str:
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The spec, a train and a test CSV, a store, and a mean and a TF-IDF run (with test predictions)."""
    root = tmp_path_factory.mktemp("reviews")
    spec = write_spec(root)
    train, test = root / "train.csv", root / "test.csv"
    make_frame(150, seed=1).to_csv(train, index=False)
    unseen = make_frame(30, seed=2, with_targets=False)
    unseen["product"] = "new-" + unseen["product"]  # products the train file lacks (pseudo-labels keep them)
    unseen.to_csv(test, index=False)
    store = root / "store"
    common = ["--task", spec, "--train", train, "--test", test, "--store", store]
    mean = ok("run", "mean", *common, *FAST)
    tfidf = ok("run", "tfidf", *common, *TFIDF)
    for done in (mean, tfidf):
        assert "mcrmse" in done.output and "reviews" in done.output
    return {
        "root": root, "spec": spec, "train": train, "test": test, "store": store,
        "mean": last_line(mean), "tfidf": last_line(tfidf),
    }  # fmt: skip


def _runs(world: dict) -> list[dict]:
    return json.loads(ok("runs", "--store", world["store"], "--json").stdout)


def _check_predictions(path: Path, test: Path) -> pd.DataFrame:
    """A prediction file: review_id + the three targets, one row per test row, inside each range."""
    written = pd.read_csv(path)
    assert list(written.columns) == ["review_id", *TARGETS]
    assert list(written["review_id"]) == list(pd.read_csv(test)["review_id"])
    task = load_task(write_spec(path.parent))
    values = written[list(TARGETS)].to_numpy()
    assert np.isfinite(values).all() and (values >= task.lows).all() and (values <= task.highs).all()
    return written


def test_task_init_drafts_a_spec_that_loads_and_check_reads_the_spec(world: dict) -> None:
    drafted = ok("task", "init", world["train"], "--name", "drafted")
    spec = world["root"] / "drafted.yaml"
    spec.write_text(drafted.stdout, encoding="utf-8")
    task = load_task(spec)
    assert task.name == "drafted" and task.id == "review_id" and set(task.target_names) == set(TARGETS)
    for path in (world["train"], world["test"]):
        checked = ok("check", path, "--task", world["spec"])
        assert "reviews" in checked.output


def test_run_runs_diagnose_report(world: dict) -> None:
    board = _runs(world)
    assert {r["run_id"] for r in board} >= {world["mean"], world["tfidf"]}
    assert all(r["task"] == "reviews" and r["metric"] == "mcrmse" for r in board)
    listed = ok("runs", "--store", world["store"])
    assert "reviews" in listed.stdout and "mcrmse" in listed.stdout
    for run_id in (world["mean"], world["tfidf"]):
        diag = ok("diagnose", run_id, "--store", world["store"], "--n-boot", 20, "--train", world["train"])
        assert "mcrmse" in diag.stdout
        report = ok("report", run_id, "--store", world["store"], "--n-boot", 20)
        html = Path(last_line(report)).read_text(encoding="utf-8")
        assert "mcrmse" in html and "reviews" in html


def test_postprocess_and_ensemble(world: dict) -> None:
    store = world["store"]
    pp = ok("postprocess", world["tfidf"], "--bootstrap", 20, "--name", "tfidf-pp", "--store", store)
    assert "mcrmse" in pp.output
    ens = ok("ensemble", world["mean"], world["tfidf"], "--bootstrap", 20, "--postprocess", "auto",
             "--name", "mean+tfidf", "--store", store)  # fmt: skip
    assert "mcrmse" in ens.output
    runs = {r["run_id"]: r for r in _runs(world)}
    for run_id in (last_line(pp), last_line(ens)):
        assert runs[run_id]["task"] == "reviews" and runs[run_id]["metric"] == "mcrmse"
    sub = world["root"] / "ensemble-sub.csv"
    ok("predict", last_line(ens), "--input", world["test"], "--output", sub, "--store", store)
    _check_predictions(sub, world["test"])


def test_recipe_runs_its_members_for_the_task(world: dict, tmp_path: Path) -> None:
    # shaped like the built-ins: QUEST's members and settings, and the ones for any other task
    recipe = {
        "name": "tiny-any",
        "members": [
            {"tasks": ["quest"], "config": {"name": "q-mean", "model": {"name": "mean"}}},
            {"not_tasks": ["quest"],
             "config": {"name": "r-tfidf", "folds": {"n_splits": 3, "seed": 1}, "bootstrap": 20,
                        "model": {"name": "tfidf", "params": {"min_df": 1, "max_features": 2000}}}},
            {"not_tasks": ["quest"],
             "config": {"name": "r-tfidf-1gram", "bootstrap": 20,
                        "model": {"name": "tfidf", "params": {"min_df": 1, "ngram_max": 1, "alpha": 3.0}}}},
        ],
        "ensemble": {"method": "weights", "per_target": True, "average": "rank"},
        "question_share": True,
        "postprocess": "distribution",
        "bootstrap": 20,
        "per_task": {"quest": {},
                     "*": {"ensemble": {"average": "value"}, "question_share": False, "postprocess": "auto"}},
    }  # fmt: skip
    path = tmp_path / "tiny-any.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    sub = tmp_path / "recipe-sub.csv"
    done = ok("recipe", path, "--task", world["spec"], "--train", world["train"], "--test", world["test"],
              "--submission", sub, "--store", tmp_path / "store")  # fmt: skip
    assert "mcrmse" in done.output and "2 member(s)" in done.output
    _check_predictions(sub, world["test"])
    names = {r.name for r in Store(str(tmp_path / "store")).list_runs()}
    assert {"r-tfidf", "r-tfidf-1gram"} <= names and "q-mean" not in names


def test_tune_a_few_tfidf_trials(world: dict, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  model.params.alpha: {float: [0.5, 20], log: true}\n", encoding="utf-8")
    best = tmp_path / "best.yaml"
    done = ok("tune", "tfidf", "--space", space, "--train", world["train"], "--task", world["spec"],
              "--trials", 2, "--best-config", best, "--store", tmp_path / "store", *TFIDF)  # fmt: skip
    assert "mcrmse" in done.output
    assert yaml.safe_load(best.read_text())["model"]["name"] == "tfidf"


def test_pseudo_label_then_a_student_run(world: dict) -> None:
    pseudo = world["root"] / "pseudo.csv"
    ok("pseudo-label", world["tfidf"], "--unlabelled", world["test"], "-o", pseudo, "--store", world["store"])
    labels = pd.read_csv(pseudo)
    assert labels["review_id"].tolist() == pd.read_csv(world["test"])["review_id"].tolist()
    assert set(TARGETS) <= set(labels.columns)
    # the student on the teacher's folds (so no folds.n_splits of its own)
    student = ok("run", "tfidf", "--task", world["spec"], "--train", world["train"], "--pseudo", pseudo,
                 "--set", f"folds.from_run={world['tfidf']}", "--name", "student", "--store", world["store"],
                 *TFIDF[2:])  # fmt: skip
    assert "mcrmse" in student.output
    runs = {r["run_id"]: r for r in _runs(world)}
    assert runs[last_line(student)]["task"] == "reviews"


def test_predict_export_and_predict_with_the_bundle(world: dict) -> None:
    store = world["store"]
    by_run = world["root"] / "by-run.csv"
    ok("predict", world["tfidf"], "--input", world["test"], "--output", by_run, "--store", store)
    first = _check_predictions(by_run, world["test"])
    bundle = world["root"] / "bundle"
    ok("export", world["tfidf"], bundle, "--store", store)
    by_bundle = world["root"] / "by-bundle.csv"
    ok("predict", "--model", bundle, "--input", world["test"], "--output", by_bundle)
    pd.testing.assert_frame_equal(_check_predictions(by_bundle, world["test"]), first)


def test_serve_builds_the_schema_from_the_task(world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list = []
    monkeypatch.setattr(questlab.serve, "run_server", lambda app_, *args: served.append(app_))
    ok("serve", world["tfidf"], "--store", world["store"])  # the default app: requests batched
    row = make_frame(1, seed=5, with_targets=False).iloc[0].to_dict()  # review_id "r5-0": a text id
    with TestClient(served[0]) as client:
        good = client.post("/predict", json={"pairs": [row]})
        assert good.status_code == 200, good.text
        (answer,) = good.json()["predictions"]
        assert list(answer) == ["review_id", *TARGETS] and answer["review_id"] == row["review_id"]
        task = load_task(world["spec"])
        assert all(t.low <= answer[t.name] <= t.high for t in task.targets)
        missing = client.post("/predict", json={"pairs": [{k: v for k, v in row.items() if k != "review"}]})
        assert missing.status_code == 422, missing.text
        assert [e["field"] for e in missing.json()["detail"]] == ["review"]


# --- bad files: one line naming spec/file, column and row; exit 2; nothing recorded --------------
def _bad(frame: pd.DataFrame, case: str) -> tuple[pd.DataFrame, str, str | None]:
    """``frame`` broken as ``case`` says; the column and the row (1-based data row) the error must name."""
    frame = frame.copy()
    if case == "missing column":
        return frame.drop(columns="reply"), "reply", None
    if case == "out of range":
        frame.loc[4, "helpful"] = 11.5
        return frame, "helpful", "5"
    if case == "off its levels":
        frame.loc[6, "clear"] = 2.25
        return frame, "clear", "7"
    frame["product"] = frame["product"].astype(object)
    frame.loc[3, "product"] = ""
    return frame, "product", "4"


@pytest.mark.parametrize("case", ["missing column", "out of range", "off its levels", "empty group cell"])
def test_a_bad_file_is_one_line_exit_2_and_no_run(case: str, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    frame, column, row = _bad(make_frame(30, seed=4), case)
    train = tmp_path / "bad.csv"
    frame.to_csv(train, index=False)
    store = tmp_path / "store"
    result = cli("run", "mean", "--task", spec, "--train", train, "--store", store, *FAST)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert str(train) in lines[0] and f"column {column!r}" in lines[0]
    if row is not None:
        assert f"row {row} " in lines[0]
    assert not store.exists() or Store(str(store)).list_runs() == []
