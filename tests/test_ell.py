"""ELL, the second built-in task, end to end on a slice of the real data (``../shared/ell``).

Floors sit a little below what was measured on this slice (see each test), so a change that breaks
the task's models or recording fails while machine-to-machine noise does not.
"""

from __future__ import annotations

import pandas as pd
import pytest

import questlab as ql
from helpers.paths import require_ell

N_ROWS = 800


@pytest.fixture(scope="module")
def essays() -> pd.DataFrame:
    return pd.read_csv(require_ell() / "train.csv", keep_default_na=False).iloc[:N_ROWS]


@pytest.mark.slow
def test_the_ell_tfidf_config_beats_the_means_by_a_margin(essays: pd.DataFrame, tmp_path) -> None:
    quiet = {"bootstrap": 50, "log_model": False}
    mean = ql.run("mean", essays, task="ell", set=quiet, store=tmp_path / "store", quiet=True)
    tfidf = ql.run("ell-tfidf", essays, task="ell", set=quiet, store=tmp_path / "store", quiet=True)
    assert mean.task.name == tfidf.task.name == "ell"
    # measured on this slice (2026-12-07): mean 0.6548, ell-tfidf 0.5416 (0.5273..0.5626); lower is better
    assert 0.62 < mean.cv < 0.68
    assert tfidf.cv < 0.56
    assert tfidf.ci[0] < tfidf.cv < tfidf.ci[1]
    frame = ql.runs(tmp_path / "store")
    assert set(frame["task"]) == {"ell"}


@pytest.mark.slow
def test_the_ell_embedding_config_beats_tfidf_on_the_same_slice(essays: pd.DataFrame, tmp_path) -> None:
    """MiniLM's layer-mean vectors under the kernel ridge (with n-grams at 0.3): the real encoder."""
    quiet = {"bootstrap": 50, "log_model": False}
    store = tmp_path / "store"
    tfidf = ql.run("ell-tfidf", essays, task="ell", set=quiet, store=store, quiet=True)
    emb = ql.run("ell-embedding", essays, task="ell", set=quiet, store=store, quiet=True)
    last = ql.run(
        "ell-embedding", essays, task="ell", set=quiet | {"model.params.layers": "last"}, store=store, quiet=True
    )
    # measured on this slice (2026-12-07): ell-tfidf 0.5416, ell-embedding 0.5153 (0.5019..0.5330),
    # the same with the last layer 0.5345 (0.5195..0.5515)
    assert emb.cv < tfidf.cv - 0.005
    assert emb.cv < last.cv
