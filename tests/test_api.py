"""The Python API: questlab driven from a notebook or a script, on DataFrames or files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import questlab as ql
from helpers.runs import test_slice as slice_of_test
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.config import ConfigError
from questlab.data import DataError
from questlab.schema import ID, TARGETS

CONFIG = {"name": "api-tfidf", "folds": {"n_splits": 3, "seed": 1}, "model": {"name": "tfidf"}, "bootstrap": 30}


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(slice_of_train()), pd.read_csv(slice_of_test())


@pytest.fixture(scope="module")
def api_run(frames, tmp_path_factory) -> ql.Run:
    train, test = frames
    store = tmp_path_factory.mktemp("api") / "store"
    return ql.run(CONFIG, train=train, test=test, set={"model.params.max_features": 2000}, store=store, quiet=True)


def test_the_public_surface_is_at_the_package_top() -> None:
    assert {"run", "load_run", "runs", "compare", "load_bundle", "Run"} <= set(dir(ql))
    with pytest.raises(AttributeError):
        ql.no_such_thing  # noqa: B018


def test_a_run_on_dataframes_exposes_its_numbers(api_run: ql.Run, frames) -> None:
    train, test = frames
    run = api_run
    assert run.status == "FINISHED" and run.model == "tfidf"
    assert run.config["model"]["params"]["max_features"] == 2000
    assert run.config["overrides"] == ["model.params.max_features=2000"]
    low, high = run.ci
    assert low <= run.cv <= high and run.cv == pytest.approx(run.record.metrics["cv_score"])
    assert list(run.fold_scores.index) == [0, 1, 2]
    assert list(run.per_target.index) == list(TARGETS) and "spearman" in run.per_target
    assert run.oof.index.name == ID and list(run.oof.columns) == list(TARGETS)
    assert set(run.oof.index) == set(train[ID]) and run.truth.index.equals(run.oof.index)
    pred = run.predict(test)
    assert list(pred.columns) == [ID, *TARGETS]
    np.testing.assert_allclose(pred[list(TARGETS)].to_numpy(), run.submission[list(TARGETS)].to_numpy(), atol=1e-9)
    assert run.id[:8] in repr(run) and run.id in run._repr_html_()
    meta = json.loads((run.record.folder / "run.json").read_text())
    assert meta["train_file"] == "DataFrame" and len(meta["train_sha256"]) == 64


def test_load_compare_leaderboard_and_diagnose(api_run: ql.Run, frames) -> None:
    train, _ = frames
    store = api_run.store
    again = ql.load_run(api_run.id[:10], store=store)
    assert again.id == api_run.id and again.cv == api_run.cv
    other = ql.run(
        CONFIG, train=train, set=["model.params.max_features=2000", "model.params.alpha=50"], store=store, quiet=True
    )
    board = ql.runs(store=store, sort="cv")  # other tests of this module may add runs to the store
    # ranked inside each group of comparable runs (same data, folds, rows); unranked runs come last
    for _, group in board[board["group"] != ""].groupby("group"):
        assert group["cv"].is_monotonic_decreasing
    ranked = (board["group"] != "").to_numpy()
    assert not (~ranked[:-1] & ranked[1:]).any()
    ours = [r for r in board["run_id"] if r in {api_run.id, other.id}]
    assert ours == sorted([api_run.id, other.id], key=lambda r: -ql.load_run(r, store).cv)
    assert ql.runs(store=store, name="nomatch*").empty
    assert len(ql.runs(store=store, limit=1)) == 1
    with pytest.raises(ValueError, match="choose one of"):
        ql.runs(store=store, sort="speed")
    cmp = ql.compare(api_run, other, n_boot=50)
    assert cmp.per_target.shape[0] == 30 and cmp.overall["delta"] == pytest.approx(other.cv - api_run.cv)
    verdicts = api_run.diagnose(n_boot=30)
    table = verdicts.to_frame()
    assert len(table) == len(verdicts) > 0 and set(table["severity"]) <= {"error", "warning", "info", "ok"}
    assert "<table" in verdicts._repr_html_()


def test_dataframes_are_validated_like_files(frames, tmp_path: Path) -> None:
    train, _ = frames
    bad = train.copy()
    bad.loc[4, "answer"] = "  "
    with pytest.raises(DataError, match=r"train DataFrame, column 'answer', row 5 \(qa_id \d+\): empty"):
        ql.run(CONFIG, train=bad, store=tmp_path / "s", quiet=True)
    with pytest.raises(DataError, match="missing target column"):
        ql.run(CONFIG, train=train.drop(columns=["answer_relevance"]), store=tmp_path / "s", quiet=True)
    with pytest.raises(ConfigError, match=r"did you mean 'model.params.alpha'"):
        ql.run(CONFIG, train=train, set={"model.params.alpah": 3}, store=tmp_path / "s", quiet=True)


def test_cli_set_and_leaderboard_json(api_run: ql.Run, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: cli\nbootstrap: 10\nfolds: {n_splits: 3}\nmodel: {name: tfidf}\n")
    store = str(api_run.store.root)
    res = CliRunner().invoke(
        app,
        ["run", str(cfg), "--train", str(slice_of_train()), "--store", store,
         "--set", "model.params.max_features=1500", "--set", "folds.n_splits=4"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    run = ql.load_run(res.stdout.strip().splitlines()[-1], store=store)
    assert run.config["folds"]["n_splits"] == 4 and list(run.fold_scores.index) == [0, 1, 2, 3]
    assert run.config["overrides"] == ["model.params.max_features=1500", "folds.n_splits=4"]
    typo = CliRunner().invoke(
        app, ["run", str(cfg), "--train", str(slice_of_train()), "--store", store, "--set", "seeed=3"]
    )
    assert typo.exit_code == 2 and "did you mean 'seed'" in typo.output
    listed = CliRunner().invoke(app, ["runs", "--store", store, "--sort", "cv", "--limit", "2", "--json"])
    rows = json.loads(listed.stdout)
    assert len(rows) == 2 and rows[0]["cv"] >= rows[1]["cv"]
    only = CliRunner().invoke(app, ["runs", "--store", store, "--name", "cli[max_features=1500,n_splits=4]", "--json"])
    assert [r["run_id"] for r in json.loads(only.stdout)] == [run.id]
    bad = CliRunner().invoke(app, ["runs", "--store", store, "--tag", "novalue"])
    assert bad.exit_code == 2 and "KEY=VALUE" in bad.output


def test_a_bundle_loads_as_a_model_from_code(api_run: ql.Run, frames, tmp_path: Path) -> None:
    _, test = frames
    bundle = api_run.export(tmp_path / "bundle")
    model = ql.load_bundle(bundle)
    assert api_run.id[:8] in repr(model)
    out = model.predict(test)
    assert list(out.columns) == [ID, *TARGETS] and (out[ID] == test[ID]).all()
    np.testing.assert_allclose(out[list(TARGETS)].to_numpy(), api_run.predict(test)[list(TARGETS)].to_numpy())


def test_a_bug_exits_1_with_its_traceback_and_a_user_error_exits_2(monkeypatch, tmp_path: Path) -> None:
    import questlab.cv

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug in questlab")

    monkeypatch.setattr(questlab.cv, "run_cv", broken)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: x\nmodel: {name: mean}\n")
    args = ["run", str(cfg), "--train", str(slice_of_train()), "--store", str(tmp_path / "s")]
    bug = CliRunner().invoke(app, args)
    assert bug.exit_code == 1
    assert "ZeroDivisionError: a bug in questlab" in bug.output and "internal error (a bug" in bug.output
    user = CliRunner().invoke(app, ["run", str(tmp_path / "missing.yaml"), "--train", str(slice_of_train())])
    assert user.exit_code == 2 and user.output.startswith("error: ") and "Traceback" not in user.output
