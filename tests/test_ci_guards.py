"""The suite cannot pass in CI without checking: missing data or a missing Chromium fail there, never skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import paths
from helpers.paths import ENV_ALLOW_MISSING, ENV_DATA, ENV_REQUIRE_CHROMIUM, ENV_REQUIRE_POSTGRES, REPO

# A test that needs the real data and nothing else: its fixture fails (or skips) before any work.
DATA_TEST = "tests/test_cv.py::test_mean_run_is_recorded_and_constant_everywhere"


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run DATA_TEST in a fresh pytest with the data pointed at a missing folder and ``env`` on top."""
    base = {k: v for k, v in os.environ.items() if k not in {"CI", ENV_ALLOW_MISSING}}
    base[ENV_DATA] = str(tmp_path / "no-data")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider",
           f"--basetemp={tmp_path / 'inner'}", DATA_TEST]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=300)


def test_missing_data_fails_under_ci_and_skips_only_when_opted_out(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-data" / "train.csv")
    ci = _pytest(tmp_path, CI="true")
    assert ci.returncode == 1, ci.stdout
    assert "1 error" in ci.stdout and missing in ci.stdout and "CI is set" in ci.stdout
    opted_out = _pytest(tmp_path, **{ENV_ALLOW_MISSING: "1"})
    assert opted_out.returncode == 0, opted_out.stdout
    assert "1 skipped" in opted_out.stdout and missing in opted_out.stdout


@pytest.fixture
def no_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The data folder pointed at a folder that does not exist, with CI and the opt-out unset."""
    monkeypatch.setattr(paths, "QUEST_DIR", tmp_path / "nowhere")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(ENV_ALLOW_MISSING, raising=False)
    return tmp_path / "nowhere"


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({}, pytest.fail.Exception),  # no opt-out: a user learns the data is missing
        ({"CI": "true"}, pytest.fail.Exception),
        ({"CI": "1", ENV_ALLOW_MISSING: "1"}, pytest.fail.Exception),  # CI refuses the opt-out
        ({ENV_ALLOW_MISSING: "1"}, pytest.skip.Exception),
        ({"CI": "false", ENV_ALLOW_MISSING: "yes"}, pytest.skip.Exception),
    ],
)
def test_require_quest_outcomes(no_data: Path, monkeypatch: pytest.MonkeyPatch, env: dict, outcome: type) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(outcome, match=str(no_data / "train.csv")):
        paths.require_quest()


def test_require_quest_returns_the_folder_when_it_holds_train_csv(no_data: Path) -> None:
    no_data.mkdir()
    (no_data / "train.csv").write_text("qa_id\n")
    assert paths.require_quest() == no_data


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({}, pytest.skip.Exception),
        ({"CI": "true"}, pytest.fail.Exception),
        ({ENV_REQUIRE_CHROMIUM: "1"}, pytest.fail.Exception),
    ],
)
def test_missing_chromium_fails_under_ci_or_when_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env, outcome
):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no chromium, no chromium-browser
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(ENV_REQUIRE_CHROMIUM, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(outcome, match="chromium not found"):
        paths.require_chromium()


def test_chromium_is_found_as_chromium_browser_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium-browser"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert paths.require_chromium() == str(fake)


@pytest.mark.parametrize(("apt_rc", "says"), [(100, "apt-get install -y chromium failed"), (0, "on PATH")])
def test_ci_stops_when_chromium_cannot_be_installed(tmp_path: Path, apt_rc: int, says: str) -> None:
    """.ci/chromium with no chromium on PATH and an apt-get that fails (or installs nothing) exits 1."""
    (tmp_path / "apt-get").write_text(f"#!/bin/sh\nexit {apt_rc}\n")
    (tmp_path / "apt-get").chmod(0o755)
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/bash", str(REPO / ".ci" / "chromium")], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "could not install chromium" in done.stderr and says in done.stderr


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({}, pytest.skip.Exception),
        ({"CI": "true"}, pytest.fail.Exception),
        ({ENV_REQUIRE_POSTGRES: "1"}, pytest.fail.Exception),
    ],
)
def test_missing_postgres_fails_under_ci_or_when_required(monkeypatch: pytest.MonkeyPatch, env, outcome) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(ENV_REQUIRE_POSTGRES, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(outcome, match="PostgreSQL server binaries not found"):
        paths.require_postgres(None)
    assert paths.require_postgres(Path("/pg/bin")) == Path("/pg/bin")


@pytest.mark.parametrize(("apt_rc", "says"), [(100, "apt-get install -y postgresql failed"), (0, "no initdb is under")])
def test_ci_stops_when_postgres_cannot_be_installed(tmp_path: Path, apt_rc: int, says: str) -> None:
    """.ci/postgres with no initdb anywhere and an apt-get that fails (or installs nothing) exits 1."""
    (tmp_path / "apt-get").write_text(f"#!/bin/sh\nexit {apt_rc}\n")
    (tmp_path / "apt-get").chmod(0o755)
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "QUESTLAB_POSTGRES_LIB": str(tmp_path / "lib")}
    done = subprocess.run(["/bin/bash", str(REPO / ".ci" / "postgres")], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "could not install postgresql" in done.stderr and says in done.stderr


def test_the_session_cache_is_a_temp_folder_not_the_users(tmp_path_factory: pytest.TempPathFactory) -> None:
    """conftest points $QUESTLAB_CACHE under pytest's temp root: a warm ~/.cache/questlab never serves a test."""
    from questlab.models.pretrained import cache_root

    root = cache_root()
    assert root.is_relative_to(tmp_path_factory.getbasetemp()) and root.is_dir()
    assert not root.is_relative_to(Path.home() / ".cache")
