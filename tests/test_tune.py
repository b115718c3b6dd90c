"""questlab tune: space validation, a recorded study with its held-out questions, pruning, resume,
stale trials and several worker processes on one SQLite study (on a 300-row slice of train.csv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pandas as pd
import pytest
import typer
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from helpers.paths import REPO
from helpers.runs import train_slice
from questlab import tuning as tune_mod
from questlab.cli import tuning
from questlab.config import ConfigError, parse_config
from questlab.cv import flatten
from questlab.store import Store
from questlab.tuning import (
    HOLDOUT_FILE,
    SearchSpace,
    StudyError,
    check_space,
    join_study,
    load_space,
    split_holdout,
    tune,
)
from questlab.tuning import storage as tune_storage
from questlab.tuning import study as tune_study
from questlab.tuning import trials as tune_trials

SMALL_TFIDF = {
    "name": "tfidf-small",
    "folds": {"n_splits": 3, "seed": 1},
    "bootstrap": 20,
    "model": {"name": "tfidf", "params": {"max_features": 2000}},
}
TFIDF_SPACE = {
    "params": {
        "model.params.alpha": {"float": [0.3, 100], "log": True},
        "model.params.min_df": {"int": [1, 3]},
    }
}
ORACLE = {"name": "oracle", "folds": {"n_splits": 3, "seed": 1}, "bootstrap": 10, "model": {"name": "noisy_oracle"}}


def quiet(msg: str) -> None:
    pass


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, so the command is invoked by its name as in questlab's CLI
        pass

    tuning.register(app)
    return app


def _counted(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


# --- the search space -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params: [", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping with a 'params' key"),
        ("parms: {}\n", "parms: unknown key"),
        ("params: {}\n", "params: Dictionary should have at least 1 item"),
        ("params:\n  model.params.alpha: {float: [3, 1]}\n", "params: model.params.alpha: low 3.0 is above high 1.0"),
        ("params:\n  model.params.alpha: {choice: []}\n", "choice: give at least one value"),
        ("params:\n  model.params.alpha: {floot: [1, 3]}\n", "floot: unknown key (accepted: float, int"),
        ("params:\n  model.params.alpha: {float: [0, 3], log: true}\n", "log: true needs low > 0"),
        ("params:\n  model.params.alpha: {float: [1, 3], int: [1, 3]}\n", "got float and int"),
        ("params:\n  model.params.min_df: {int: [1, 2.5]}\n", "params: model.params.min_df.int.1"),
        ("params:\n  model.params.alpha: {choice: [1, 1]}\n", "listed twice"),
        ("params:\n  folds.n_splits: {int: [3, 5]}\n", "the study fixes folds itself"),
        ("params:\n  model.params.min_df: {int: [1, 3], step: 5}\n", "step 5 is larger than the range [1, 3]"),
        ("params:\n  model.params.alpha: {float: [0.1, 0.5], step: 1}\n", "step 1 is larger than the range"),
        (
            "params:\n  model.params.alpha: {float: [1, 3]}\n  model.params.alpha: {float: [5, 9]}\n",
            "line 3, column 3: key 'model.params.alpha' is given twice (first at line 2)",
        ),
    ],
)
def test_space_file_errors_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_space(path)
    assert str(err.value).startswith(str(path)) and expected in str(err.value)


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such search space file"):
        load_space(tmp_path / "nope.yaml")


def test_space_keys_and_values_are_checked_against_the_config() -> None:
    base = parse_config(SMALL_TFIDF)
    typo = load_space({"params": {"model.params.apha": {"float": [0.3, 3]}}})
    with pytest.raises(ConfigError) as err:
        check_space(typo, base, "s.yaml")
    message = str(err.value)
    assert message.startswith("s.yaml: params: model.params.apha")
    assert "did you mean 'model.params.alpha'" in message and "accepted keys" in message and "ngram_max" in message
    too_far = load_space({"params": {"model.params.ngram_max": {"int": [1, 4]}}})  # TfidfParams: le=3
    with pytest.raises(ConfigError, match="ngram_max"):
        check_space(too_far, base, "s.yaml")
    check_space(load_space(REPO / "configs" / "spaces" / "tfidf.yaml"), base)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # edge values 1.0 and 3.0 pass as ints: only the type check stops trial 0 getting 2.71
        ({"float": [1, 3]}, "model.params.ngram_max: a float range, but ngram_max takes an int: use {int: [1, 3]}"),
        ({"choice": [1, True]}, "model.params.ngram_max: choice true is a bool, but ngram_max takes an int"),
        ({"choice": [1, 2.0]}, "model.params.ngram_max: choice 2.0 is a float, but ngram_max takes an int"),
    ],
)
def test_space_values_must_be_of_the_kind_the_parameter_declares(spec: dict, expected: str) -> None:
    base = parse_config(SMALL_TFIDF)
    space = load_space({"params": {"model.params.ngram_max": spec}})
    with pytest.raises(ConfigError) as err:
        check_space(space, base, "s.yaml")
    assert str(err.value) == f"s.yaml: params: {expected}"
    # what a parameter of that type does take
    for key, fine in [
        ("model.params.alpha", {"int": [1, 5]}),  # whole numbers for a float
        ("model.params.alpha", {"choice": [1, 2.5]}),
        ("model.params.ngram_max", {"choice": [1, 2]}),
        ("seed", {"choice": [1, 2]}),
    ]:
        check_space(load_space({"params": {key: fine}}), base, "s.yaml")
    with pytest.raises(ConfigError, match=r"s.yaml: params: seed: choice \"a\" is a string, but seed takes an int"):
        check_space(load_space({"params": {"seed": {"choice": [1, "a"]}}}), base, "s.yaml")


def test_holdout_split_keeps_questions_whole_and_is_seeded() -> None:
    from questlab.data import load_train

    frame = load_train(train_slice())
    a, b, c = split_holdout(frame, 0.2, 1), split_holdout(frame, 0.2, 1), split_holdout(frame, 0.2, 2)
    assert a.equals(b) and not a.equals(c)
    assert (a.groupby("group")["fold"].nunique() == 1).all()  # no question on both sides
    n_groups = a["group"].nunique()
    assert a.loc[a["fold"] == 0, "group"].nunique() == round(0.2 * n_groups)


# --- a study ------------------------------------------------------------------------------------
def test_study_records_trials_under_one_parent_and_scores_the_best_on_untouched_questions(
    store: Store, tmp_path: Path
) -> None:
    best_path = tmp_path / "best.yaml"
    result = tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=4, store=store, best_config_path=best_path, say=quiet)
    study = result.study
    assert len(_counted(study)) == 4
    parent = store.get(result.parent_run_id)
    assert parent.kind == "study" and parent.status == "FINISHED" and parent.name == "tfidf-small"
    children = [r for r in store.list_runs() if r.run_id != parent.run_id]
    assert all(store.client.get_run(r.run_id).data.tags["mlflow.parentRunId"] == parent.run_id for r in children)
    trial_runs = [r for r in children if "questlab.trial" in r.tags]
    assert sorted(int(r.tags["questlab.trial"]) for r in trial_runs) == [0, 1, 2, 3]
    assert {t.user_attrs["run_id"] for t in study.trials} == {r.run_id for r in trial_runs}
    assert all(r.tags["questlab.study"] == "tfidf-small" for r in children)

    split = pd.read_csv(parent.dir / HOLDOUT_FILE)
    held = set(split.loc[split["fold"] == 0, "qa_id"])
    tuning_ids = set(split.loc[split["fold"] == 1, "qa_id"])
    assert held and not held & tuning_ids and len(held) + len(tuning_ids) == 300
    study_folds = (parent.dir / "folds.csv").read_text()
    for r in trial_runs:
        # every trial: the study's folds, only tuning rows, no MLflow model
        assert (r.dir / "folds.csv").read_text() == study_folds
        assert set(pd.read_csv(r.dir / "folds.csv")["qa_id"]) == tuning_ids
        assert not held & set(pd.read_csv(r.dir / "oof.csv")["qa_id"])
        assert not (r.dir / "model").exists()
        assert json.loads((r.dir / "run.json").read_text())["config"]["log_model"] is False

    # the best config: a valid config holding the best trial's values, also on the parent run
    best = study.best_trial
    assert result.best_trial == best.number and result.best_cv == best.value
    assert result.best_cv == store.get(result.best_run_id).metrics["cv_score"]
    written = parse_config(yaml.safe_load(best_path.read_text()), source=str(best_path))
    flat = flatten(written.model_dump(mode="json"))
    assert {k: flat[k] for k in best.params} == best.params
    assert written.folds.n_splits == 3 and written.folds.from_run is None
    assert (parent.dir / "best_config.yaml").read_text() == best_path.read_text()

    # the untouched questions: one partial run, trained on the tuning rows, scored on the held-out ones
    hold = store.get(result.holdout_run_id)
    assert hold.tags["questlab.holdout"] == "true" and hold.tags["questlab.complete"] == "false"
    assert set(pd.read_csv(hold.dir / "oof.csv")["qa_id"]) == held
    hold_config = json.loads((hold.dir / "run.json").read_text())["config"]
    assert {k: flatten(hold_config)[k] for k in best.params} == best.params
    assert result.holdout_score == hold.metrics["cv_score"]
    assert parent.metrics["holdout_score"] == result.holdout_score
    assert parent.metrics["best_cv"] == result.best_cv
    assert result.holdout_ci is not None and result.holdout_ci[0] <= result.holdout_score <= result.holdout_ci[1]
    report = (parent.dir / "report.html").read_text()
    assert "optimisation history" in report and "untouched groups" in report and report.count("<img") >= 3


def test_resume_adds_only_the_missing_trials_and_keeps_the_holdout_score(store: Store, tmp_path: Path) -> None:
    args = {"store": store, "best_config_path": tmp_path / "b.yaml", "say": quiet, "study_name": "resumed"}
    first = tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=3, **args)
    numbers = [t.number for t in _counted(first.study)]
    again = tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=3, **args)  # nothing left to run
    assert len(again.study.trials) == 3 and again.parent_run_id == first.parent_run_id
    assert again.holdout_run_id == first.holdout_run_id  # same best trial: the held-out questions are not re-used
    more = tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=5, **args)
    assert len(_counted(more.study)) == 5 and [t.number for t in _counted(more.study)][:3] == numbers
    assert more.parent_run_id == first.parent_run_id
    assert len([r for r in store.list_runs() if r.tags.get("questlab.kind") == "study"]) == 1
    with pytest.raises(StudyError, match="another search space"):
        other = {"params": {"model.params.alpha": {"float": [1, 10]}}}
        tune(SMALL_TFIDF, other, train_slice(), trials=5, **args)
    with pytest.raises(StudyError, match=r"holdout 0\.2"):
        tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=5, holdout=0.3, **args)


def test_a_worker_with_other_data_or_store_is_refused(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tune(
        ORACLE,
        {"params": {"model.params.noise": {"choice": [0.1, 0.2]}}},
        train_slice(),
        trials=1,
        store=store,
        study_name="data",
        best_config_path=tmp_path / "b.yaml",
        say=quiet,
    )
    other = pd.read_csv(train_slice()).head(200)
    with pytest.raises(StudyError, match="is not what study data was started with"):
        join_study("data", other, store=store, trials=2, say=quiet)
    elsewhere = Store(tmp_path / "other-store")
    with pytest.raises(StudyError, match="is not in store"):
        join_study("data", train_slice(), store=elsewhere, storage=tune_mod.default_storage(store), say=quiet)
    monkeypatch.setattr(tune_study, "JOIN_WAIT_S", 0)  # read by join_study, in its module
    with pytest.raises(StudyError, match="no study 'nope'"):
        join_study("nope", train_slice(), store=store, say=quiet)


def test_bad_trials_are_pruned_and_their_runs_marked_killed(store: Store, tmp_path: Path) -> None:
    space = {"params": {"model.params.noise": {"choice": [0.05, 3.0]}}}
    result = tune(
        ORACLE, space, train_slice(), trials=14, store=store, best_config_path=tmp_path / "b.yaml", seed=3, say=quiet
    )
    pruned = result.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned and result.n_pruned == len(pruned)
    for t in pruned:
        assert t.params["model.params.noise"] == 3.0  # only the clearly bad ones
        assert max(t.intermediate_values) < 3  # stopped before the last fold
        run = store.get(t.user_attrs["run_id"])
        assert run.status == "KILLED" and run.tags["questlab.error"].startswith("stopped: pruned")
    assert result.best_config.model.params["noise"] == 0.05


def test_trials_whose_settings_cannot_fit_are_failed_with_the_reason_and_the_study_goes_on(
    store: Store, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # 240 tuning rows, 3 folds: 160 training rows a fold; a min_df in the hundreds keeps no term
    space = {"params": {"model.params.min_df": {"int": [1, 500], "log": True}}}
    said: list[str] = []
    result = tune(
        SMALL_TFIDF,
        space,
        train_slice(),
        trials=3,
        seed=1,
        store=store,
        best_config_path=tmp_path / "b.yaml",
        say=said.append,
    )
    trials = sorted(result.study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]  # seed 1: 438, 8, 1
    first = trials[0]
    reason = first.user_attrs["cannot_fit"]
    assert reason.startswith(f"fold 0: model.params.min_df={first.params['model.params.min_df']} leaves no ")
    assert "lower min_df" in reason
    run = store.get(first.user_attrs["run_id"])
    assert run.status == "FAILED" and run.tags["questlab.error"] == f"SettingsCannotFitError: {reason}"
    assert any(m.startswith("trial 0: failed, its settings cannot fit: fold 0: model.params.min_df=") for m in said)
    # the failed trial counts: 3 trials in all, and the report says one failed
    assert (result.n_complete, result.n_pruned, result.n_failed) == (2, 0, 1)
    assert "2 complete, 0 pruned, 1 failed" in result.summary()
    assert store.get(result.parent_run_id).status == "FINISHED"
    assert result.best_config.model.params["min_df"] in {t.params["model.params.min_df"] for t in trials[1:]}
    assert "leaves no" in (store.get(result.parent_run_id).dir / "report.html").read_text()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Trial 0 failed" not in err  # questlab's one line, not Optuna's warning


def test_a_study_where_no_settings_fit_ends_with_the_reason(store: Store, tmp_path: Path) -> None:
    space = {"params": {"model.params.min_df": {"int": [400, 500]}}}
    with pytest.raises(StudyError) as err:
        tune(SMALL_TFIDF, space, train_slice(), trials=2, store=store, best_config_path=tmp_path / "b.yaml", say=quiet)
    message = str(err.value)
    assert (
        "no trial completed (0 pruned, 2 failed): nothing to choose; trial 0: fold 0: model.params.min_df=" in message
    )
    assert [r.status for r in store.list_runs() if r.kind == "study"] == ["FAILED"]
    assert [r.status for r in store.list_runs() if "questlab.trial" in r.tags] == ["FAILED", "FAILED"]


def test_parallel_folds_report_each_fold_under_its_own_step(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tune_trials.run_cv

    def racing(*args, on_fold, **kwargs):  # type: ignore[no-untyped-def]
        # Two folds at once: when the first is reported, the other may be recorded already.
        def seen_late(k: int, score: float, scores: list[float]) -> None:
            on_fold(k, score, [*scores, score] if len(scores) == 1 else scores)

        return real(*args, on_fold=seen_late, **kwargs)

    monkeypatch.setattr(tune_trials, "run_cv", racing)
    config = {**SMALL_TFIDF, "parallel_folds": 2}  # the fold workers import questlab's own models only
    space = {"params": {"model.params.alpha": {"float": [1, 10]}}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tune(
            config, space, train_slice(), trials=1, store=store, best_config_path=tmp_path / "b.yaml", say=quiet
        )
    assert not [w for w in caught if "already reported" in str(w.message)]
    (trial,) = result.study.trials
    assert sorted(trial.intermediate_values) == [1, 2, 3]  # one step per fold: none lost to the pruner
    folds = store.folder(trial.user_attrs["run_id"])
    scores = [folds.read_fold_summary(k)["score"] for k in range(3)]
    assert trial.intermediate_values[3] == pytest.approx(sum(scores) / 3)


def test_trials_of_a_dead_process_are_failed_and_replaced(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    space = {"params": {"model.params.noise": {"float": [0.05, 0.5]}}}
    args = {"store": store, "best_config_path": tmp_path / "b.yaml", "say": quiet, "study_name": "stale"}
    monkeypatch.setattr(tune_storage, "GRACE_PERIOD_S", 1)  # read by open_storage, in its module
    first = tune(ORACLE, space, train_slice(), trials=2, **args)
    # a process that started a trial, sent one heartbeat and was killed (SIGKILL: no FAIL recorded)
    storage = tune_mod.open_storage(tune_mod.default_storage(store))
    with pytest.warns(UserWarning, match="Heartbeat"):  # optuna: heartbeats are meant for optimize()
        orphan = optuna.load_study(study_name="stale", storage=storage).ask()
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(2.5)
    result = tune(ORACLE, space, train_slice(), trials=3, **args)
    states = {t.number: t.state for t in result.study.trials}
    assert states[orphan.number] == TrialState.FAIL
    assert len(_counted(result.study)) == 3 and result.parent_run_id == first.parent_run_id


def test_two_worker_processes_share_one_study_and_stop_at_exactly_n(store: Store, tmp_path: Path) -> None:
    args = {"store": store, "best_config_path": tmp_path / "b.yaml", "say": quiet, "study_name": "shared"}
    tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=1, **args)
    total = 8
    src = str(Path(tune_mod.__file__).resolve().parents[2])  # src/questlab/tuning/__init__.py
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    spec = {
        "study": "shared",
        "storage": tune_mod.default_storage(store),
        "store": store.uri,
        "train": str(train_slice()),
        "trials": total,
    }
    procs = [
        subprocess.Popen([sys.executable, "-m", "questlab.tuning", json.dumps({**spec, "worker": i})], env=env)
        for i in (1, 2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    study = optuna.load_study(study_name="shared", storage=tune_mod.default_storage(store))
    counted = _counted(study)
    assert len(counted) == total and len({t.number for t in counted}) == total
    assert all(t.user_attrs.get("surplus") for t in study.get_trials(states=(TrialState.FAIL,)))
    workers = {t.user_attrs["worker"] for t in counted if t.number > 0}
    assert len(workers) == 2  # both processes ran trials
    runs = {t.user_attrs["run_id"] for t in counted}
    assert len(runs) == total
    # the starting process finishes the study: nothing left to run
    result = tune(SMALL_TFIDF, TFIDF_SPACE, train_slice(), trials=total, **args)
    assert len(result.study.trials) == len(study.trials) and result.holdout_score is not None


def test_workers_option_spawns_processes_on_this_machine(store: Store, tmp_path: Path) -> None:
    said: list[str] = []
    # a DataFrame: the workers get it as a CSV file with the same identity (sha256)
    result = tune(
        SMALL_TFIDF,
        TFIDF_SPACE,
        pd.read_csv(train_slice()),
        trials=6,
        workers=2,
        store=store,
        best_config_path=tmp_path / "b.yaml",
        say=said.append,
    )
    counted = _counted(result.study)
    assert len(counted) == 6 and len({t.user_attrs["run_id"] for t in counted}) == 6
    assert any("in 2 processes" in m for m in said) and not any("exited with code" in m for m in said)
    assert store.get(result.parent_run_id).status == "FINISHED"


def test_no_holdout_warns_that_the_best_cv_is_optimistic(store: Store, tmp_path: Path) -> None:
    said: list[str] = []
    space = {"params": {"model.params.noise": {"float": [0.05, 0.5]}}}
    result = tune(
        ORACLE,
        space,
        train_slice(),
        trials=2,
        holdout=0,
        store=store,
        best_config_path=tmp_path / "b.yaml",
        say=said.append,
    )
    assert result.holdout_score is None and result.holdout_run_id is None
    assert any("optimistic" in m for m in said) and any("optimistic" in n for n in result.notes)
    assert len(result.study.trials[0].user_attrs) and "holdout_score" not in store.get(result.parent_run_id).metrics


# --- the command ---------------------------------------------------------------------------------
def test_cli_prints_best_config_then_parent_run_id(tmp_path: Path) -> None:
    config, space = tmp_path / "c.yaml", tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(SMALL_TFIDF))
    space.write_text(yaml.safe_dump(TFIDF_SPACE))
    uri = str(tmp_path / "store")
    out = CliRunner().invoke(
        _cli(),
        [
            "tune",
            str(config),
            "--space",
            str(space),
            "--train",
            str(train_slice()),
            "--trials",
            "2",
            "--best-config",
            str(tmp_path / "best.yaml"),
            "--store",
            uri,
        ],
    )
    assert out.exit_code == 0, out.output
    best_path, parent_id = out.stdout.strip().splitlines()[-2:]
    assert Path(best_path) == (tmp_path / "best.yaml").resolve() and Store(uri).get(parent_id).kind == "study"
    # another machine would join with the same command plus --join (here: one more trial)
    joined = CliRunner().invoke(
        _cli(),
        [
            "tune",
            str(config),
            "--space",
            str(space),
            "--train",
            str(train_slice()),
            "--trials",
            "3",
            "--join",
            "--store",
            uri,
        ],
    )
    assert joined.exit_code == 0, joined.output
    assert joined.stdout.strip().splitlines()[-1] == parent_id and "ran 1 trial(s)" in joined.output


@pytest.mark.parametrize(
    ("extra", "space_text", "expected"),
    [
        (["--trials", "0"], None, "trials 0: give at least 1"),
        (["--holdout", "0.95"], None, "holdout 0.95"),
        (["--storage", "nosuchdb://x/y"], None, "Optuna cannot open it"),
        ([], "params:\n  model.params.alpha: {float: [5, 1]}\n", "low 5.0 is above high 1.0"),
        ([], "params:\n  model.params.apha: {float: [1, 5]}\n", "did you mean 'model.params.alpha'"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, extra: list[str], space_text: str | None, expected: str
) -> None:
    config, space = tmp_path / "c.yaml", tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(SMALL_TFIDF))
    space.write_text(space_text or yaml.safe_dump(TFIDF_SPACE))
    out = CliRunner().invoke(
        _cli(),
        [
            "tune",
            str(config),
            "--space",
            str(space),
            "--train",
            str(train_slice()),
            "--store",
            str(tmp_path / "s"),
            *extra,
        ],
    )
    assert out.exit_code == 2, out.output
    last = out.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last and "Traceback" not in out.output


@pytest.mark.parametrize(
    ("space_text", "expected"),
    [
        ("params:\n  model.params.ngram_max: {float: [1, 3]}\n", "a float range, but ngram_max takes an int"),
        ("params:\n  model.params.ngram_max: {choice: [1, true]}\n", "choice true is a bool"),
        ("params:\n  model.params.min_df: {int: [1, 3], step: 5}\n", "step 5 is larger than the range"),
        ("params:\n  model.params.alpha: {float: [1, 3]}\n  model.params.alpha: {float: [1, 9]}\n", "given twice"),
    ],
)
def test_cli_space_type_errors_exit_2_in_one_line_before_anything_is_written(
    tmp_path: Path, space_text: str, expected: str
) -> None:
    config, space = tmp_path / "c.yaml", tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(SMALL_TFIDF))
    space.write_text(space_text)
    before = sorted(tmp_path.iterdir())
    argv = ["tune", str(config), "--space", str(space), "--train", str(train_slice()), "--store", str(tmp_path / "s")]
    out = CliRunner().invoke(_cli(), [*argv, "--best-config", str(tmp_path / "best.yaml")])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {space}") and expected in lines[0]
    assert sorted(tmp_path.iterdir()) == before  # no store, no best config


def test_space_round_trips_through_its_yaml() -> None:
    space = load_space(TFIDF_SPACE)
    assert SearchSpace.model_validate(yaml.safe_load(space.to_yaml())).digest() == space.digest()
