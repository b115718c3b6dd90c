"""Shared fixtures: the real QUEST data beside the checkout, small slices of it, a throwaway store.

Every test runs with ``$QUESTLAB_CACHE`` in a session temp folder (never ~/.cache/questlab: a warm
user cache would let a test pass without running the encoder), and the helpers' slices are written
under pytest's temp root too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from helpers.paths import require_quest, use_scratch


@pytest.fixture(scope="session", autouse=True)
def session_scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A session temp cache as $QUESTLAB_CACHE (a test wanting its own sets it again) and the slices' folder."""
    cache = tmp_path_factory.mktemp("questlab-cache")
    use_scratch(tmp_path_factory.mktemp("slices"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QUESTLAB_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def quest_dir() -> Path:
    return require_quest()


@pytest.fixture(scope="session")
def raw_train(quest_dir: Path) -> pd.DataFrame:
    """The real train.csv as raw strings (for building bad inputs)."""
    return pd.read_csv(quest_dir / "train.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="session")
def raw_test(quest_dir: Path) -> pd.DataFrame:
    return pd.read_csv(quest_dir / "test.csv", dtype=str, keep_default_na=False)


@pytest.fixture()
def train_slice_csv(tmp_path: Path, raw_train: pd.DataFrame) -> Path:
    """The first 240 rows of train.csv in a temporary file (for fast end-to-end runs)."""
    path = tmp_path / "train_slice.csv"
    raw_train.head(240).to_csv(path, index=False)
    return path


@pytest.fixture()
def test_slice_csv(tmp_path: Path, raw_test: pd.DataFrame) -> Path:
    path = tmp_path / "test_slice.csv"
    raw_test.head(30).to_csv(path, index=False)
    return path


@pytest.fixture()
def store(tmp_path: Path):
    from questlab.store import Store

    return Store(f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_left_as_found() -> Iterator[None]:
    """``mlflow.set_tracking_uri`` is process-global (and writes $MLFLOW_TRACKING_URI): a test that
    sets it must not choose the store of the tests after it."""
    import os
    import sys

    env = os.environ.get("MLFLOW_TRACKING_URI")
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    before = utils._tracking_uri if utils is not None else None
    yield
    utils = sys.modules.get("mlflow.tracking._tracking_service.utils")
    if utils is not None:
        utils._tracking_uri = before
    if env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = env
