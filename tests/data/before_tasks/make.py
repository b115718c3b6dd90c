"""Record QUEST figures and submissions made by questlab 0.10.0, before tasks were specs.

Run once from the repository root with the code of commit 5757ca3 (0.10.0 plus the task and metric
modules, which nothing read yet): ``python tests/data/before_tasks/make.py``. It writes
``expected.json`` (each config's CV score, interval and fold scores, and the sha256 of its
submission) for a fixed slice of ../shared/quest (train rows 0..599, test rows 0..99).
tests/test_quest_unchanged.py re-runs the same configs and compares.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

import questlab as ql

HERE = Path(__file__).resolve().parent
QUEST = HERE.parents[2].parent / "shared" / "quest"
CONFIGS = {
    "mean": ("mean", {}),
    "tfidf": ("tfidf", {"parallel_folds": 1, "bootstrap": 100}),
    "tfidf-alpha3": ("tfidf", {"parallel_folds": 1, "bootstrap": 100, "model.params.alpha": 3.0}),
    # fp32 (bf16 autocast depends on the CPU); the vectors cache under a temporary QUESTLAB_CACHE
    "embedding": ("embedding", {"bootstrap": 100, "model.params.bf16": False, "model.params.max_epochs": 10}),
}
N_TRAIN, N_TEST = 600, 100


def slices() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.read_csv(QUEST / "train.csv", keep_default_na=False).iloc[:N_TRAIN]
    test = pd.read_csv(QUEST / "test.csv", keep_default_na=False).iloc[:N_TEST]
    return train, test


def record(name: str, store: Path) -> dict:
    config, overrides = CONFIGS[name]
    train, test = slices()
    run = ql.run(config, train, test, set=overrides, store=store, quiet=True, name=name)
    low, high = run.ci
    return {
        "score": run.cv,
        "ci_low": low,
        "ci_high": high,
        "fold_scores": [float(v) for v in run.fold_scores],
        "submission_sha256": hashlib.sha256(run.submission.to_csv(index=False).encode()).hexdigest(),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["QUESTLAB_CACHE"] = str(Path(tmp) / "cache")
        out = {name: record(name, Path(tmp) / "store") for name in CONFIGS}
    (HERE / "expected.json").write_text(json.dumps(out, indent=1) + "\n")
    json.dump(out, sys.stdout, indent=1)
