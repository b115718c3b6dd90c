"""Run artefacts are strict JSON: an undefined score is ``null`` on disk and NaN again when read.

``bootstrap: 0`` leaves the CV interval undefined and a constant prediction leaves a target's
Spearman undefined: both used to be written as ``NaN``, which jq, JavaScript and strict parsers
refuse. Stores written that way must still read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import questlab as ql
from helpers.runs import N_FOLDS
from helpers.runs import train_slice as slice_of_train
from questlab.cli import app
from questlab.metric import CONSTANT_PREDICTION, OK, score_cv
from questlab.models.base import FitLog
from questlab.recording import load_scores
from questlab.rundir import SCORES_FILE, RunFolder
from questlab.strictjson import strict_json


def strict_loads(text: str):
    """json.loads that refuses NaN and +-Infinity, as jq and JSON.parse do."""

    def refuse(name: str):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _scored(n_boot: int = 0):
    """A 3-fold score with target 7 constant everywhere; without resamples the interval is undefined."""
    rng = np.random.default_rng(3)
    y = rng.random((90, 30))
    p = y + rng.normal(0, 0.5, y.shape)
    p[:, 7] = 0.25
    return score_cv(y, p, np.repeat(np.arange(3), 30), groups=np.arange(90), n_boot=n_boot)


def _assert_same_scores(again, cv) -> None:
    assert again.score == cv.score and again.n_boot == cv.n_boot
    for name in ("per_target", "per_fold", "per_fold_target", "per_fold_status"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(cv, name))


def test_strict_json_writes_null_for_every_non_finite_float() -> None:
    value = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, np.float64("nan"))], "c": {"d": None, "e": 2, "f": "NaN"}}
    text = strict_json(value)
    assert strict_loads(text) == {"a": None, "b": [1.5, None, [None, None]], "c": {"d": None, "e": 2, "f": "NaN"}}
    assert strict_json({"x": 0.1}, indent=None) == '{"x": 0.1}'


def test_a_run_without_bootstrap_writes_strict_scores_and_reports_nan(tmp_path: Path) -> None:
    """bootstrap: 0 (no interval) and a model predicting constants (no Spearman) through the whole API."""
    store = tmp_path / "store"
    base = {"folds": {"n_splits": N_FOLDS, "seed": 1}, "bootstrap": 0}
    train = slice_of_train()
    const = ql.run({**base, "name": "floor", "model": {"name": "mean"}}, train=train, store=store, quiet=True)
    oracle = ql.run({**base, "name": "oracle", "model": {"name": "noisy_oracle"}}, train=train, store=store, quiet=True)
    for run in (const, oracle):
        written = strict_loads((run.record.folder / SCORES_FILE).read_text())
        assert written["ci_low"] is None and written["ci_high"] is None and written["n_boot"] == 0
        assert all(math.isnan(x) for x in run.ci)  # undefined, not 0, not None
    written = strict_loads((const.record.folder / SCORES_FILE).read_text())
    assert {r["spearman"] for r in written["per_target"]} == {None}
    assert CONSTANT_PREDICTION in {r["status"] for r in written["per_target"]}  # else "constant truth"
    # The API reads NaN back where the value is undefined; the score's own rule (constants count 0) stays.
    assert const.per_target["spearman"].dtype == np.float64 and const.per_target["spearman"].isna().all()
    assert const.cv == 0.0 and (const.fold_scores == 0.0).all()
    undefined = oracle.per_target["status"] != OK  # a rare target may be constant in the slice
    assert oracle.per_target["spearman"].isna().equals(undefined) and (~undefined).sum() >= 25 and oracle.cv > 0.3
    # Leaderboard and compare: NaN interval, no crash
    board = ql.runs(store=store).set_index("run_id")
    assert board.loc[[const.id, oracle.id], ["ci_low", "ci_high"]].isna().all().all()
    assert board.loc[oracle.id, "cv"] == pytest.approx(oracle.cv)
    listed = CliRunner().invoke(app, ["runs", "--json", "--store", str(store)])
    assert listed.exit_code == 0, listed.output
    assert {r["ci_low"] for r in strict_loads(listed.output)} == {None}
    cmp = ql.compare(const, oracle, n_boot=20)
    assert cmp.overall["b"] == pytest.approx(oracle.cv) and cmp.overall["delta"] > 0.3
    # compare scores each run as it was scored: the mean model's fold-by-fold constants count 0
    # (compare's pooled Spearman ranked the folds' offsets: -0.066 before)
    assert cmp.overall["a"] == 0.0 == const.cv and (cmp.per_target["a"] == 0.0).all()


def test_null_in_scores_json_reads_back_as_nan(tmp_path: Path) -> None:
    cv = _scored(n_boot=0)
    assert math.isnan(cv.ci_low) and math.isnan(cv.per_target["spearman"].iloc[7])
    (tmp_path / SCORES_FILE).write_text(json.dumps(cv.to_dict()).replace("NaN", "null"))
    again = load_scores(RunFolder(tmp_path))
    assert math.isnan(again.ci_low) and math.isnan(again.ci_high)
    assert again.per_target["spearman"].dtype == np.float64 and math.isnan(again.per_target["spearman"].iloc[7])
    _assert_same_scores(again, cv)


def test_a_scores_json_with_nan_from_older_questlab_still_reads(tmp_path: Path) -> None:
    cv = _scored(n_boot=0)
    text = json.dumps(cv.to_dict())  # Python's default: bare NaN, as questlab wrote it before
    assert "NaN" in text
    (tmp_path / SCORES_FILE).write_text(text)
    again = load_scores(RunFolder(tmp_path))
    assert math.isnan(again.ci_low) and math.isnan(again.ci_high)
    _assert_same_scores(again, cv)


def test_fit_logs_and_ensemble_records_are_strict_json(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.fold_dir(0).mkdir(parents=True)
    valid = pd.DataFrame({"qa_id": [1, 2]})
    log = FitLog(epochs=[{"epoch": 1, "train_loss": math.nan, "valid_score": 0.3}], timings={"fit_s": 1.0})
    run.write_fold_outputs(0, valid, None, log.to_dict(), {"score": 0.3, "timings": {"fit_s": 1.0}})
    assert strict_loads((run.fold_dir(0) / "fit_log.json").read_text())["epochs"][0]["train_loss"] is None
    strict_loads((run.fold_dir(0) / "fold.json").read_text())
    again = FitLog.from_dict(run.read_fit_logs()[0])
    assert math.isnan(again.epochs[0]["train_loss"]) and again.epochs[0]["valid_score"] == 0.3
    run.write_ensemble({"members": ["a"], "report": {"in_sample_gain": {"gain": math.nan}}})
    assert strict_loads((tmp_path / "ensemble.json").read_text())["report"]["in_sample_gain"]["gain"] is None
