"""An honest leaderboard: rows, data and folds recorded on every run, ranks only among comparable runs,
readable unique names, compare saying what differs, and where the results are (issue 31, parts 3 and 6)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import questlab as ql
from helpers.runs import N_FOLDS, train_slice
from questlab.analysis.compare import compare_runs
from questlab.cli import app
from questlab.config import parse_config
from questlab.cv import default_run_name, run_cv
from questlab.errors import UsageError
from questlab.rundir import TAG_DATA, TAG_ROWS, TAG_SPLIT
from questlab.store import Store


def _config(noise: float = 0.3, seed: int = 1, name: str = "noisy") -> dict:
    return {
        "name": name,
        "folds": {"n_splits": N_FOLDS, "seed": seed},
        "model": {"name": "noisy_oracle", "params": {"noise": noise}},
        "bootstrap": 20,
        "log_model": False,
    }


def _run(store: Store, noise: float = 0.3, seed: int = 1, only_folds: list[int] | None = None, train=None) -> str:
    cfg = parse_config(_config(noise, seed))
    return run_cv(cfg, train or train_slice(), store=store, only_folds=only_folds, say=lambda _: None)


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> tuple[Store, dict[str, str]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('board')}/s.db")
    ids = {
        "good": _run(store, 0.3),
        "bad": _run(store, 1.5),
        "partial": _run(store, 0.05, only_folds=[0]),  # the best score, on a third of the rows
        "other_folds_good": _run(store, 0.2, seed=2),
        "other_folds_bad": _run(store, 2.0, seed=2),
    }
    return store, ids


def test_every_run_records_rows_data_and_folds(board):
    store, ids = board
    good, partial, other = (store.get(ids[k]) for k in ("good", "partial", "other_folds_good"))
    assert good.tags[TAG_ROWS] == "300"
    assert 0 < int(partial.tags[TAG_ROWS]) < 300
    assert good.tags[TAG_DATA] == partial.tags[TAG_DATA] == other.tags[TAG_DATA]
    assert len(good.tags[TAG_DATA]) == 12
    assert good.tags[TAG_SPLIT] == partial.tags[TAG_SPLIT]  # folds.csv's assignment, however many were run
    assert good.tags[TAG_SPLIT] != other.tags[TAG_SPLIT]


def test_a_partial_run_is_never_ranked_among_whole_ones(board):
    store, ids = board
    frame = ql.runs(store, sort="cv").set_index("run_id")
    assert frame.loc[ids["partial"], "cv"] > frame.loc[ids["good"], "cv"]  # best score, yet:
    assert frame.loc[ids["partial"], "group"] == ""
    assert pd.isna(frame.loc[ids["partial"], "rank"])
    order = list(frame.index)
    assert order[-1] == ids["partial"]  # after every ranked run
    assert frame.loc[ids["partial"], "rows"] < 300 == frame.loc[ids["good"], "rows"]


def test_runs_on_other_folds_are_not_ranked_against_each_other(board):
    store, ids = board
    frame = ql.runs(store, sort="cv").set_index("run_id")
    same, other = frame.loc[[ids["good"], ids["bad"]]], frame.loc[[ids["other_folds_good"], ids["other_folds_bad"]]]
    assert same["group"].nunique() == 1 and other["group"].nunique() == 1
    assert same["group"].iloc[0] != other["group"].iloc[0]
    # each group its own ranking, 1..n over the group's runs (other tests may add runs to the store)
    for group in (same["group"].iloc[0], other["group"].iloc[0]):
        ranks = sorted(frame.loc[frame["group"] == group, "rank"])
        assert ranks == list(range(1, len(ranks) + 1))
    assert same.loc[ids["good"], "rank"] < same.loc[ids["bad"], "rank"]
    assert other.loc[ids["other_folds_good"], "rank"] < other.loc[ids["other_folds_bad"], "rank"]
    # groups apart: a group's runs are listed together
    groups = [g for g in frame["group"] if g]
    assert groups == sorted(groups, key=lambda g: (len(g), g))


def test_old_runs_without_the_tags_are_read_from_their_files(board):
    store, ids = board
    for tag in (TAG_ROWS, TAG_DATA, TAG_SPLIT):
        store.client.delete_tag(ids["bad"], tag)
    frame = ql.runs(store).set_index("run_id")
    assert frame.loc[ids["bad"], "rows"] == 300
    assert frame.loc[ids["bad"], "data"] == frame.loc[ids["good"], "data"]
    assert frame.loc[ids["bad"], "folds_id"] == frame.loc[ids["good"], "folds_id"]


def test_the_cli_leaderboard_shows_rows_data_folds_and_rank(board):
    store, _ = board
    res = CliRunner().invoke(app, ["runs", "--sort", "cv", "--store", store.uri])
    assert res.exit_code == 0, res.output
    for column in ("rank", "rows", "data", "folds"):
        assert column in res.output
    assert "A1" in res.output and "B1" in res.output
    assert "(partial)" in res.output


def test_compare_says_what_differs_before_the_scores(board):
    store, ids = board
    cmp = compare_runs(store, ids["good"], ids["bad"], n_boot=20)
    assert any(line.startswith("parameters: model.params.noise: 0.3 -> 1.5") for line in cmp.differences)
    assert not any(line.startswith("warning") for line in cmp.differences)
    other = compare_runs(store, ids["good"], ids["other_folds_good"], n_boot=20)
    assert any("folds" in line and "DIFFERENT" in line for line in other.differences)
    assert any(line.startswith("warning: other folds") for line in other.differences)
    with pytest.raises(UsageError, match="rows scored"):
        compare_runs(store, ids["good"], ids["partial"], n_boot=20)
    res = CliRunner().invoke(
        app, ["compare", ids["good"], ids["other_folds_good"], "--n-boot", "20", "--store", store.uri]
    )
    assert res.exit_code == 0, res.output
    assert res.output.index("warning: other folds") < res.output.index("mean Spearman")


def test_default_names_show_overrides_and_are_unique(tmp_path):
    assert default_run_name(parse_config(_config())) == "noisy"
    cfg = parse_config(_config(), overrides=["model.params.noise=30"])
    assert default_run_name(cfg) == "noisy[noise=30]"
    store = Store(f"sqlite:///{tmp_path}/s.db")
    first = ql.run(_config(), train_slice(), set={"model.params.noise": 30}, store=store, quiet=True)
    again = ql.run(_config(), train_slice(), set={"model.params.noise": 30}, store=store, quiet=True)
    named = ql.run(_config(), train_slice(), store=store, quiet=True, name="mine")
    assert (first.name, again.name, named.name) == ("noisy[noise=30]", "noisy[noise=30]-2", "mine")
    cmp = compare_runs(store, first.id, again.id, n_boot=20)
    assert cmp.a.name != cmp.b.name


def test_cli_run_names_prints_where_results_are_and_writes_no_stray_mlflow_db(tmp_path, monkeypatch):
    config = tmp_path / "noisy.yaml"
    config.write_text(yaml.safe_dump({**_config(), "log_model": True}))
    store_dir = tmp_path / "elsewhere" / "store"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv = [
        "run",
        str(config),
        "--train",
        str(train_slice()),
        "--store",
        str(store_dir),
        "--set",
        "model.params.noise=0.5",
    ]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    run_id = res.stdout.strip().splitlines()[-1]
    assert len(run_id) == 32 and " " not in run_id  # alone on the last line
    store = Store(str(store_dir), create=False)
    assert store.get(run_id).name == "noisy[noise=0.5]"
    assert f"export MLFLOW_TRACKING_URI={store.uri}" in res.stderr
    assert f"questlab diagnose {run_id[:8]}" in res.stderr and "questlab runs" in res.stderr
    assert f"mlflow ui --backend-store-uri {store.uri}" in res.stderr
    res = CliRunner().invoke(app, [*argv, "--name", "mine"])
    assert res.exit_code == 0, res.output
    assert store.get(res.stdout.strip().splitlines()[-1]).name == "mine"
    assert not any(p.name.startswith("mlflow.db") for p in cwd.iterdir()), list(cwd.iterdir())
    # the MLflow line of docs/runs.md and docs/export.md works as written once the printed URI is exported
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)  # as in a fresh process: the environment decides
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    assert model is not None
    assert not (cwd / "mlflow.db").exists()


def test_report_prints_the_path_and_opens_it(board, monkeypatch):
    store, ids = board
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    res = CliRunner().invoke(app, ["report", ids["good"][:8], "--n-boot", "20", "--store", store.uri, "--open"])
    assert res.exit_code == 0, res.output
    path = Path(res.stdout.strip().splitlines()[-1])
    assert path.name == "report.html" and path.is_file()
    assert opened == [path.resolve().as_uri()]
    assert os.path.getsize(path) > 0


def test_postprocess_prints_where_results_are_before_its_run_id(board):
    store, ids = board
    res = CliRunner().invoke(app, ["postprocess", ids["good"], "--bootstrap", "20", "--store", store.uri])
    assert res.exit_code == 0, res.output
    new_id = res.stdout.strip().splitlines()[-1]
    assert len(new_id) == 32
    assert f"export MLFLOW_TRACKING_URI={store.uri}" in res.stderr and f"questlab diagnose {new_id[:8]}" in res.stderr
    row = ql.runs(store).set_index("run_id").loc[new_id]
    assert row["rows"] == 300 and row["folds_id"] == store.get(ids["good"]).tags[TAG_SPLIT]
