"""Where things are, defined once for every test: the repository and the real QUEST data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# CI keeps the competition data beside the checkout; QUEST_DATA points elsewhere.
QUEST_DIR = Path(os.environ.get("QUEST_DATA", REPO.parent / "shared" / "quest")).resolve()


def require_quest() -> Path:
    """The data folder, or skip the test with where it was looked for."""
    if not (QUEST_DIR / "train.csv").exists():
        pytest.skip(f"QUEST data not found at {QUEST_DIR} (CI keeps it in ../shared/quest; or set QUEST_DATA)")
    return QUEST_DIR
