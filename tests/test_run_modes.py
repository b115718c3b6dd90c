"""How a run is run changes nothing it records: parallel folds equal serial ones; SIGTERM marks KILLED.

Also what predicting from a run that is not whole does: a killed run (folds unfinished) is refused
with the command that finishes it; a partial run made with ``--fold`` predicts with its own folds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.paths import REPO, require_quest
from helpers.processes import start_tfidf_run, wait_for_folds
from helpers.runs import N_FOLDS
from helpers.runs import test_slice as slice_of_test
from helpers.runs import train_slice as slice_of_train
from helpers.tiny_encoder import cache_dir, tiny_encoder  # noqa: F401  (fixtures)
from questlab.config import parse_config
from questlab.cv import run_cv
from questlab.data import load_test
from questlab.errors import RunFormatError
from questlab.predict import load_predictor
from questlab.recording import load_scores
from questlab.rundir import FIT_LOG_FILE, read_predictions
from questlab.schema import TARGETS
from questlab.store import Store


def _tfidf(parallel_folds: int) -> object:
    return parse_config(
        {
            "name": f"tfidf-p{parallel_folds}",
            "parallel_folds": parallel_folds,
            "folds": {"n_splits": N_FOLDS, "seed": 1},
            "model": {"name": "tfidf", "params": {"max_features": 2000}},
            "bootstrap": 20,
        }
    )


def test_parallel_folds_record_exactly_what_serial_folds_record(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    serial = store.folder(run_cv(_tfidf(1), slice_of_train(), slice_of_test(), store=store, say=str))
    parallel = store.folder(run_cv(_tfidf(2), slice_of_train(), slice_of_test(), store=store, say=str))
    for name in ("oof.csv", "submission.csv", "per_target.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(parallel / name), pd.read_csv(serial / name), obj=name)
    pd.testing.assert_frame_equal(load_scores(parallel).per_fold, load_scores(serial).per_fold)
    for k in range(N_FOLDS):  # each fold's own files too, whichever process wrote them
        for part in ("valid_pred.csv", "test_pred.csv"):
            assert (parallel.fold_dir(k) / part).read_bytes() == (serial.fold_dir(k) / part).read_bytes()


# OpenBLAS picks its kernel from the CPU: these force others (they failed the test above before a
# fold's fit ran with the same BLAS threads in both modes), with 2 BLAS threads even on 1 core.
OTHER_BLAS = {"haswell": {"OPENBLAS_CORETYPE": "Haswell"}, "prescott": {"OPENBLAS_CORETYPE": "Prescott"}}


@pytest.mark.parametrize("blas", sorted(OTHER_BLAS))
def test_parallel_folds_equal_serial_ones_under_another_blas_kernel(tmp_path: Path, blas: str) -> None:
    """The test above in a fresh process (OpenBLAS reads its settings when it loads) under ``blas``."""
    slice_of_train()  # fails here, naming the path, when the data is missing
    env = {**os.environ, **OTHER_BLAS[blas], "OPENBLAS_NUM_THREADS": "2"}
    test = f"{Path(__file__).resolve()}::{test_parallel_folds_record_exactly_what_serial_folds_record.__name__}"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", test]
    done = subprocess.run([*cmd, "--basetemp", str(tmp_path / "t")], env=env, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")
def test_sigterm_marks_the_run_killed_exits_130_and_its_model_refuses_to_predict(tmp_path: Path) -> None:
    require_quest()
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc, store_dir = start_tfidf_run(tmp_path, "term", stderr=stderr)
        wait_for_folds(proc, store_dir, 1)  # fold 0 is being fitted
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    store = Store(store_dir)
    (record,) = store.list_runs()
    message = err.read_text()
    assert rc == 130, message
    assert record.status == "KILLED" and "interrupted" in record.tags["questlab.error"]
    assert f"questlab run --resume {record.run_id} --train" in message and "Traceback" not in message
    done = store.folder(record.run_id).done_folds()
    assert len(done) < 5 and record.tags["questlab.complete"] == "false"
    first_missing = min(set(range(5)) - set(done))
    with pytest.raises(RunFormatError, match=rf"cannot predict: fold_{first_missing} is not finished.*--resume"):
        load_predictor(store, record.run_id)


def test_a_partial_run_predicts_with_the_folds_it_has(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    run_id = run_cv(_tfidf(1), slice_of_train(), slice_of_test(), store=store, only_folds=[1], say=str)
    predictor = load_predictor(store, run_id)
    assert len(predictor.models) == 1
    run = store.folder(run_id)
    own = read_predictions(run.fold_dir(1) / "test_pred.csv")[list(TARGETS)].to_numpy()
    got = predictor.predict(load_test(slice_of_test()))
    np.testing.assert_allclose(got, np.clip(own, 0, 1), atol=1e-12)
    assert store.get(run_id).tags["questlab.complete"] == "false"


def test_parallel_embedding_folds_embed_once_and_record_what_serial_folds_record(
    tmp_path: Path,
    tiny_encoder,  # noqa: F811
    cache_dir,  # noqa: F811
) -> None:
    """``Model.prepare`` fills the vector cache before the fold workers start: no worker runs the
    encoder (each would redo the same texts at once), and the folds equal serial ones."""

    def config(parallel_folds: int) -> object:
        params = {"encoder": str(tiny_encoder), "max_tokens": 32, "progress": False, "host_min_count": 2}
        params |= {"max_epochs": 3, "patience": 2, "n_seeds": 2, "hidden": 16, "early_stopping": "holdout"}
        return parse_config(
            {
                "name": f"emb-p{parallel_folds}",
                "parallel_folds": parallel_folds,
                "folds": {"n_splits": N_FOLDS, "seed": 1},
                "model": {"name": "embedding", "params": params},
                "bootstrap": 0,
            }
        )

    train, test = slice_of_train(), slice_of_test()
    store = Store(tmp_path / "store")
    parallel = store.folder(run_cv(config(2), train, test, store=store, say=str))
    for k in range(N_FOLDS):
        caches = json.loads((parallel.fold_dir(k) / FIT_LOG_FILE).read_text())["info"]["embedding_cache"]
        assert sum(c["misses"] for c in caches) == 0 and sum(c["hits"] for c in caches) > 0, (k, caches)
    serial = store.folder(run_cv(config(1), train, test, store=store, say=str))
    for name in ("oof.csv", "submission.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(parallel / name), pd.read_csv(serial / name), obj=name, atol=1e-6)
