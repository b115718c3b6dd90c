"""The distributed case with the real parts, as users run it: a PostgreSQL server (Debian's package)
holds the Optuna study and is the backend store of a real ``mlflow server``; ``questlab tune
--workers 2`` runs two processes on the study; the command's own process is killed (SIGKILL) in the
middle of a trial; the same command, run again, finishes the study.

Checked: exactly N trials complete, each a FINISHED run on the server (tagged with its study and
trial), the killed trial is not counted and its run shows FAILED, KILLED or DEAD, and the study's
report (best trial, best CV, counts) agrees with the runs the server holds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

import questlab as ql
from helpers.mlflow_server import mlflow_server
from helpers.paths import REPO
from helpers.postgres import PASSWORD, Postgres, postgres_server
from helpers.runs import train_slice
from questlab.cv import flatten
from questlab.store import Store
from questlab.tuning import GRACE_PERIOD_S, HEARTBEAT_S, StudyError, open_storage

N_TRIALS = 6
STUDY = "pg-tfidf"
CONFIG = {
    "name": STUDY,
    "folds": {"n_splits": 2, "seed": 1},
    "bootstrap": 20,
    "model": {"name": "tfidf", "params": {"max_features": 2000}},
}
SPACE = {"params": {"model.params.alpha": {"float": [0.3, 100], "log": True}, "model.params.min_df": {"int": [1, 3]}}}
# Heartbeats every 2 s, a silent trial failed after 10 s (instead of 15 s and 90 s), in every process.
FAST_HEARTBEATS = {"QUESTLAB_TUNE_HEARTBEAT_S": "2", "QUESTLAB_TUNE_GRACE_S": "10"}
WAIT_S = 300  # for any one step on a loaded 2-core machine


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def tracking_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``mlflow server`` whose backend store is a PostgreSQL database; yields its URL."""
    with mlflow_server(postgres.create_database("mlflow"), tmp_path_factory.mktemp("mlflow-pg")) as url:
        yield url


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not: an orphan's reaper may be slow or absent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _trial_run(client: MlflowClient, parent: str, number: int, recording: bool = False) -> str | None:
    """The run of trial ``number`` (``recording``: only once it is being recorded, with a heartbeat)."""
    exp = client.get_experiment_by_name("questlab")
    if exp is None:
        return None
    where = f"tags.`mlflow.parentRunId` = '{parent}' and tags.`questlab.trial` = '{number}'"
    found = client.search_runs([exp.experiment_id], filter_string=where, max_results=2)
    assert len(found) <= 1, f"trial {number} has {len(found)} runs"
    if not found or (recording and "questlab.heartbeat" not in found[0].data.tags):
        return None
    return found[0].info.run_id


def _children(pid: int) -> list[int]:
    """The worker processes whose parent is ``pid`` (Linux /proc): its children, less the helper
    processes Python's multiprocessing may start beside them (a resource tracker, a fork server),
    which appear or not depending on timing and are not workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"resource_tracker" not in cmdline and b"forkserver" not in cmdline:
            found.append(int(stat.parent.name))
    return found


def _kill_mid_trial(proc: subprocess.Popen, storage_url: str, client: MlflowClient, log: Path) -> tuple[int, list[int]]:
    """SIGKILL the tune command's process in the middle of a trial (its run being recorded: host,
    pid and heartbeat tagged), after it has completed one; return the killed trial's number and the
    worker processes it had started.

    The process is stopped (SIGSTOP) before its trial's state is read a last time, so the trial
    cannot finish between that read and the kill.
    """
    me = f"{socket.gethostname()}:{proc.pid}"
    deadline = time.monotonic() + WAIT_S
    study = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"questlab tune ended (exit {proc.returncode}) before it was killed:\n{_tail(log)}")
        if study is None:
            try:
                study = optuna.load_study(study_name=STUDY, storage=storage_url)
            except KeyError:  # not created yet
                time.sleep(0.5)
                continue
        mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("worker") == me]
        running = [t for t in mine if t.state == TrialState.RUNNING]
        parent = study.user_attrs.get("questlab.parent_run_id")
        done = any(t.state == TrialState.COMPLETE for t in mine)
        if done and running and parent and _trial_run(client, parent, running[0].number, recording=True):
            number = running[0].number
            os.kill(proc.pid, signal.SIGSTOP)
            if study.get_trials(deepcopy=False)[number].state == TrialState.RUNNING:
                workers = _children(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
                return number, workers
            os.kill(proc.pid, signal.SIGCONT)  # it finished in between: wait for its next trial
        time.sleep(0.2)
    raise AssertionError(f"the first process never was in the middle of its second trial:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def test_two_workers_on_postgres_and_a_tracking_server_survive_a_killed_process(
    postgres: Postgres, tracking_server: str, tmp_path: Path
) -> None:
    storage_url = postgres.create_database("optuna")
    config, space, best_path = tmp_path / "config.yaml", tmp_path / "space.yaml", tmp_path / "best.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    space.write_text(yaml.safe_dump(SPACE))
    cmd = [
        sys.executable, "-m", "questlab.cli", "tune", str(config), "--space", str(space), "--train", str(train_slice()),
        "--trials", str(N_TRIALS), "--workers", "2", "--no-prune", "--best-config", str(best_path),
        "--storage", storage_url, "--store", tracking_server,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **FAST_HEARTBEATS}
    client = MlflowClient(tracking_uri=tracking_server)

    # 1. The study starts in two processes; the command's own one is killed in the middle of a trial.
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    orphans: list[int] = []
    try:
        killed, orphans = _kill_mid_trial(first, storage_url, client, log)
        assert len(orphans) == 1, f"--workers 2 started {len(orphans)} worker processes: {orphans}"
        study = optuna.load_study(study_name=STUDY, storage=storage_url)
        parent = study.user_attrs["questlab.parent_run_id"]
        killed_run = _trial_run(client, parent, killed)
        assert killed_run is not None

        # 2. The user runs the same command again at once: it resumes the study beside the orphaned
        # worker (if that outlived its parent), waits for the killed trial to go silent, fails and
        # replaces it, and finishes the study.
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=WAIT_S)
        output = again.stdout + again.stderr
        assert again.returncode == 0, f"{_tail(log)}\n--- rerun ---\n{output[-4000:]}"
        assert f"resuming study {STUDY} (parent run {parent})" in output
        assert again.stdout.strip().splitlines()[-2:] == [str(best_path.resolve()), parent]
        deadline = time.monotonic() + 60  # the orphan stops once the study has its trials
        while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_alive(pid) for pid in orphans), "the orphaned worker still runs after the study finished"
    finally:
        for pid in [first.pid, *orphans]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    # Exactly N trials complete; the killed one is not among them, and nothing is left running.
    study = optuna.load_study(study_name=STUDY, storage=storage_url)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS and len(_counted(trials)) == N_TRIALS
    assert study.trials[killed].state == TrialState.FAIL
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.user_attrs["worker"] for t in complete}) >= 2  # trials ran in several processes

    # Every complete trial is a FINISHED run on the server, under the study's parent run.
    runs = {}
    for t in complete:
        run_id = _trial_run(client, parent, t.number)
        assert run_id is not None and run_id == t.user_attrs["run_id"], f"trial {t.number}: no run on the server"
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags["questlab.study"] == STUDY
        assert run.data.metrics["cv_score"] == pytest.approx(t.value, abs=1e-12)
        runs[t.number] = run
    # The killed trial's run: not finished, and questlab says so (its process is gone).
    listed = ql.runs(store=tracking_server, tags={"questlab.study": STUDY}).set_index("run_id")
    assert client.get_run(killed_run).info.status != "FINISHED"
    assert listed.loc[killed_run, "status"] in ("FAILED", "KILLED", "DEAD")
    for t in trials:  # any other failed trial: a surplus one (no run), or one whose process died too
        if (
            t.state == TrialState.FAIL
            and not t.user_attrs.get("surplus")
            and (run_id := _trial_run(client, parent, t.number))
        ):
            assert listed.loc[run_id, "status"] in ("FAILED", "KILLED", "DEAD")

    # The study's report: the best of the recorded runs, the counts, the held-out score, report.html.
    best_number = max(runs, key=lambda n: runs[n].data.metrics["cv_score"])
    best_cv = runs[best_number].data.metrics["cv_score"]
    record = client.get_run(parent)
    assert record.info.status == "FINISHED" and record.data.tags["questlab.kind"] == "study"
    assert record.data.tags["questlab.best_trial"] == str(best_number) == str(study.best_trial.number)
    assert record.data.tags["questlab.best_run"] == runs[best_number].info.run_id
    metrics = record.data.metrics
    assert metrics["best_cv"] == pytest.approx(best_cv, abs=1e-12)
    assert metrics["trials_complete"] == N_TRIALS and metrics["trials_pruned"] == 0 and metrics["trials_failed"] >= 1
    holdout = client.get_run(record.data.tags["questlab.holdout_run"])
    assert holdout.info.status == "FINISHED" and metrics["holdout_score"] == holdout.data.metrics["cv_score"]
    assert {"report.html", "best_config.yaml", "study.json"} <= {a.path for a in client.list_artifacts(parent)}
    assert f"best trial {best_number}: CV {best_cv:.4f}" in output
    written = flatten(yaml.safe_load(best_path.read_text()))
    assert {k: written[k] for k in study.best_trial.params} == study.best_trial.params
    # The database password never reaches the records.
    study_json = Path(client.download_artifacts(parent, "study.json", str(tmp_path))).read_text()
    assert "postgresql://" in record.data.tags["questlab.optuna_storage"]
    assert PASSWORD not in str(record.data.tags) and PASSWORD not in study_json


def test_a_run_still_being_written_is_downloaded_into_each_process_own_folder(
    tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the test above: a study's workers on one machine read the RUNNING parent run at
    once, each refreshing the same cached download (one's rmtree under another's mkdir)."""
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "cache"))
    writer = Store(tracking_server)
    run_id = writer.tracking.create_run("downloads", {})
    writer.client.log_text(run_id, "qa_id,fold\n1,0\n", "folds.csv")
    reader = Store(tracking_server)  # another process's view: nothing staged
    running = reader.folder(run_id).path
    assert running.name == f"{run_id}.pid{os.getpid()}" and (running / "folds.csv").read_text() == "qa_id,fold\n1,0\n"
    shared = running.with_name(run_id)
    shared.mkdir()
    (shared / "half.csv").write_text("x")  # what a killed process's download left
    writer.client.set_terminated(run_id, "FINISHED")
    finished = reader.folder(run_id).path
    assert finished == shared and sorted(p.name for p in finished.iterdir()) == [".questlab-download.json", "folds.csv"]
    assert reader.folder(run_id).path == shared  # cached now
    assert not [p for p in shared.parent.iterdir() if p.name.startswith(".")]  # no download left half-way


def test_heartbeat_and_grace_period_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the test above relies on to kill a process without waiting 90 s (every process reads them)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    default = open_storage(url)
    assert (default.heartbeat_interval, default.grace_period) == (HEARTBEAT_S, GRACE_PERIOD_S)
    for key, value in FAST_HEARTBEATS.items():
        monkeypatch.setenv(key, value)
    fast = open_storage(url)
    assert (fast.heartbeat_interval, fast.grace_period) == (2, 10)
    monkeypatch.setenv("QUESTLAB_TUNE_GRACE_S", "1.5")
    with pytest.raises(StudyError, match=r"\$QUESTLAB_TUNE_GRACE_S='1.5': give a whole number of seconds"):
        open_storage(url)
