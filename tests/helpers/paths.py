"""Where things are, defined once for every test: the repository and the real QUEST data.

Tests that need the real data call ``require_quest()`` (or use the ``quest_dir`` fixture). Missing
data fails those tests: a suite that skips what it cannot check would pass in CI without checking.
A user without the data opts out explicitly with ``QUESTLAB_ALLOW_MISSING_DATA=1`` (the tests are
then skipped, each naming where it looked); under CI (``CI`` set) the opt-out is refused.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV_DATA = "QUEST_DATA"  # the folder holding train.csv and test.csv, if not ../shared/quest
ENV_ALLOW_MISSING = "QUESTLAB_ALLOW_MISSING_DATA"  # "1": skip (not fail) tests whose data is missing
ENV_REQUIRE_CHROMIUM = "QUESTLAB_REQUIRE_CHROMIUM"  # "1": the report test fails (not skips) without chromium
ENV_REQUIRE_POSTGRES = "QUESTLAB_REQUIRE_POSTGRES"  # "1": the PostgreSQL test fails (not skips) without it
# CI keeps the competition data beside the checkout; QUEST_DATA points elsewhere.
QUEST_DIR = Path(os.environ.get(ENV_DATA, REPO.parent / "shared" / "quest")).resolve()
ELL_DIR = (REPO.parent / "shared" / "ell").resolve()  # Feedback Prize ELL: the second built-in task


_SCRATCH: list[Path] = []  # the session's folder for files helpers write, under pytest's temp root


def use_scratch(folder: Path) -> None:
    """Make ``folder`` (tests/conftest.py gives a session ``tmp_path_factory`` folder) the helpers' scratch."""
    _SCRATCH[:] = [folder]


def scratch() -> Path:
    """The session scratch folder; outside a pytest session there is none (nothing lands outside its temp root)."""
    if not _SCRATCH:
        raise RuntimeError("tests/helpers: no scratch folder; tests/conftest.py sets one for each pytest session")
    return _SCRATCH[0]


def flag(name: str) -> bool:
    """Whether environment variable ``name`` is set to a true value (anything but empty, 0, false, no)."""
    return os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}


def in_ci() -> bool:
    """Whether the tests run under CI (``CI`` is set by every CI service, and by ``.ci/run``)."""
    return flag("CI")


def missing(what: str, how: str) -> None:
    """Fail the current test because ``what`` is missing (``how``: how to provide it), or skip it where
    the user opted out with ``QUESTLAB_ALLOW_MISSING_DATA=1``; under CI it always fails."""
    if in_ci():
        pytest.fail(f"{what}; {how} (CI is set: a test whose data is missing fails, never skips)", pytrace=False)
    if flag(ENV_ALLOW_MISSING):
        pytest.skip(f"{what} (skipped: {ENV_ALLOW_MISSING} is set)")
    pytest.fail(f"{what}; {how} (or set {ENV_ALLOW_MISSING}=1 to skip the tests that need it)", pytrace=False)


def require_quest() -> Path:
    """The data folder; without it the test fails (or skips where missing data was allowed)."""
    if not (QUEST_DIR / "train.csv").exists():
        missing(
            f"QUEST data not found: {QUEST_DIR / 'train.csv'} does not exist",
            f"put train.csv and test.csv in {REPO.parent / 'shared' / 'quest'} or point {ENV_DATA} at their folder",
        )
    return QUEST_DIR


def require_ell() -> Path:
    """The ELL data folder (``train.csv``); without it the test fails (or skips where allowed)."""
    if not (ELL_DIR / "train.csv").exists():
        missing(f"ELL data not found: {ELL_DIR / 'train.csv'} does not exist", f"put it in {ELL_DIR}")
    return ELL_DIR


def require_chromium() -> str:
    """The path of a Chromium binary (``chromium`` or ``chromium-browser`` on PATH).

    Without one the test skips, except under CI or with ``QUESTLAB_REQUIRE_CHROMIUM=1``, where it fails.
    """
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    what = "chromium not found on PATH (looked for chromium and chromium-browser)"
    how = "install it (Debian: apt-get install -y chromium)"
    if in_ci() or flag(ENV_REQUIRE_CHROMIUM):
        by = "CI" if in_ci() else ENV_REQUIRE_CHROMIUM
        pytest.fail(f"{what}; {how} ({by} is set: the report test fails, never skips)", pytrace=False)
    pytest.skip(f"{what}; {how}")


def require_postgres(bin_dir: Path | None) -> Path:
    """PostgreSQL's server binaries folder (``bin_dir``, found by ``helpers.postgres.find_bin_dir``).

    Without it the test skips, except under CI or with ``QUESTLAB_REQUIRE_POSTGRES=1``, where it fails.
    """
    if bin_dir is not None:
        return bin_dir
    what = "PostgreSQL server binaries not found (no initdb on PATH nor under /usr/lib/postgresql/*/bin)"
    how = "install them (Debian: apt-get install -y postgresql, or run .ci/postgres)"
    if in_ci() or flag(ENV_REQUIRE_POSTGRES):
        by = "CI" if in_ci() else ENV_REQUIRE_POSTGRES
        pytest.fail(f"{what}; {how} ({by} is set: the PostgreSQL test fails, never skips)", pytrace=False)
    pytest.skip(f"{what}; {how}")
