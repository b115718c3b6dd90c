"""Hard stops from outside (issue 30, items 8-10): nothing a killed command started outlives it,
a stopped study says how it ended, a tracking store that stops answering is one line.

Processes are found by an environment marker every process a command starts inherits: an orphan
reparented to PID 1 (or to a subreaper) is still found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.mlflow_server import free_port, start_mlflow_server
from helpers.paths import QUEST_DIR, REPO, require_quest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG and /proc are Linux-only")

MARKER = "QUESTLAB_TEST_MARKER"


def _marked(marker: str) -> list:
    """Live processes (zombies aside) whose environment carries ``MARKER=marker``."""
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(MARKER) == marker:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _survivors(marker: str, within: float) -> list[str]:
    """What still runs with the marker after ``within`` seconds (then killed: no test leaves orphans)."""
    deadline = time.monotonic() + within
    while (alive := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    described = []
    for proc in alive:
        try:
            described.append(f"{proc.pid} (ppid {proc.ppid()}): {' '.join(proc.cmdline())[:120]}")
            proc.kill()
        except Exception:
            pass
    return described


def _marked_env(marker: str) -> dict[str, str]:
    return {**os.environ, MARKER: marker}


def _train_rows(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / f"train_{rows}.csv"
    pd.read_csv(QUEST_DIR / "train.csv").head(rows).to_csv(path, index=False)
    return path


# --- 8. fold workers die with the run ----------------------------------------------------------------


def _fold_workers(pid: int) -> list:
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for kid in kids:
        try:
            if "resource_tracker" not in " ".join(kid.cmdline()):
                out.append(kid)
        except psutil.NoSuchProcess:
            continue
    return out


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_sigkill_of_a_run_soon_after_its_fold_workers_start_leaves_no_process(tmp_path: Path, delay: float) -> None:
    """SIGKILL 0-1 s after the fold workers appear (before or while they take their first fold):
    the workers, and loky's resource tracker, are gone within seconds."""
    require_quest()
    marker = uuid.uuid4().hex
    cfg = tmp_path / "c.yaml"
    config = {"name": "orphans", "parallel_folds": 2, "bootstrap": 0, "folds": {"n_splits": 5}}
    cfg.write_text(yaml.safe_dump({**config, "model": {"name": "tfidf"}}))
    cmd = [sys.executable, "-m", "questlab.cli", "run", str(cfg), "--train", str(_train_rows(tmp_path, 3000))]
    proc = subprocess.Popen(
        [*cmd, "--store", str(tmp_path / "store")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=_marked_env(marker),
    )
    try:
        deadline = time.monotonic() + 120
        while len(_fold_workers(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None and len(_fold_workers(proc.pid)) >= 2, "the run never started its fold workers"
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    survivors = _survivors(marker, within=5)
    assert not survivors, f"processes of the killed run still alive 5 s later: {survivors}"


# --- 9. a study stopped from outside ---------------------------------------------------------------

STUDY = {
    "name": "stopme",
    "folds": {"n_splits": 5, "seed": 1},
    "bootstrap": 0,
    "model": {"name": "tfidf", "params": {"max_features": 5000}},
}
SPACE = {"params": {"model.params.alpha": {"float": [0.3, 100], "log": True}}}


def _count(db: Path, query: str) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=1)) as con:
            return con.execute(query).fetchone()[0]
    except sqlite3.Error:  # not set up yet, or busy
        return 0


def _running_trials(store: Path) -> int:
    """Trials running in Optuna's storage."""
    return _count(store / "optuna.db", "SELECT count(*) FROM trials WHERE state = 'RUNNING'")


def _running_trial_runs(store: Path) -> int:
    """Trials whose recorded (MLflow) run is RUNNING."""
    return _count(store / "mlflow.db", "SELECT count(*) FROM runs WHERE status = 'RUNNING' AND name LIKE 'stopme-t%'")


def _start_study(tmp_path: Path, marker: str, trials: int, stderr) -> tuple[subprocess.Popen, Path, Path]:
    """``questlab tune --workers 2`` in a subprocess; returns once both processes run a trial."""
    cfg, space = tmp_path / "stopme.yaml", tmp_path / "space.yaml"
    cfg.write_text(yaml.safe_dump(STUDY))
    space.write_text(yaml.safe_dump(SPACE))
    train, store = _train_rows(tmp_path, 2000), tmp_path / "store"
    cmd = [sys.executable, "-m", "questlab.cli", "tune", str(cfg), "--space", str(space), "--train", str(train)]
    cmd += ["--trials", str(trials), "--workers", "2", "--store", str(store), "--best-config", str(tmp_path / "b.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=REPO, env=_marked_env(marker))
    deadline = time.monotonic() + 180
    while _running_trial_runs(store) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None and _running_trial_runs(store) >= 2, "the study never ran 2 trials at once"
    time.sleep(0.3)  # inside the trials' folds
    return proc, store, train


def _runs(store: Path) -> dict[str, dict]:
    import questlab as ql

    return {row["name"]: row for row in ql.runs(store=store).to_dict(orient="records")}


def test_sigterm_stops_a_study_with_workers_and_marks_it_killed(tmp_path: Path) -> None:
    from questlab.rundir import TAG_ERROR
    from questlab.store import Store

    require_quest()
    marker = uuid.uuid4().hex
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc, store, _ = _start_study(tmp_path, marker, trials=6, stderr=stderr)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=90)
        finally:
            survivors = _survivors(marker, within=5)
    text = err.read_text()
    assert not survivors, f"processes of the stopped study still alive: {survivors}"
    assert code == 130, text
    assert "interrupted" in text and "Traceback" not in text, text
    stopped_in = time.monotonic() - t0
    runs = _runs(store)
    parent = runs.pop("stopme")
    assert parent["status"] == "KILLED", parent
    assert "interrupted (signal 15)" in Store(store, create=False).get(parent["run_id"]).tags[TAG_ERROR]
    statuses = {name: row["status"] for name, row in runs.items()}
    assert "RUNNING" not in statuses.values() and "DEAD" not in statuses.values(), statuses
    assert list(statuses.values()).count("KILLED") >= 2, statuses  # the trials of both processes
    assert _running_trials(store) == 0
    assert stopped_in < 60, stopped_in


def test_sigkill_of_a_study_ends_its_workers_and_a_resume_continues_it(tmp_path: Path, monkeypatch) -> None:
    import questlab.tuning.storage as storage
    from questlab.store import Store
    from questlab.tuning import tune

    require_quest()
    marker = uuid.uuid4().hex
    proc, store, train = _start_study(tmp_path, marker, trials=4, stderr=subprocess.DEVNULL)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    survivors = _survivors(marker, within=5)
    assert not survivors, f"workers of the killed study still alive 5 s later: {survivors}"
    # a worker killed by its parent-death signal may still be tearing down (its /proc entry not yet a
    # zombie) for a moment after it stops running anything: its run shows DEAD once it is gone
    deadline = time.monotonic() + 30
    while True:
        runs = _runs(store)
        trials = {name: row["status"] for name, row in runs.items() if name != "stopme"}
        if "RUNNING" not in trials.values() or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert runs["stopme"]["status"] == "DEAD", runs["stopme"]
    assert "RUNNING" not in trials.values() and "DEAD" in trials.values(), trials
    # resume: the dead trials (no Optuna heartbeat for longer than the grace period) are replaced
    monkeypatch.setattr(storage, "GRACE_PERIOD_S", 1)
    time.sleep(2)
    result = tune(STUDY, SPACE, train, trials=4, store=store, best_config_path=tmp_path / "b.yaml", say=lambda _: None)
    assert result.parent_run_id == runs["stopme"]["run_id"]
    assert Store(store, create=False).get(result.parent_run_id).status == "FINISHED"
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in result.study.trials) == 4


# --- 10. a store that stops answering, a store that is read-only -----------------------------------


def _mlflow_server(root: Path, port: int) -> subprocess.Popen:
    """A real ``mlflow server`` on 127.0.0.1:port (proxied artifacts), once it answers."""
    return start_mlflow_server(f"sqlite:///{root / 'server.db'}", root, port)[0]


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the server and the processes it started (its gunicorn/uvicorn workers)."""
    import psutil

    try:
        server = psutil.Process(proc.pid)
        family = [server, *server.children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    proc.wait()


def test_a_tracking_server_killed_mid_run_is_one_line_exit_2_and_the_run_resumes(tmp_path: Path) -> None:
    require_quest()
    port, root = free_port(), tmp_path / "server"
    url = f"http://127.0.0.1:{port}"
    server = _mlflow_server(root, port)
    cfg, train = tmp_path / "c.yaml", _train_rows(tmp_path, 1500)
    cfg.write_text(
        yaml.safe_dump({"name": "remote", "bootstrap": 0, "folds": {"n_splits": 5}, "model": {"name": "tfidf"}})
    )
    env = {**os.environ, "QUESTLAB_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "questlab.cli", "run", str(cfg), "--train", str(train), "--store", url]
    err = tmp_path / "stderr.txt"
    try:
        with open(err, "w") as stderr:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tmp_path, env=env)
            deadline = time.monotonic() + 180
            while "fold 1: mean Spearman" not in err.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
            _kill_tree(server)
            t0 = time.monotonic()
            code = proc.wait(timeout=300)
            took = time.monotonic() - t0
        text = err.read_text()
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert code == 2, text
        assert "Traceback" not in text and len(errors) == 1, text
        (run_id,) = {w for w in errors[0].split() if len(w) == 32}
        assert f"the tracking store {url} stopped answering while run {run_id}" in errors[0]
        assert "(ConnectionError); what was recorded is kept: resume it with questlab run --resume" in errors[0]
        assert took < 20, f"{took:.1f} s from the server's death to the error"
        # what was recorded is kept: once the server is back, --resume finishes the run
        server = _mlflow_server(root, port)
        resumed = subprocess.run(
            [*cmd[:4], "--resume", run_id, "--train", str(train), "--store", url],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        assert "fold 0: already done, kept" in resumed.stderr and "fold 1: already done, kept" in resumed.stderr
    finally:
        _kill_tree(server)


def test_recording_into_a_read_only_store_is_one_line_exit_2(tmp_path: Path) -> None:
    """A store on a read-only mount (a real one, in a mount namespace, when root: chmod does not
    stop root) or, for another user, a copy without write permission."""
    import shutil

    from helpers.runs import tiny_run
    from questlab.store import Store

    tiny_run(Store(tmp_path / "store"), "tfidf", {"max_features": 500})
    cfg, train = tmp_path / "c.yaml", _train_rows(tmp_path, 300)
    cfg.write_text(yaml.safe_dump({"name": "ro", "bootstrap": 0, "folds": {"n_splits": 3}, "model": {"name": "mean"}}))
    run = [sys.executable, "-m", "questlab.cli", "run", str(cfg), "--train", str(train), "--store"]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
            pytest.skip("root without mount namespaces: no way to make a read-only store here")
        store = tmp_path / "store"
        script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'
        cmd = ["unshare", "-m", "sh", "-c", script, "sh", str(store), *run, str(store)]
    else:
        store = tmp_path / "ro-store"
        shutil.copytree(tmp_path / "store", store)
        subprocess.run(["chmod", "-R", "a-w", str(store)], check=True)
        cmd = [*run, str(store)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=False)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("error:") == 1, res.stderr
    assert f"the store at {store} is read-only" in res.stderr, res.stderr
