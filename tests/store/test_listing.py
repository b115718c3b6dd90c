"""Listing a local store reads SQLite directly (``questlab runs`` / ``findings`` under 1 s): same rows as MLflow's."""

from __future__ import annotations

from pathlib import Path

import pytest

from questlab.store import Store


def _fields(records):
    return [(r.run_id, r.name, r.status, r.start_time, r.end_time, r.tags, r.params, r.metrics) for r in records]


def test_listing_without_mlflow_gives_mlflow_s_rows(tmp_path: Path) -> None:
    writer = Store(tmp_path / "store")
    ids = []
    for i in range(4):
        run_id = writer.create_run(f"run-{i}", {"questlab.model": "tfidf", "k": str(i)})
        writer.log_params(run_id, {"alpha": i})
        writer.log_metrics(run_id, {"cv_score": 0.3 + i / 100, "cv_ci_low": 0.25})
        writer.log_metrics(run_id, {"cv_score": 0.4 + i / 100}, step=1)  # the latest value is listed
        if i != 3:
            writer.finish(run_id)
        ids.append(run_id)
    writer.client.delete_run(ids[1])  # deleted runs are not listed
    other = writer.create_run("finding", {"x": "y"}, experiment="questlab-findings")

    reader = Store(tmp_path / "store", create=False)
    fast = reader.list_runs()
    assert reader.tracking._client is None  # no MLflow client was opened to list
    slow = writer.list_runs()
    assert [r.run_id for r in fast] == [ids[3], ids[2], ids[0]]
    assert _fields(fast) == _fields(slow)
    assert fast[0].metrics == pytest.approx({"cv_score": 0.43, "cv_ci_low": 0.25})
    assert [r.run_id for r in reader.list_runs("questlab-findings")] == [other]
    assert reader.list_runs("no-such-experiment") == []
    assert fast[0].store is reader and reader.get(ids[0][:8]).run_id == ids[0]  # the client opens when needed
