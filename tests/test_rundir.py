"""The run format: run.json versions, upgrades of 0.2.0 runs, no absolute paths, typed reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from questlab.run_meta import FORMAT_VERSION, parse_meta
from questlab.rundir import RunFolder, RunFormatError

V1_META = {  # run.json as questlab 0.2.0 wrote it
    "run_id": "abc",
    "kind": "cv",
    "name": "tfidf",
    "model": "tfidf",
    "config": {"name": "tfidf", "model": {"name": "tfidf", "params": {}}},
    "seed": 42,
    "train_path": "/home/someone/quest/train.csv",
    "train_sha256": "0" * 64,
    "test_path": None,
    "test_sha256": None,
    "git_commit": "deadbeef",
    "questlab_version": "0.2.0",
    "folds_all": [0, 1, 2],
    "folds_selected": [0, 1, 2],
    "started_at": "2026-11-20T10:00:00",
    "timings": {"total_s": 12.5},
}


def test_a_0_2_0_run_json_loads_without_its_absolute_paths() -> None:
    meta = parse_meta(dict(V1_META), "run abc")
    assert meta.format_version == FORMAT_VERSION
    assert meta.train_file == "train.csv" and meta.test_file is None
    dumped = meta.model_dump(mode="json")
    assert "train_path" not in dumped and "/home/someone" not in json.dumps(dumped)
    assert meta.folds_selected == [0, 1, 2] and meta.timings == {"total_s": 12.5}


def test_a_newer_format_says_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text(json.dumps({**V1_META, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(RunFormatError, match="upgrade questlab"):
        RunFolder(tmp_path, "abc").read_meta()


def test_a_broken_run_json_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunFormatError, match=r"run abc: run.json is not valid JSON"):
        RunFolder(tmp_path, "abc").read_meta()
    (tmp_path / "run.json").write_text(json.dumps({**V1_META, "folds_all": "zero"}))
    with pytest.raises(RunFormatError, match=r"folds_all.*re-run"):
        RunFolder(tmp_path, "abc").read_meta()


def test_missing_outputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RunFormatError, match=r"run xyz has no oof.csv"):
        RunFolder(tmp_path, "xyz").read_oof()
    assert RunFolder(tmp_path).read_submission() is None
