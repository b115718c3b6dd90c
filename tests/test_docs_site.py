"""The README and the documentation site agree: the test command CI runs, the site's home page, its nav."""

from __future__ import annotations

import subprocess
import sys

import yaml

from helpers.paths import REPO

TEST_COMMAND = "bash scripts/setup.sh && .venv/bin/ruff check src tests bench && .venv/bin/python -m pytest"


def test_the_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in readme and TEST_COMMAND in ci


def test_the_readme_stays_short() -> None:
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) < 250


def test_the_site_home_page_is_the_readme() -> None:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "docs_index.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _nav_pages(nav) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    items = nav.values() if isinstance(nav, dict) else nav
    return set().union(*(_nav_pages(item) for item in items))


def test_every_docs_page_is_in_the_nav() -> None:
    # mkdocs.yml has no python tags: safe_load reads it
    nav = _nav_pages(yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages == nav, (pages - nav, nav - pages)
