"""Stores that leave their folder: moved, copied, mounted read-only; and stores that are not there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers.runs import test_slice as slice_of_test
from helpers.runs import tiny_run
from questlab.cli import app
from questlab.data import load_test
from questlab.predict import load_predictor
from questlab.store import Store, StoreError

QUESTLAB = [sys.executable, "-m", "questlab.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*QUESTLAB, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, str, np.ndarray]:
    """A store folder with one finished TF-IDF run, and that run's predictions of the test slice."""
    folder = tmp_path_factory.mktemp("portable") / "store"
    store = Store(folder)
    run_id = tiny_run(store, "tfidf", {"max_features": 2000})
    pred = load_predictor(store, run_id).predict(load_test(slice_of_test()))
    return folder, run_id, pred


def test_nothing_in_a_run_folder_records_an_absolute_path(recorded) -> None:
    folder, run_id, _ = recorded
    run_dir = Store(folder).folder(run_id).path
    for path in run_dir.rglob("*"):
        if (path.is_file() and path.suffix in {".json", ".yaml", ".csv", ".txt"}) or path.name == "MLmodel":
            text = path.read_text(errors="replace")
            assert str(folder) not in text and str(folder.resolve()) not in text, path


def test_a_moved_store_lists_diagnoses_and_predicts(recorded, tmp_path: Path) -> None:
    folder, run_id, pred = recorded
    moved = tmp_path / "elsewhere" / "moved-store"
    shutil.copytree(folder, tmp_path / "copy")
    shutil.move(tmp_path / "copy", moved)  # a copy moved away: the original stays, but is never read
    store = Store(moved)
    assert store.folder(run_id).path.is_relative_to(moved)
    # MLflow's own record now points into the moved store too (mlflow ui, runs:/ URIs)
    assert store.client.get_run(run_id).info.artifact_uri.startswith(moved.resolve().as_uri())
    np.testing.assert_allclose(load_predictor(store, run_id).predict(load_test(slice_of_test())), pred)
    res = CliRunner().invoke(app, ["diagnose", run_id, "--store", str(moved), "--no-report"])
    assert res.exit_code == 0, res.output


def _read_only(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with ``folder`` read-only: a read-only bind mount (root), else file modes."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=300)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
    import shlex

    where = shlex.quote(str(folder))
    probe_write = f"touch {where}/x 2>/dev/null && echo WRITABLE"
    script = f"mount --bind -o ro {where} {where} && {{ {probe_write}; exec {shlex.join(command)}; }}"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(
            f"root without mount namespaces (unshare -m: {probe.stderr.decode().strip()}): "
            "cannot make a read-only store"
        )
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)


def test_a_read_only_store_lists_diagnoses_and_predicts(recorded, tmp_path: Path) -> None:
    folder, run_id, pred = recorded
    ro = tmp_path / "ro-store"
    shutil.copytree(folder, ro)
    out = tmp_path / "out"
    out.mkdir()
    listing = _read_only(ro, [*QUESTLAB, "runs", "--store", str(ro)])
    assert "WRITABLE" not in listing.stdout
    assert listing.returncode == 0 and run_id in listing.stdout, listing.stderr[-2000:]
    predicted = _read_only(
        ro,
        [
            *QUESTLAB,
            "predict",
            run_id[:8],
            "--input",
            str(slice_of_test()),
            "--output",
            str(out / "p.csv"),
            "--store",
            str(ro),
        ],
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    import pandas as pd

    np.testing.assert_allclose(pd.read_csv(out / "p.csv").iloc[:, 1:].to_numpy(), pred)
    diagnosed = _read_only(ro, [*QUESTLAB, "diagnose", run_id, "--store", str(ro), "--no-report"])
    assert diagnosed.returncode == 0, diagnosed.stderr[-2000:]


def test_reading_a_store_that_is_not_there_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "typo-store"
    res = CliRunner().invoke(app, ["runs", "--store", str(typo)])
    assert res.exit_code == 2 and "no questlab store at" in res.output
    assert not typo.exists()
    with pytest.raises(StoreError, match="nothing was recorded there"):
        Store(typo, create=False)


def test_a_store_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "mlflow.db").write_text("this is a text file, not a database\n" * 10)
    res = CliRunner().invoke(app, ["runs", "--store", str(folder)])
    assert res.exit_code == 2 and "is not an SQLite database" in res.output
    assert "Traceback" not in res.output


def test_an_unreachable_server_answers_within_seconds(tmp_path: Path) -> None:
    env = {**os.environ, "QUESTLAB_HTTP_RETRIES": "1", "QUESTLAB_HTTP_TIMEOUT": "5"}
    t0 = time.monotonic()
    res = subprocess.run(
        [*QUESTLAB, "runs", "--store", "http://127.0.0.1:1"], capture_output=True, text=True, env=env, timeout=200
    )
    elapsed = time.monotonic() - t0
    assert res.returncode == 2 and "cannot reach the tracking store http://127.0.0.1:1" in res.stderr
    assert "Traceback" not in res.stderr
    assert elapsed < 120, (
        f"took {elapsed:.0f} s: retries must follow QUESTLAB_HTTP_RETRIES (MLflow's default waits minutes)"
    )


def test_bad_retry_setting_is_named(tmp_path: Path) -> None:
    env = {**os.environ, "QUESTLAB_HTTP_RETRIES": "many"}
    res = subprocess.run(
        [*QUESTLAB, "runs", "--store", "http://127.0.0.1:1"], capture_output=True, text=True, env=env, timeout=100
    )
    assert res.returncode == 2 and "$QUESTLAB_HTTP_RETRIES='many'" in res.stderr
