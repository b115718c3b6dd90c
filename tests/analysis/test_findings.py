"""The findings log: stored with the runs, filtered, newest first, and never lost with a run."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from helpers.runs import tiny_run
from questlab.analysis.diagnose import Verdict
from questlab.analysis.findings import (
    FINDINGS_EXPERIMENT,
    add_finding,
    edit_finding,
    get_finding,
    list_findings,
    record_verdicts,
    remove_finding,
)
from questlab.errors import RunNotFoundError, UsageError
from questlab.store import Store


@pytest.fixture(scope="module")
def store_runs(tmp_path_factory) -> tuple[Store, str, str]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('findings')}/s.db")
    return store, tiny_run(store, "mean"), tiny_run(store, "noisy_oracle")


def test_add_and_list_newest_first_with_filters(tmp_path):
    # A store of its own: the module's store gathers other tests' findings, in any order.
    store = Store(f"sqlite:///{tmp_path}/s.db")
    a, b = (store.create_run(name, tags={}) for name in ("a", "b"))
    first = add_finding(store, "mean model ranks nothing", [a[:8]], ["baseline"])
    second = add_finding(store, "oracle beats mean", [a, b], ["baseline", "compare"])
    assert first.runs == [a] and second.runs == [a, b]
    assert [f.finding_id for f in list_findings(store, run=a)] == [second.finding_id, first.finding_id]
    assert [f.text for f in list_findings(store, run=b)] == ["oracle beats mean"]
    assert [f.text for f in list_findings(store, tag="compare")] == ["oracle beats mean"]
    assert [f.text for f in list_findings(store, tag="baseline")] == ["oracle beats mean", "mean model ranks nothing"]
    # Findings are not CV runs: `questlab runs` does not list them.
    assert {r.run_id for r in store.list_runs()} == {a, b}
    assert len(store.list_runs(FINDINGS_EXPERIMENT)) == 2


def test_bad_findings_are_refused(store_runs):
    store, a, _ = store_runs
    with pytest.raises(ValueError, match="--run"):
        add_finding(store, "about nothing", [])
    with pytest.raises(ValueError, match="text"):
        add_finding(store, "   ", [a])
    with pytest.raises(RunNotFoundError):
        add_finding(store, "typo", ["zzzz"])


def test_findings_survive_a_deleted_run(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    run = store.create_run("doomed", tags={})
    store.finish(run, "FAILED")
    add_finding(store, "this run failed on OOM", [run], ["oom"])
    store.client.delete_run(run)
    (f,) = list_findings(store, run=run[:10])
    assert f.text == "this run failed on OOM" and f.runs == [run]
    with pytest.raises(RunNotFoundError):
        list_findings(store, run="nosuchrun")


def test_edit_and_remove_a_finding(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/s.db")
    a, b = (store.create_run(name, tags={}) for name in ("a", "b"))
    found = add_finding(store, "first thought", [a], ["idea"])
    kept = add_finding(store, "another", [b])
    edited = edit_finding(store, found.finding_id[:10], text="  second thought\nwith detail ", tags=["idea", "fixed"])
    assert (edited.finding_id, edited.time, edited.runs) == (found.finding_id, found.time, [a])
    assert edited.text == "second thought\nwith detail" and edited.tags == ["idea", "fixed"]
    assert store.get(found.finding_id).name == "second thought"  # the MLflow UI's name follows the text
    moved = edit_finding(store, found.finding_id, runs=[b[:8], a])
    assert moved.runs == [b, a] and moved.text == edited.text and moved.tags == edited.tags
    assert [f.finding_id for f in list_findings(store, run=b)] == [kept.finding_id, found.finding_id]
    for bad, match in (({"text": " "}, "text"), ({"tags": ["a,b"]}, "comma"), ({"runs": []}, "at least one run")):
        with pytest.raises(UsageError, match=match):
            edit_finding(store, found.finding_id, **bad)
    assert get_finding(store, found.finding_id).text == edited.text  # a refused edit changes nothing
    gone = remove_finding(store, found.finding_id)
    assert gone.text == edited.text
    assert [f.finding_id for f in list_findings(store)] == [kept.finding_id]
    assert {r.run_id for r in store.list_runs()} == {a, b}  # the runs it cited stay
    for act in (lambda: get_finding(store, found.finding_id), lambda: remove_finding(store, found.finding_id),
                lambda: edit_finding(store, "zzzz", text="x"), lambda: get_finding(store, a)):  # fmt: skip
        with pytest.raises(RunNotFoundError):
            act()


def test_diagnose_verdicts_recorded_once(store_runs):
    store, _, b = store_runs
    verdicts = [
        Verdict("error", "const.pred", "fold 1 constant"),
        Verdict("warning", "fit.under", "still rising"),
        Verdict("ok", "run.health", "fine"),
    ]
    assert len(record_verdicts(store, b, verdicts)) == 2
    assert record_verdicts(store, b, verdicts) == []  # the same verdicts again: nothing new
    recorded = list_findings(store, run=b, tag="diagnose")
    assert {f.text for f in recorded} == {"[error] const.pred: fold 1 constant", "[warning] fit.under: still rising"}
    assert {f.source for f in recorded} == {"diagnose"}


def test_cli_finding_add_and_findings(store_runs):
    from questlab.cli import app

    store, a, _ = store_runs
    runner = CliRunner()
    added = runner.invoke(app, ["finding", "add", "cli note", "--run", a, "--tag", "cli", "--store", store.uri])
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["findings", "--run", a, "--tag", "cli", "--json", "--store", store.uri])
    assert [f["text"] for f in json.loads(listed.stdout)] == ["cli note"]
    missing = runner.invoke(app, ["finding", "add", "no run", "--store", store.uri])
    assert missing.exit_code == 2 and "--run" in missing.output


def test_cli_diagnose_record_files_its_verdicts(store_runs):
    from questlab.cli import app

    store, mean_run, _ = store_runs
    result = CliRunner().invoke(app, ["diagnose", mean_run, "--record", "--no-report", "--store", store.uri])
    assert result.exit_code == 0, result.output
    recorded = list_findings(store, run=mean_run, tag="const.pred")
    assert len(recorded) == 1 and "all 30 targets in every fold" in recorded[0].text
