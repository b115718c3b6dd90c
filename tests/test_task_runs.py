"""Runs of a task other than QUEST (the synthetic "reviews" task, metric mcrmse, lower is better):
recorded with their task, ranked by its metric, analysed and refused under another task."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import questlab as ql
from helpers.synthetic_task import TARGETS, make_frame, write_spec
from questlab.cli import app
from questlab.cv import run_cv
from questlab.errors import RunFormatError, UsageError
from questlab.leaderboard import _rank_in_groups
from questlab.rundir import TAG_TASK, TASK_FILE, read_task

SETTINGS = {"folds.n_splits": 3, "bootstrap": 20, "log_model": False}


def quiet(msg: str) -> None:
    pass


@pytest.fixture()
def task_files(tmp_path: Path) -> tuple[Path, Path]:
    """The spec and a labelled file of the synthetic task."""
    spec = write_spec(tmp_path)
    train = tmp_path / "reviews.csv"
    make_frame(90, seed=3).to_csv(train, index=False)
    return spec, train


def test_api_run_records_its_task_and_scores_with_its_metric(store, task_files) -> None:
    spec, train = task_files
    run = ql.run("mean", train, set=SETTINGS, store=store, task=spec, quiet=True)
    folder = store.get(run.id).folder
    assert folder.has(TASK_FILE)
    meta = folder.read_meta()
    assert meta.task == "reviews" and TASK_FILE in meta.checksums
    assert store.get(run.id).tags[TAG_TASK] == "reviews"
    task = read_task(folder)
    assert task.name == "reviews" and task.metric == "mcrmse" and run.task.name == "reviews"
    scores = run.scores
    assert scores.metric == "mcrmse" and list(scores.per_target.index) == list(TARGETS)
    assert list(scores.per_target.columns) == ["rmse", "status"] and (scores.per_target["status"] == "ok").all()
    assert 0 < run.cv < 10 and scores.ci_low <= run.cv <= scores.ci_high
    assert list(run.oof.columns) == list(TARGETS)
    # a changed task.json is refused like any recorded file
    (folder / TASK_FILE).write_text(json.dumps({**task.to_data(), "description": "edited"}))
    with pytest.raises(RunFormatError, match=TASK_FILE):
        read_task(folder)


def test_quest_runs_record_task_quest(store, train_slice_csv: Path) -> None:
    run = ql.run("mean", train_slice_csv, set=SETTINGS, store=store, quiet=True)
    folder = store.get(run.id).folder
    assert folder.read_meta().task == "quest" and read_task(folder).name == "quest"
    assert store.get(run.id).tags[TAG_TASK] == "quest" and run.scores.metric == "spearman"


def test_old_runs_without_task_json_read_as_quest(tmp_path: Path) -> None:
    assert read_task(tmp_path).name == "quest"


def test_cli_run_with_task_then_runs_diagnose_report_name_the_metric(tmp_path: Path, task_files) -> None:
    spec, train = task_files
    store = tmp_path / "cli-store"
    cli = CliRunner()
    sets = [a for k, v in SETTINGS.items() for a in ("--set", f"{k}={str(v).lower()}")]
    args = ["run", "mean", "--task", str(spec), "--train", str(train), "--store", str(store), *sets]
    done = cli.invoke(app, args)
    assert done.exit_code == 0, done.output
    run_id = done.stdout.strip().splitlines()[-1]
    assert "mcrmse" in done.output and "lower is better" in done.output
    listed = cli.invoke(app, ["runs", "--store", str(store)])
    assert listed.exit_code == 0, listed.output
    assert "reviews" in listed.stdout and "CV mcrmse" in listed.stdout
    board = json.loads(cli.invoke(app, ["runs", "--store", str(store), "--json"]).stdout)
    assert board[0]["task"] == "reviews" and board[0]["metric"] == "mcrmse"
    diag = cli.invoke(app, ["diagnose", run_id, "--store", str(store)])
    assert diag.exit_code == 0, diag.output
    assert "CV mcrmse" in diag.stdout and "lower is better" in diag.stdout
    # the mean model predicts constants: weak under an error metric, never "undefined, counts 0"
    assert "counts 0" not in diag.stdout and "weak" in diag.stdout
    report = cli.invoke(app, ["report", run_id, "--store", str(store)])
    assert report.exit_code == 0, report.output
    html = Path(report.stdout.strip().splitlines()[-1]).read_text()
    assert "CV mcrmse" in html and "reviews" in html


def test_evaluate_scores_with_the_runs_metric(store, task_files, tmp_path: Path) -> None:
    spec, train = task_files
    run = ql.run("mean", train, set=SETTINGS, store=store, task=spec, quiet=True)
    labelled = tmp_path / "more.csv"
    make_frame(30, seed=9).to_csv(labelled, index=False)
    result = run.evaluate(labelled, n_boot=20)
    assert result.task.name == "reviews" and "mcrmse" in result.summary() and "lower is better" in result.summary()
    assert result.to_dict()["metric"] == "mcrmse" and result.to_dict()["per_target"][0].keys() >= {"rmse"}


def test_leaderboard_ranks_lower_is_better_and_never_mixes_tasks() -> None:
    base = {"complete": True, "data": "d", "folds_id": "f", "rows": "90"}
    frame = pd.DataFrame(
        [
            {**base, "task": "reviews", "metric": "mcrmse", "cv": 0.9},
            {**base, "task": "reviews", "metric": "mcrmse", "cv": 0.3},
            {**base, "task": "quest", "metric": "spearman", "cv": 0.2},
            {**base, "task": "quest", "metric": "spearman", "cv": 0.4},
        ]
    )
    ranked = _rank_in_groups(frame)
    assert ranked.loc[1, "rank"] == 1 and ranked.loc[0, "rank"] == 2  # lowest error first
    assert ranked.loc[3, "rank"] == 1 and ranked.loc[2, "rank"] == 2  # highest Spearman first
    assert ranked.loc[0, "group"] == ranked.loc[1, "group"] != ranked.loc[2, "group"] == ranked.loc[3, "group"]


def test_leaderboard_of_recorded_runs_ranks_the_lower_error_first(store, task_files) -> None:
    spec, train = task_files
    ids = [ql.run("mean", train, set=SETTINGS, store=store, task=spec, quiet=True).id for _ in range(2)]
    store.log_metrics(ids[0], {"cv_score": 0.8})
    store.log_metrics(ids[1], {"cv_score": 0.2})
    board = ql.runs(store=store).set_index("run_id")
    assert board.loc[ids[1], "rank"] == 1 and board.loc[ids[0], "rank"] == 2
    assert (board["task"] == "reviews").all() and board.loc[ids[0], "group"] == board.loc[ids[1], "group"]


def test_resuming_under_another_task_is_refused_naming_both(store, task_files) -> None:
    spec, train = task_files
    run = ql.run("mean", train, set=SETTINGS, store=store, task=spec, folds=[0], quiet=True)
    with pytest.raises(UsageError, match=r"'reviews'.*'quest'"):
        run_cv(None, train, store=store, resume=run.id, task="quest", say=quiet)
    # under its own task (given again or not) it resumes
    assert run_cv(None, train, store=store, resume=run.id, task=spec, say=quiet) == run.id
