"""Tiny real runs for the analysis tests: a slice of train.csv, 3 grouped folds, few resamples."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from helpers.paths import QUEST_DIR, require_quest, scratch
from questlab.config import parse_config
from questlab.models import register
from questlab.store import Store

N_ROWS, N_FOLDS = 300, 3

register("noisy_oracle", "helpers.fake_models:NoisyOracle")


def need_data() -> None:
    require_quest()


@functools.cache
def train_slice() -> Path:
    """The first 300 rows of the real train.csv, written once per test session."""
    need_data()
    path = scratch() / "train_slice.csv"
    pd.read_csv(QUEST_DIR / "train.csv").head(N_ROWS).to_csv(path, index=False)
    return path


@functools.cache
def test_slice() -> Path:
    """The first 50 rows of the real test.csv, written once per test session."""
    need_data()
    path = scratch() / "test_slice.csv"
    pd.read_csv(QUEST_DIR / "test.csv").head(50).to_csv(path, index=False)
    return path


def tiny_run(
    store: Store, model: str, params: dict | None = None, name: str | None = None, only_folds: list[int] | None = None
) -> str:
    """Run 3-fold CV of ``model`` on the slice (folds seeded, so every run shares them); return the run id."""
    from questlab.cv import run_cv

    cfg = parse_config(
        {
            "name": name or model,
            "folds": {"n_splits": N_FOLDS, "seed": 1},
            "model": {"name": model, "params": params or {}},
            "bootstrap": 50,
        }
    )
    return run_cv(cfg, train_slice(), test_slice(), store=store, only_folds=only_folds, say=lambda _: None)


def qa_id_in_fold(fold: int) -> int:
    """A qa_id of the slice in ``fold``: the handle that makes NoisyOracle misbehave in that fold."""
    from questlab.data import load_train
    from questlab.folds import make_folds

    folds = make_folds(load_train(train_slice()), n_splits=N_FOLDS, seed=1)
    return int(folds.loc[folds["fold"] == fold, "qa_id"].iloc[0])
