"""QUEST exactly as before tasks were specs: the same CV figures and the same submission bytes.

``tests/data/before_tasks/expected.json`` was written by ``make.py`` there with the code of 0.10.0
(before any stage read a task spec); these tests run the same configs on the same slice of the real
data through today's code, with no task given (so the default task, ``quest``) and with
``task="quest"`` named, and compare.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

import questlab as ql

HERE = Path(__file__).resolve().parent / "data" / "before_tasks"
EXPECTED: dict[str, dict] = json.loads((HERE / "expected.json").read_text())
_spec = importlib.util.spec_from_file_location("before_tasks_make", HERE / "make.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


def _run(name: str, tmp_path: Path, **task) -> ql.Run:
    config, overrides = make.CONFIGS[name]
    train, test = make.slices()
    return ql.run(config, train, test, set=overrides, store=tmp_path / "store", quiet=True, name=name, **task)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mean", "tfidf", "tfidf-alpha3"])
def test_quest_runs_score_and_submit_as_before(tmp_path: Path, name: str) -> None:
    run = _run(name, tmp_path)
    want = EXPECTED[name]
    assert run.cv == pytest.approx(want["score"], abs=5e-5)  # the same to the fourth decimal
    assert [float(v) for v in run.fold_scores] == pytest.approx(want["fold_scores"], abs=5e-5)
    assert (run.ci[0], run.ci[1]) == pytest.approx((want["ci_low"], want["ci_high"]), abs=5e-5)
    got = hashlib.sha256(run.submission.to_csv(index=False).encode()).hexdigest()
    assert got == want["submission_sha256"]  # the same bytes


@pytest.mark.slow
def test_naming_the_quest_task_changes_nothing(tmp_path: Path) -> None:
    run = _run("tfidf", tmp_path, task="quest")
    assert run.cv == pytest.approx(EXPECTED["tfidf"]["score"], abs=5e-5)
    got = hashlib.sha256(run.submission.to_csv(index=False).encode()).hexdigest()
    assert got == EXPECTED["tfidf"]["submission_sha256"]


@pytest.mark.slow
def test_the_embedding_model_scores_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUESTLAB_CACHE", str(tmp_path / "cache"))
    run = _run("embedding", tmp_path)
    want = EXPECTED["embedding"]
    assert run.cv == pytest.approx(want["score"], abs=5e-5)
    assert [float(v) for v in run.fold_scores] == pytest.approx(want["fold_scores"], abs=5e-5)
