"""``questlab evaluate`` / ``Run.evaluate``: a run scored on a labelled file against its own targets;
``questlab predict`` / ``Run.predict`` on a labelled file: the targets ignored, said once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import questlab as ql
from helpers.paths import QUEST_DIR
from helpers.runs import train_slice
from questlab.cli import app
from questlab.data import DataError, validate_frame
from questlab.evaluation import Evaluation
from questlab.folds import question_groups
from questlab.metric import score_cv
from questlab.predict import stream_predictions
from questlab.schema import ID, TARGETS

CONFIG = {"name": "eval-tfidf", "folds": {"n_splits": 3, "seed": 1}, "model": {"name": "tfidf"}, "bootstrap": 0}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A 3-fold TF-IDF run on the train slice, and 120 labelled rows it never saw (as a file)."""
    folder = tmp_path_factory.mktemp("evaluate")
    store = folder / "store"
    run = ql.run(CONFIG, train=train_slice(), set={"model.params.max_features": 2000}, store=store, quiet=True)
    labelled = pd.read_csv(QUEST_DIR / "train.csv").iloc[300:420].reset_index(drop=True)
    path = folder / "labelled.csv"
    labelled.to_csv(path, index=False)
    bundle = run.export(folder / "bundle")
    return {"run": run, "store": store, "labelled": labelled, "path": path, "folder": folder, "bundle": bundle}


def test_evaluate_equals_score_cv_of_the_same_predictions(world) -> None:
    run, labelled = world["run"], world["labelled"]
    result = run.evaluate(labelled, n_boot=50)
    frame = validate_frame(labelled, "train")
    pred = run.predict(labelled.drop(columns=list(TARGETS)))
    expected = score_cv(
        frame[list(TARGETS)].to_numpy(),
        pred[list(TARGETS)].to_numpy(),
        np.zeros(len(frame), dtype=int),
        question_groups(frame),
        n_boot=50,
    )
    assert isinstance(result, Evaluation)
    assert result.score == expected.score and result.ci == (expected.ci_low, expected.ci_high)
    pd.testing.assert_frame_equal(result.per_target, expected.per_target)
    assert result.n_rows == 120 and result.n_questions == len(np.unique(question_groups(frame)))
    assert result.ci[0] <= result.score <= result.ci[1] and not result.notes  # rows the run never saw
    assert f"{result.score:.4f}" in repr(result) and "n_rows=120" in repr(result)
    assert "<table" in result._repr_html_() and "question_well_written" in result._repr_html_()
    # the same from the file, and from an exported bundle
    assert run.evaluate(world["path"], n_boot=50).score == result.score
    bundle = ql.load_bundle(world["bundle"])
    assert ql.evaluate(bundle, labelled, n_boot=50).score == pytest.approx(result.score, abs=1e-12)
    assert ql.evaluate(run.id[:8], labelled, n_boot=50, store=world["store"]).score == result.score


def test_rows_the_run_was_trained_on_are_noted(world) -> None:
    result = world["run"].evaluate(train_slice(), n_boot=0)
    assert any("300 of the 300 rows were in the run's train data" in n for n in result.notes)
    assert np.isnan(result.ci[0])


def test_the_command_prints_one_line_and_the_table(world) -> None:
    argv = ["evaluate", world["run"].id[:8], "--input", str(world["path"]), "--store", str(world["store"])]
    result = CliRunner().invoke(app, [*argv, "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    expected = world["run"].evaluate(world["path"], n_boot=50)
    first = result.stdout.splitlines()[0]
    assert first == expected.summary() and f"mean Spearman {expected.score:.4f} (95% CI " in first
    assert "over 120 rows" in first
    assert all(t in result.stdout for t in TARGETS)
    data = json.loads(CliRunner().invoke(app, [*argv, "--bootstrap", "50", "--json"]).stdout)
    assert data["score"] == pytest.approx(expected.score) and data["n_rows"] == 120
    assert [r["target"] for r in data["per_target"]] == list(TARGETS)
    bundled = CliRunner().invoke(app, ["evaluate", str(world["bundle"]), "--input", str(world["path"]), "--json"])
    assert bundled.exit_code == 0, bundled.output
    assert json.loads(bundled.stdout)["score"] == pytest.approx(expected.score, abs=1e-12)


@pytest.mark.parametrize("drop", [list(TARGETS), ["answer_helpful", "answer_plausible"]], ids=["test-format", "two"])
def test_a_file_without_its_targets_is_one_line_exit_2(world, tmp_path: Path, drop: list[str]) -> None:
    path = tmp_path / "unlabelled.csv"
    world["labelled"].drop(columns=drop).to_csv(path, index=False)
    argv = ["evaluate", world["run"].id, "--input", str(path), "--store", str(world["store"])]
    result = CliRunner().invoke(app, argv)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: {path}") and "give a labelled file" in lines[0]
    with pytest.raises(DataError, match="give a labelled file"):
        world["run"].evaluate(path)


def test_predict_on_a_labelled_file_equals_its_test_columns_and_says_so_once(world, tmp_path: Path) -> None:
    run, labelled = world["run"], world["labelled"]
    unlabelled = tmp_path / "unlabelled.csv"
    labelled.drop(columns=list(TARGETS)).to_csv(unlabelled, index=False)
    store = ["--store", str(world["store"])]
    plain = CliRunner().invoke(app, ["predict", run.id, "--input", str(unlabelled), "--output", "-", *store])
    result = CliRunner().invoke(app, ["predict", run.id, "--input", str(world["path"]), "--output", "-", *store])
    assert plain.exit_code == 0 and result.exit_code == 0, result.output
    assert result.stdout == plain.stdout and "note:" not in plain.stderr
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "30 target columns" in notes[0] and "ignored" in notes[0]
    # in pieces (the note once, not once a piece), and from code
    said: list[str] = []
    stream_predictions(run.predictor, world["path"], tmp_path / "p.csv", chunk_rows=25, say=said.append)
    assert len(said) == 1
    streamed = pd.read_csv(tmp_path / "p.csv")
    assert list(streamed[ID]) == list(labelled[ID])
    np.testing.assert_allclose(streamed[list(TARGETS)].to_numpy(), pd.read_csv(_csv(plain.stdout))[list(TARGETS)])


def test_run_predict_takes_a_labelled_frame(world, capsys) -> None:
    run, labelled = world["run"], world["labelled"]
    expected = run.predict(labelled.drop(columns=list(TARGETS)))
    assert "note:" not in capsys.readouterr().err
    pd.testing.assert_frame_equal(run.predict(labelled), expected)
    assert capsys.readouterr().err.count("note:") == 1
    pd.testing.assert_frame_equal(run.predict(world["path"]), expected)
    assert capsys.readouterr().err.count("note:") == 1


def _csv(text: str):
    import io

    return io.StringIO(text)
