"""Resume: a run stopped after a fold and resumed records exactly what an uninterrupted run records.

Until this file, resume was only checked by counting fits. Here the OOF predictions, the test
predictions and the per-fold and pooled scores of a stopped-then-resumed run are compared with
those of the same config run in one go, with a model whose fit draws from the seeded global
generator (``helpers.seeded_model``), so a resume that seeded, split or refitted differently shows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import helpers.seeded_model  # noqa: F401  # registers "seeded_length"
from helpers.runs import N_FOLDS
from helpers.runs import test_slice as slice_of_test
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.errors import RunFormatError, UsageError
from questlab.predict import load_predictor
from questlab.recording import load_scores
from questlab.store import RunStopped, Store


def _config(model: str = "seeded_length", params: dict | None = None) -> object:
    return parse_config(
        {
            "name": f"resume-{model}",
            "seed": 3,
            "folds": {"n_splits": N_FOLDS, "seed": 1},
            "model": {"name": model, "params": params or {}},
            "bootstrap": 30,
        }
    )


def _stop_after_first_fold(k: int, score: float, scores: list[float]) -> None:
    raise RunStopped(f"stopped after fold {k} (test)")


def _recorded(store: Store, run_id: str) -> dict[str, pd.DataFrame | float]:
    run = store.folder(run_id)
    scores = load_scores(run)
    return {
        "oof": pd.read_csv(run / "oof.csv"),
        "submission": pd.read_csv(run / "submission.csv"),
        "per_fold": scores.per_fold,
        "per_target": scores.per_target,
        "score": scores.score,
        "ci": (scores.ci_low, scores.ci_high),
    }


def _stopped_run(store: Store, config: object) -> str:
    with pytest.raises(RunStopped):
        run_cv(config, slice_of_train(), slice_of_test(), store=store, on_fold=_stop_after_first_fold, say=str)
    (stopped,) = store.list_runs()
    assert stopped.status == "KILLED"
    assert store.folder(stopped.run_id).done_folds() == [0]  # only the first fold was recorded
    return stopped.run_id


def test_a_stopped_and_resumed_run_records_what_an_uninterrupted_run_records(tmp_path: Path) -> None:
    stopped_store, whole_store = Store(tmp_path / "stopped"), Store(tmp_path / "whole")
    run_id = _stopped_run(stopped_store, _config())
    fold0 = (stopped_store.folder(run_id).fold_dir(0) / "valid_pred.csv").read_bytes()

    assert run_cv(None, slice_of_train(), slice_of_test(), store=stopped_store, resume=run_id, say=str) == run_id
    whole = run_cv(_config(), slice_of_train(), slice_of_test(), store=whole_store, say=str)

    assert stopped_store.get(run_id).status == "FINISHED"
    assert stopped_store.get(run_id).tags["questlab.complete"] == "true"
    # the kept fold was not refitted: its file is byte for byte what the first attempt wrote
    assert (stopped_store.folder(run_id).fold_dir(0) / "valid_pred.csv").read_bytes() == fold0
    resumed, uninterrupted = _recorded(stopped_store, run_id), _recorded(whole_store, whole)
    pd.testing.assert_frame_equal(resumed["oof"], uninterrupted["oof"])
    pd.testing.assert_frame_equal(resumed["submission"], uninterrupted["submission"])
    pd.testing.assert_frame_equal(resumed["per_fold"], uninterrupted["per_fold"])
    pd.testing.assert_frame_equal(resumed["per_target"], uninterrupted["per_target"])
    assert resumed["score"] == uninterrupted["score"] and resumed["ci"] == uninterrupted["ci"]
    assert len(set(resumed["per_fold"]["score"])) == N_FOLDS  # the folds really differ (seed + fold)


def test_resume_refuses_another_train_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    run_id = _stopped_run(store, _config())
    other = tmp_path / "other_train.csv"
    pd.read_csv(slice_of_train()).head(200).to_csv(other, index=False)
    with pytest.raises(UsageError, match=rf"the train data given \(other_train.csv\) is not what run {run_id}"):
        run_cv(None, other, slice_of_test(), store=store, resume=run_id, say=str)
    with pytest.raises(UsageError, match=rf"run {run_id} was made with test data"):
        run_cv(None, slice_of_train(), None, store=store, resume=run_id, say=str)
    assert store.get(run_id).status == "KILLED"  # a refused resume leaves the run as it was
    assert store.folder(run_id).done_folds() == [0]


def test_a_stopped_run_refuses_to_predict_until_resumed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    run_id = _stopped_run(store, _config())
    with pytest.raises(
        RunFormatError, match=rf"run {run_id} cannot predict: fold_1 is not finished.*--resume {run_id}"
    ):
        load_predictor(store, run_id)


def test_cli_resume_finishes_a_stopped_run_with_the_same_oof(tmp_path: Path) -> None:
    tfidf = _config("tfidf", {"max_features": 2000})
    store_dir = tmp_path / "store"
    run_id = _stopped_run(Store(store_dir), tfidf)
    runner = CliRunner()
    train, test = str(slice_of_train()), str(slice_of_test())
    refused = runner.invoke(app, ["run", "--resume", run_id, "--train", test, "--store", str(store_dir)])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    res = runner.invoke(app, ["run", "--resume", run_id, "--train", train, "--test", test, "--store", str(store_dir)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == run_id
    assert "fold 0: already done, kept" in res.output
    whole_store = Store(tmp_path / "whole")
    whole = run_cv(tfidf, slice_of_train(), slice_of_test(), store=whole_store, say=str)
    pd.testing.assert_frame_equal(_recorded(Store(store_dir), run_id)["oof"], _recorded(whole_store, whole)["oof"])
