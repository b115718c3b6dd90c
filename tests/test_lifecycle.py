"""The run lifecycle: who runs a run, dead runs, one process per run, fold files checked, damaged models named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import questlab as ql
from helpers.paths import require_quest
from helpers.processes import start_tfidf_run, wait_for_folds
from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.errors import RunFormatError, UsageError
from questlab.models import Model
from questlab.predict import load_predictor
from questlab.store import Store, liveness

TFIDF = {"max_features": 2000}


def _gone_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_whose_process_is_gone_is_dead_and_a_live_one_cannot_be_resumed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    dead = store.create_run("dead", tags={liveness.TAG_HOST: liveness.socket.gethostname(),
                                          liveness.TAG_PID: str(_gone_pid()),
                                          liveness.TAG_HEARTBEAT: f"{time.time():.0f}"})  # fmt: skip
    live = store.create_run("live", tags={liveness.TAG_HOST: liveness.socket.gethostname(),
                                          liveness.TAG_PID: str(os.getpid()),
                                          liveness.TAG_HEARTBEAT: f"{time.time():.0f}"})  # fmt: skip
    old_beat = f"{time.time() - 10 * liveness.STALE_S:.0f}"
    store.create_run("stale", tags={liveness.TAG_HOST: "elsewhere", liveness.TAG_PID: "1",
                                    liveness.TAG_HEARTBEAT: old_beat})  # fmt: skip
    board = ql.runs(store=store).set_index("name")["status"]
    assert board["dead"] == "DEAD" and board["stale"] == "DEAD" and board["live"] == "RUNNING"
    with pytest.raises(UsageError, match=rf"run {live} is still running \(pid {os.getpid()}"):
        store.reopen(live)
    store.reopen(dead)  # allowed: its process is gone


def test_one_process_per_run_on_a_machine(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    run_id = store.create_run("x", tags={})
    with store.recording(run_id):
        assert store.get(run_id).tags[liveness.TAG_PID] == str(os.getpid())
        with pytest.raises(UsageError, match=f"run {run_id} is being run by another process"), store.recording(run_id):
            pass
    assert store.get(run_id).status == "FINISHED"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux-only")
def test_a_hard_killed_run_is_dead_and_leaves_no_fold_workers(tmp_path: Path) -> None:
    import psutil

    require_quest()
    proc, store = start_tfidf_run(tmp_path, "slow", parallel_folds=2)
    parent = psutil.Process(proc.pid)
    wait_for_folds(proc, store, 2)
    workers = parent.children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"orphaned fold workers: {[w.pid for w in alive]}"
    (row,) = ql.runs(store=store).to_dict(orient="records")
    assert row["status"] == "DEAD"


@pytest.fixture()
def finished(tmp_path: Path) -> tuple[Store, str]:
    store = Store(tmp_path / "store")
    return store, tiny_run(store, "tfidf", TFIDF)


def test_a_deleted_fold_file_is_reported_refused_and_refitted(finished) -> None:
    store, run_id = finished
    run = store.folder(run_id)
    (run.fold_dir(1) / "valid_pred.csv").unlink()
    verdicts = ql.load_run(run_id, store=store).diagnose(n_boot=20)
    codes = {v.code: v for v in verdicts}
    assert codes["run.files"].severity == "error" and "fold_1/valid_pred.csv is missing" in codes["run.files"].message
    with pytest.raises(RunFormatError, match=r"fold_1/valid_pred.csv is missing.*--resume"):
        load_predictor(store, run_id)
    from questlab.cv import run_cv

    fits: list[int] = []
    import questlab.models.tfidf as tfidf

    real_fit = tfidf.TfidfModel.fit

    def counting(self, train, valid, log):
        fits.append(1)
        return real_fit(self, train, valid, log)

    tfidf.TfidfModel.fit = counting
    try:
        run_cv(None, slice_of_train(), slice_of_test(), store=store, resume=run_id, say=lambda _: None)
    finally:
        tfidf.TfidfModel.fit = real_fit
    assert len(fits) == 1 and store.get(run_id).status == "FINISHED"
    assert load_predictor(store, run_id).predict(pd.read_csv(slice_of_test())).shape[1] == 30


def test_a_damaged_model_names_its_file_and_what_to_do(finished, tmp_path: Path) -> None:
    store, run_id = finished
    model_dir = store.folder(run_id).fold_dir(0) / "model"
    victim = max(
        (p for p in model_dir.rglob("*") if p.is_file() and p.name != "model.json"), key=lambda p: p.stat().st_size
    )
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    res = CliRunner().invoke(
        app, ["predict", run_id, "--input", str(slice_of_test()), "--output", str(tmp_path / "p.csv"),
              "--store", str(store.root)],
    )  # fmt: skip
    assert res.exit_code == 2 and f"fold_0/model/{victim.name} changed since the fold was recorded" in res.output
    with pytest.raises(RunFormatError, match=r"model cannot be loaded .* damaged or incomplete"):
        Model.load(model_dir)
    (model_dir / "model.json").write_text("{broken")
    with pytest.raises(RunFormatError, match=r"model.json: not a readable model.json"):
        Model.load(model_dir)


def test_ctrl_c_names_the_run_to_resume(tmp_path: Path, monkeypatch) -> None:
    import questlab.models.mean as mean

    def interrupted(self, train, valid, log):
        raise KeyboardInterrupt

    monkeypatch.setattr(mean.MeanModel, "fit", interrupted)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: m\nfolds: {n_splits: 3}\nmodel: {name: mean}\n")
    store = tmp_path / "store"
    res = CliRunner().invoke(app, ["run", str(cfg), "--train", str(slice_of_train()), "--store", str(store)])
    run_id = Store(store).list_runs()[0].run_id
    assert res.exit_code == 130 and f"--resume {run_id} --train" in res.output
    verdicts = {v.code for v in ql.load_run(run_id, store=store).diagnose(n_boot=20)}
    assert "run.interrupted" in verdicts and "run.partial" not in verdicts
    assert json.loads((Store(store).folder(run_id) / "run.json").read_text())["run_id"] == run_id


def test_temp_folders_of_killed_processes_are_removed_and_live_ones_kept(tmp_path) -> None:
    """A SIGKILLed export or tune cannot clean up its temp folder; the next one beside it does."""
    import os
    import subprocess
    import sys

    from questlab.store import liveness
    from questlab.tuning.study import TUNE_TMP_PREFIX

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    orphan = tmp_path / f"{TUNE_TMP_PREFIX}{dead}-abc"
    orphan.mkdir()
    (orphan / "train.csv").write_text("rows")
    mine = liveness.owned_temp_dir(TUNE_TMP_PREFIX, tmp_path)
    old_unnamed = tmp_path / f"{TUNE_TMP_PREFIX}xyz"  # an older questlab's name: kept until untouched an hour
    old_unnamed.mkdir()
    liveness.remove_orphaned_dirs(tmp_path, TUNE_TMP_PREFIX)
    assert not orphan.exists() and mine.exists() and old_unnamed.exists()
    assert mine.name.startswith(f"{TUNE_TMP_PREFIX}{os.getpid()}-")
    os.utime(old_unnamed, (0, 0))
    liveness.remove_orphaned_dirs(tmp_path, TUNE_TMP_PREFIX)
    assert not old_unnamed.exists() and mine.exists()


def test_an_interrupt_turned_into_a_library_error_still_marks_the_run_killed(tmp_path) -> None:
    """SIGTERM landing inside an MLflow database commit comes out as the library's own error with the
    interrupt in its context (seen in CI): the run is KILLED and the interrupt goes on, never a bug."""
    import pytest

    from questlab.store import Store
    from questlab.store.liveness import interrupted_by

    store = Store(tmp_path / "store")
    run_id = store.create_run("x", tags={})
    with pytest.raises(KeyboardInterrupt, match="signal 15"), store.recording(run_id):
        try:
            raise KeyboardInterrupt("signal 15")
        except KeyboardInterrupt:
            raise RuntimeError("Transaction is not on the active transaction list") from None
    assert store.get(run_id).status == "KILLED"
    assert interrupted_by(ValueError("plain")) is None
