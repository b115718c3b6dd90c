"""The whole Python surface: check, ensemble, postprocess, pseudo_label, report, the findings log,
``Run.report``, the reprs notebooks show, and ``py.typed``. Small runs (tests/helpers/runs.py)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import questlab as ql
from helpers.paths import REPO
from helpers.runs import N_ROWS, tiny_run, train_slice
from helpers.runs import test_slice as slice_of_test
from helpers.synthetic_task import make_frame, write_spec
from questlab.analysis.verdict import Verdict
from questlab.api.objects import html_table
from questlab.data import DataSummary
from questlab.errors import DataError, RunNotFoundError, UsageError
from questlab.pseudo import PseudoLabels
from questlab.store import Store

NEW = {"check", "ensemble", "postprocess", "pseudo_label", "report", "findings", "add_finding", "edit_finding",
       "remove_finding", "Finding"}  # fmt: skip


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[ql.Run, ql.Run]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('surface')}/s.db")
    a = tiny_run(store, "noisy_oracle", {"noise": 0.3}, name="oracle-a")
    b = tiny_run(store, "noisy_oracle", {"noise": 0.6}, name="oracle-b")
    return ql.load_run(a, store=store), ql.load_run(b, store=store)


def test_every_name_is_at_the_package_top_and_in_the_api() -> None:
    import questlab.api
    import questlab.ensemble  # the subpackage of the same name: ql.ensemble stays the function
    from questlab.ensemble import EnsembleSpec

    assert set(dir(ql)) >= NEW and set(ql.__all__) >= NEW and set(questlab.api.__all__) >= NEW
    assert all(getattr(ql, name) is getattr(questlab.api, name) for name in NEW)
    assert sys.modules["questlab.ensemble"].EnsembleSpec is EnsembleSpec
    assert callable(ql.Run.report)


def test_py_typed_ships_with_the_package() -> None:
    assert (Path(ql.__file__).parent / "py.typed").is_file()
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["questlab"]


def test_check_summarises_files_and_frames_of_any_task(tmp_path: Path) -> None:
    summary = ql.check(train_slice())
    assert isinstance(summary, DataSummary) and summary.kind == "train" and summary.rows == N_ROWS
    assert summary.targets is not None and len(summary.targets) == 30
    assert ql.check(slice_of_test()).kind == "test"
    spec = write_spec(tmp_path)
    frame = make_frame(60)
    reviews = ql.check(frame, task=spec)
    assert (
        reviews.kind == "train" and reviews.rows == 60 and list(reviews.targets.index) == ["helpful", "polite", "clear"]
    )
    assert ql.check(make_frame(30, with_targets=False), task=spec).targets is None
    bad = frame.assign(polite=frame["polite"].where(frame.index != 3, 9.0))
    with pytest.raises(DataError, match="polite"):
        ql.check(bad, task=spec)
    with pytest.raises(DataError):
        ql.check(frame)  # not QUEST's columns


def test_run_repr_is_one_line_and_html_is_escaped(two_runs) -> None:
    a, _ = two_runs
    text = repr(a)
    assert "\n" not in text and text.startswith("Run(")
    for part in ("'oracle-a'", a.id[:8], "model='noisy_oracle'", "task='quest'", f"cv={a.cv:.4f}", "FINISHED"):
        assert part in text
    low, high = a.ci
    assert f"[{low:.4f}, {high:.4f}]" in text
    page = a._repr_html_()
    assert a.id in page and "spearman" in page and f"{a.cv:.4f}" in page
    assert html_table([("<k>", "a & <b>")]) == (
        "<table><tr><th style='text-align:left'>&lt;k&gt;</th><td>a &amp; &lt;b&gt;</td></tr></table>"
    )


def test_diagnosis_and_evaluation_show_as_html(two_runs) -> None:
    a, _ = two_runs
    verdicts = a.diagnose(n_boot=30)
    assert isinstance(verdicts, ql.Verdicts) and "<table" in verdicts._repr_html_()
    assert repr(verdicts).startswith("Verdicts(") and "\n" not in repr(verdicts)
    crafted = ql.Verdicts([Verdict("warning", "x.y", "<script>alert(1)</script>")])
    assert "<script>" not in crafted._repr_html_() and "&lt;script&gt;" in crafted._repr_html_()
    assert repr(crafted) == "Verdicts(1 warning: x.y)"
    evaluation = a.evaluate(pd.read_csv(train_slice()).head(60), n_boot=20)
    assert "<table" in evaluation._repr_html_() and "\n" not in repr(evaluation)


def test_report_into_the_run_or_a_path(two_runs, tmp_path: Path) -> None:
    a, _ = two_runs
    inside = a.report(n_boot=20)
    assert inside.name == "report.html" and inside.is_file() and a.id in inside.read_text()
    mine = ql.report(a.id[:10], tmp_path / "pages" / "a.html", n_boot=20, store=a.store)
    assert mine == tmp_path / "pages" / "a.html" and "<html" in mine.read_text().lower()
    with pytest.raises(UsageError, match="n_boot 5"):
        a.report(n_boot=5)
    with pytest.raises(RunNotFoundError):
        ql.report("zzzz", store=a.store)


def test_ensemble_and_postprocess_make_runs(two_runs, tmp_path: Path) -> None:
    a, b = two_runs
    both = ql.ensemble([a, b], weights="equal", n_boot=20, name="pair", quiet=True)
    assert isinstance(both, ql.Run) and both.kind == "ensemble" and both.name == "pair"
    assert set(both.ensemble_report["members"]) == {a.id, b.id}
    weighted = ql.ensemble([a.id, b.id], weights=[0.7, 0.3], n_boot=20, store=a.store, quiet=True)
    assert weighted.kind == "ensemble" and weighted.id != both.id
    mapped = ql.postprocess(a, n_boot=20, quiet=True)
    assert mapped.kind == "ensemble" and list(mapped.ensemble_report["members"]) == [a.id]
    with pytest.raises(UsageError, match="at least two"):
        ql.ensemble([a])
    with pytest.raises(UsageError):
        ql.ensemble([a, b], average="rank", method="nonsense", quiet=True)


def test_pseudo_label_returns_the_labels(two_runs, tmp_path: Path) -> None:
    a, _ = two_runs
    labels = ql.pseudo_label(a, slice_of_test(), tmp_path / "pseudo.csv", quiet=True)
    assert isinstance(labels, PseudoLabels) and labels.meta.teacher_run == a.id
    assert len(labels.frame) == len(pd.read_csv(slice_of_test())) and sorted(labels.labels) == [0, 1, 2]
    with pytest.raises(UsageError, match="unlabelled"):
        ql.pseudo_label(a, slice_of_test(), slice_of_test(), quiet=True)


def test_findings_round_trip(two_runs) -> None:
    a, b = two_runs
    store = a.store
    first = ql.add_finding("oracle-a beats oracle-b", [a, b.id], tags=["noise"])
    second = ql.add_finding("noise hurts", a, store=store)
    assert first.runs == [a.id, b.id] and first.tags == ["noise"]
    assert [f.finding_id for f in ql.findings(run=b)] == [first.finding_id]
    assert {f.finding_id for f in ql.findings(store=store)} >= {first.finding_id, second.finding_id}
    edited = ql.edit_finding(first, "oracle-a beats oracle-b by 0.1", tags=["noise", "checked"], store=store)
    assert edited.finding_id == first.finding_id and edited.tags == ["noise", "checked"]
    assert ql.findings(tag="checked", store=store)[0].text == "oracle-a beats oracle-b by 0.1"
    moved = ql.edit_finding(second.finding_id[:12], runs=[b])
    assert moved.runs == [b.id] and moved.text == "noise hurts"
    assert ql.remove_finding(first.finding_id, store=store).text == edited.text
    assert first.finding_id not in {f.finding_id for f in ql.findings(store=store)}
    with pytest.raises(RunNotFoundError):
        ql.remove_finding(first.finding_id, store=store)
    with pytest.raises(UsageError, match="text"):
        ql.add_finding("  ", [a])
    ql.remove_finding(second, store=store)


def test_ql_leaderboard_and_ensemble_stay_functions_after_their_modules_load() -> None:
    import importlib

    import questlab as ql

    importlib.import_module("questlab.leaderboard")
    importlib.import_module("questlab.ensemble.combine")
    assert callable(ql.leaderboard) and ql.leaderboard.__module__ == "questlab.api.core"
    assert callable(ql.ensemble) and ql.ensemble.__module__ == "questlab.api.actions"
