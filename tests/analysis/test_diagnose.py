"""diagnose: each check on arrays built to fail in a known way, then whole runs on a slice of train.csv."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers.runs import qa_id_in_fold, tiny_run
from questlab.analysis import diagnose as dg
from questlab.analysis.checks import folds as dg_checks
from questlab.models.base import FitLog
from questlab.schema import TARGETS
from questlab.store import TAG_COMPLETE, TAG_ERROR, RunRecord, Store

N, K = 600, 3


def codes(verdicts: list[dg.Verdict]) -> list[str]:
    return [v.code for v in verdicts]


def only(verdicts: list[dg.Verdict], code: str) -> list[dg.Verdict]:
    return [v for v in verdicts if v.code == code]


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ratings on a 5-step scale, predictions = truth + noise, 3 folds of 200 rows, 2 rows per question."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=(N, len(TARGETS))) / 4
    pred = np.clip(y + rng.normal(0, 0.3, y.shape), 0, 1)
    folds = np.repeat(np.arange(K), N // K)
    groups = np.arange(N) // 2
    return y, pred, folds, groups


# --- constant predictions ---------------------------------------------------------------------
def test_constant_fold_is_named_with_its_cost(data):
    y, pred, folds, _ = data
    pred[folds == 1] = 0.5
    verdicts = dg.check_constant_predictions(y, pred, folds)
    (v,) = only(verdicts, "const.pred")
    assert v.severity == "error" and v.evidence["fold"] == 1 and len(v.evidence["targets"]) == 30
    assert v.evidence["fold_score"] == 0
    # The cost is what the targets scored in the other folds, and the CV is better without the fold.
    assert v.evidence["cost_fold_score"] > 0.3
    assert v.evidence["cv_without_fold"] > v.evidence["cv_with_fold"]
    assert "fold 1" in v.message


def test_truth_constant_is_told_apart_from_prediction_constant(data):
    y, pred, folds, _ = data
    y[folds == 2, 0] = 0.0
    verdicts = dg.check_constant_predictions(y, pred, folds)
    assert "const.pred" not in codes(verdicts)
    (v,) = only(verdicts, "const.truth")
    assert v.evidence["fold"] == 2 and list(v.evidence["targets"]) == [TARGETS[0]]


def test_near_constant_predictions_are_flagged(data):
    y, pred, folds, _ = data
    sel = np.flatnonzero(folds == 0)
    pred[sel[: int(0.95 * len(sel))], 3] = 0.25
    (v,) = only(dg.check_constant_predictions(y, pred, folds), "const.near")
    assert v.evidence["fold"] == 0 and TARGETS[3] in v.evidence["targets"]


def test_all_constant_is_one_verdict_even_where_truth_is_constant_too(data):
    y, _, folds, _ = data
    y[folds == 0, 5] = 0.0  # the metric calls this "constant truth", yet the prediction is constant as well
    pred = np.tile(np.linspace(0.1, 0.9, 30), (N, 1)) + folds[:, None] * 0.01
    (v,) = only(dg.check_constant_predictions(y, pred, folds), "const.pred")
    assert "all 30 targets in every fold" in v.message
    assert v.evidence["constant_targets_per_fold"] == {"0": 30, "1": 30, "2": 30}


# --- folds ------------------------------------------------------------------------------------
def test_failed_fold(data):
    y, pred, folds, groups = data
    rng = np.random.default_rng(1)
    pred[folds == 2] = rng.random(((folds == 2).sum(), 30))  # ranks nothing
    verdicts = dg.check_weak_folds(y, pred, folds, groups, n_boot=50)
    (v,) = only(verdicts, "fold.failed")
    assert v.evidence["fold"] == 2 and v.evidence["score"] < 0.5 * v.evidence["others_median"]


def test_weak_fold_beyond_bootstrap_noise(data):
    y, pred, folds, groups = data
    rng = np.random.default_rng(2)
    sel = folds == 0
    pred[sel] = np.clip(y[sel] + rng.normal(0, 0.6, (sel.sum(), 30)), 0, 1)  # noisier, still ranks
    (v,) = only(dg.check_weak_folds(y, pred, folds, groups, n_boot=50), "fold.weak")
    assert v.evidence["fold"] == 0 and v.evidence["gap"] > 3 * v.evidence["bootstrap_se"]


def test_even_folds_are_ok(data):
    y, pred, folds, groups = data
    assert codes(dg.check_weak_folds(y, pred, folds, groups, n_boot=50)) == ["fold.even"]


# --- learning curves --------------------------------------------------------------------------
def _log(**series: list[float]) -> FitLog:
    log = FitLog()
    for i in range(len(next(iter(series.values())))):
        log.log_epoch(epoch=i + 1, **{k: v[i] for k, v in series.items()})
    return log


def test_folds_on_different_scales_are_named_and_consistent_folds_are_not(data):
    y, pred, folds, _ = data
    assert dg.check_fold_scales(y, pred, folds) == []  # one model's scale everywhere
    mixed = pred.copy()
    t = TARGETS.index("question_conversational")
    # fold 0 maps the target onto two levels, the other folds keep their continuous values
    sel = folds == 0
    mixed[sel, t] = np.where(pred[sel, t] > np.quantile(pred[sel, t], 0.8), 1.0, 0.0)
    mixed[~sel, t] = 0.5 + 0.5 * pred[~sel, t]  # still ranked well inside each fold
    (v,) = dg.check_fold_scales(y, mixed, folds)
    assert v.code == "folds.scales" and v.severity == "warning"
    assert list(v.evidence["targets"]) == ["question_conversational"]
    ev = v.evidence["targets"]["question_conversational"]
    assert ev["folds_mean"] - ev["pooled"] > dg_checks.SCALE_GAP
    from questlab.metric import fold_mean_score, mean_spearman

    assert v.evidence["fold_mean_score"] == pytest.approx(fold_mean_score(y, mixed, folds), abs=1e-4)
    assert v.evidence["pooled_score"] == pytest.approx(mean_spearman(y, mixed), abs=1e-4)
    assert dg.check_fold_scales(y[sel], mixed[sel], folds[sel]) == []  # one fold: nothing to pool


def test_under_training_from_rising_valid_score():
    logs = {0: _log(train_score=[0.2, 0.3, 0.4], valid_score=[0.2, 0.25, 0.3]), 1: _log(valid_score=[0.2, 0.3, 0.3])}
    (v,) = only(dg.check_fitting(logs), "fit.under")
    assert list(v.evidence["folds"]) == [0] and "0.250 -> 0.300" in v.message


def test_under_training_from_falling_valid_loss():
    (v,) = dg.check_fitting({0: _log(valid_loss=[1.0, 0.8, 0.7])})
    assert v.code == "fit.under"


def test_over_fitting_needs_train_to_improve_while_valid_falls():
    over = _log(train_score=[0.3, 0.4, 0.5, 0.6], valid_score=[0.30, 0.35, 0.32, 0.30])
    (v,) = only(dg.check_fitting({0: over}), "fit.over")
    assert v.evidence["folds"][0]["best_epoch"] == 2
    stale = _log(train_score=[0.3, 0.4, 0.4, 0.4], valid_score=[0.30, 0.35, 0.35, 0.35])
    assert codes(dg.check_fitting({0: stale})) == ["fit.ok"]


def test_models_without_epochs_say_so():
    log = FitLog(info={"fit": "one closed-form ridge solve; no epochs"})
    log.log_epoch(epoch=1, train_loss=0.1)
    (v,) = dg.check_fitting({0: log, 1: log})
    assert v.code == "fit.no_epochs" and "closed-form" in v.message


# --- targets ----------------------------------------------------------------------------------
def test_imbalanced_target_not_ranked_vs_ranked(data):
    y, pred, _, groups = data
    rng = np.random.default_rng(3)
    rare = rng.random(N) < 0.05
    y[:, 0] = np.where(rare, 1.0, 0.0)
    pred[:, 0] = rng.random(N)  # ignores the rare rows
    y[:, 1] = np.where(rare, 1.0, 0.0)
    pred[:, 1] = np.clip(y[:, 1] * 0.5 + rng.random(N) * 0.3, 0, 1)  # ranks them
    verdicts = dg.check_imbalance(y, pred, dg.target_intervals(y, pred, groups, n_boot=100))
    (bad,) = only(verdicts, "target.not_learned")
    assert bad.evidence["target"] == TARGETS[0] and bad.evidence["majority_share"] >= 0.9
    assert bad.evidence["low"] <= 0 < bad.evidence["high"]
    (good,) = only(verdicts, "target.imbalanced")
    assert [e["target"] for e in good.evidence["targets"]] == [TARGETS[1]]
    assert good.evidence["targets"][0]["auc_rare_vs_common"] > 0.9


def test_squashed_predictions(data):
    y, pred, folds, _ = data
    pred[:, 4] = 0.5 + 0.01 * (y[:, 4] - 0.5)  # right order, almost no spread
    (v,) = dg.check_spread(y, pred, folds)
    assert v.code == "spread.squashed" and v.evidence["squashed"] == [TARGETS[4]]
    assert v.evidence["ratio"][TARGETS[4]] < 0.1


def test_worst_targets_with_intervals(data):
    y, pred, _, groups = data
    pred[:, 7] = np.random.default_rng(4).random(N)
    (v,) = dg.check_worst_targets(dg.target_intervals(y, pred, groups, n_boot=50))
    worst = v.evidence["targets"]
    assert next(iter(worst)) == TARGETS[7] and worst[TARGETS[7]]["low"] <= 0
    assert v.severity == "warning"


# --- truncation and health --------------------------------------------------------------------
def test_truncation_share_and_loss():
    log = FitLog()
    tokens = np.array([100, 400, 600, 800])
    log.record_truncation("answer", tokens, np.minimum(tokens, 256))
    log.record_truncation("question_title", np.array([10, 12]), np.array([10, 12]))
    verdicts = {v.evidence["part"]: v for v in dg.check_truncation({0: log})}
    assert verdicts["answer"].severity == "warning" and verdicts["answer"].evidence["share_cut"] == 0.75
    assert verdicts["question_title"].severity == "info"
    assert codes(dg.check_truncation({0: FitLog()})) == ["truncation.none"]


def _record(status: str, **tags: str) -> RunRecord:
    return RunRecord("r1", "x", status, time.time(), None, tags=tags)


def test_status_failed_interrupted_partial():
    meta = {"folds_all": [0, 1, 2], "folds_selected": [0, 1, 2]}
    failed = dg.check_status(_record("FAILED", **{TAG_ERROR: "RuntimeError: boom"}), meta, [0])
    assert codes(failed) == ["run.failed", "run.missing_folds"] and "boom" in failed[0].message
    assert failed[1].evidence["missing"] == [1, 2]
    assert codes(dg.check_status(_record("RUNNING"), meta, [0, 1, 2])) == ["run.unfinished"]
    partial = dg.check_status(
        _record("FINISHED", **{TAG_COMPLETE: "false"}), {"folds_all": [0, 1, 2], "folds_selected": [0]}, [0]
    )
    assert codes(partial) == ["run.partial"]
    assert codes(dg.check_status(_record("FINISHED"), meta, [0, 1, 2])) == ["run.health"]


def test_nan_and_out_of_range_predictions(data):
    _, pred, folds, _ = data
    oof = pd.DataFrame(pred, columns=list(TARGETS)).assign(fold=folds)
    oof.iloc[5, 2] = np.nan
    test = pd.DataFrame(np.full((4, 30), 0.5), columns=list(TARGETS))
    test.iloc[0, 0] = 1.2
    verdicts = dg.check_prediction_values(oof, {"submission": test})
    assert codes(verdicts) == ["pred.nan", "test.range"]
    assert verdicts[1].evidence["n_out_of_range"] == 1


def test_severity_is_checked():
    with pytest.raises(ValueError, match="severity"):
        dg.Verdict("fatal", "x", "y")


# --- whole runs -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    return Store(f"sqlite:///{tmp_path_factory.mktemp('diag')}/s.db")


def test_mean_run_is_constant_on_all_targets_in_every_fold(store):
    verdicts = dg.diagnose_run(store, tiny_run(store, "mean"), n_boot=30)
    (v,) = [v for v in verdicts if v.code == "const.pred"]
    assert "all 30 targets in every fold" in v.message
    assert v.evidence["constant_targets_per_fold"] == {"0": 30, "1": 30, "2": 30}


def test_run_with_one_constant_fold_names_it_and_the_cost(store):
    run = tiny_run(store, "noisy_oracle", {"constant_if_valid_has": qa_id_in_fold(1)})
    verdicts = dg.diagnose_run(store, run, n_boot=30)
    (const,) = only(verdicts, "const.pred")
    assert const.evidence["fold"] == 1 and len(const.evidence["targets"]) == 30
    assert const.evidence["cost_fold_score"] > 0.1
    assert const.evidence["cv_without_fold"] > const.evidence["cv_with_fold"]
    (failed,) = only(verdicts, "fold.failed")
    assert failed.evidence["fold"] == 1
    json.dumps([v.to_dict() for v in verdicts])  # --json must be able to print every evidence


def test_run_stopped_early_is_under_trained(store):
    run = tiny_run(store, "noisy_oracle", {"epochs": 3, "token_budget": 60})
    verdicts = dg.diagnose_run(store, run, n_boot=30)
    (v,) = only(verdicts, "fit.under")
    assert sorted(v.evidence["folds"]) == [0, 1, 2]
    assert {v.evidence["part"] for v in only(verdicts, "truncation")} == {"question_title", "question_body", "answer"}
    json.dumps([v.to_dict() for v in verdicts])


def test_overfit_run(store):
    run = tiny_run(store, "noisy_oracle", {"epochs": 5, "overfit_after": 2})
    (v,) = only(dg.diagnose_run(store, run, n_boot=30), "fit.over")
    assert all(ev["best_epoch"] == 2 for ev in v.evidence["folds"].values())


def test_failed_run_reports_failure_and_missing_folds(store):
    with pytest.raises(RuntimeError, match="simulated"):
        tiny_run(store, "noisy_oracle", {"fail_if_valid_has": qa_id_in_fold(1)})
    failed = store.list_runs()[0]
    verdicts = dg.diagnose_run(store, failed.run_id, n_boot=30)
    assert {"run.failed", "run.missing_folds", "pred.missing"} <= set(codes(verdicts))
    assert only(verdicts, "run.missing_folds")[0].evidence["missing"] == [1, 2]


def test_hard_killed_run_is_unfinished(store):
    run = store.create_run("killed", tags={})  # never marked finished, as after kill -9
    assert {"run.unfinished", "pred.missing"} <= set(codes(dg.diagnose_run(store, run)))


def test_cli_diagnose_json_and_report(store):
    from questlab.cli import app

    run = tiny_run(store, "mean")  # its own run: the module's store holds whatever other tests ran before
    result = CliRunner().invoke(app, ["diagnose", run[:8], "--json", "--store", store.uri])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["run_id"] == run and {v["severity"] for v in out["verdicts"]} <= set(dg.SEVERITIES)
    assert "report.html" in {a.path for a in store.client.list_artifacts(run)}
    bad = CliRunner().invoke(app, ["diagnose", "nosuchrun", "--store", store.uri])
    assert bad.exit_code == 2 and "no run" in bad.output


def test_partial_run_says_which_folds_ran(store):
    run = tiny_run(store, "noisy_oracle", only_folds=[0])
    verdicts = dg.diagnose_run(store, run, n_boot=30)
    (partial,) = only(verdicts, "run.partial")
    assert partial.evidence == {"folds_selected": [0], "folds_all": [0, 1, 2]}
    assert "fold.single" in codes(verdicts) and "run.missing_folds" not in codes(verdicts)
