"""Every run-level file a later stage reads is checked against the sha256 run.json recorded.

A member's oof.csv rewritten to look perfect, or cut short, must be refused with one line, never
ensembled into a nested CV of 1.0 or an IndexError. Runs recorded before checksums existed
(questlab <= 0.9.0) have none and still read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from questlab.ensemble import EnsembleSpec
from questlab.ensemble_runs import build_ensemble, postprocess_run
from questlab.errors import RunFormatError
from questlab.rundir import CHECKED_FILES, META_FILE, OOF_FILE, TRUTH_FILE
from questlab.schema import TARGETS
from questlab.store import Store

RECORDED = Path(__file__).resolve().parent / "data" / "v0_9_0"


def _run(store: Store, model: str) -> str:
    import questlab as ql

    config = {
        "name": model,
        "seed": 3,
        "folds": {"n_splits": 3, "seed": 3},
        "bootstrap": 5,
        "parallel_folds": 1,
        "model": {"name": model, "params": {"min_df": 1, "max_features": 300} if model == "tfidf" else {}},
    }
    return ql.run(config, RECORDED / "train.csv", RECORDED / "test.csv", store=store, quiet=True).id


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Store, str, str]:
    store = Store(tmp_path / "store" / "mlflow.db")
    return store, _run(store, "tfidf"), _run(store, "mean")


def test_a_scored_run_records_the_checksums_of_its_files(runs: tuple[Store, str, str]) -> None:
    store, tfidf, _ = runs
    folder = store.folder(tfidf)
    recorded = json.loads((folder / META_FILE).read_text())["checksums"]
    assert {OOF_FILE, TRUTH_FILE, "scores.json", "folds.csv", "submission.csv"} <= set(recorded) <= set(CHECKED_FILES)
    assert recorded == folder.take_checksums()


def test_a_rewritten_oof_is_refused_by_ensemble_and_postprocess(runs: tuple[Store, str, str]) -> None:
    store, tfidf, mean = runs
    folder = store.folder(tfidf)
    oof, truth = pd.read_csv(folder / OOF_FILE), pd.read_csv(folder / TRUTH_FILE)
    oof[list(TARGETS)] = truth[list(TARGETS)].to_numpy() * 0.5 + 0.25  # "perfect" predictions
    oof.to_csv(folder / OOF_FILE, index=False)
    with pytest.raises(RunFormatError, match=r"oof\.csv changed since the run was recorded"):
        postprocess_run(store, tfidf)
    with pytest.raises(RunFormatError, match=r"oof\.csv changed"):
        build_ensemble(store, [mean, tfidf], EnsembleSpec(weights="equal"))


def test_a_cut_oof_is_refused_in_one_line(runs: tuple[Store, str, str]) -> None:
    store, tfidf, _ = runs
    path = store.folder(tfidf) / OOF_FILE
    path.write_text("\n".join(path.read_text().splitlines()[:20]) + "\n")
    with pytest.raises(RunFormatError, match="changed since"):
        postprocess_run(store, tfidf)


def test_runs_recorded_without_checksums_still_read(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(RECORDED / "store", tmp_path / "store")
    store = Store(tmp_path / "store" / "mlflow.db", create=False)
    runs = json.loads((RECORDED / "expected" / "runs.json").read_text())
    assert store.folder(runs["tfidf"]).checksums() == {}
    assert len(store.folder(runs["tfidf"]).read_oof()) == 120
