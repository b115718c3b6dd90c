"""Time budgets (``--time-limit``): the duration parser, a recipe planned to fit, a study that stops in time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import helpers.slow_model  # noqa: F401  # registers "slow"
import questlab as ql
from helpers.runs import train_slice
from questlab.cli import app
from questlab.errors import UsageError
from questlab.recipes import run_recipe
from questlab.store import Store
from questlab.timebudget import Budget, fmt_duration, parse_duration

TFIDF = {"name": "tf", "model": {"name": "tfidf", "params": {"max_features": 2000}}, "bootstrap": 20}


DURATIONS = [("90s", 90), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("2.5m", 150), ("600", 600), (42, 42)]


@pytest.mark.parametrize(("text", "seconds"), [*DURATIONS, (" 1H 5S ", 3605)])
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "15x", "-5", "0", "5m1h", "1m1m", "m", "nan", "1h-3m"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--budget-opt .*duration"):
        parse_duration(text, "--budget-opt")


def test_fmt_duration_and_budget() -> None:
    assert [fmt_duration(s) for s in (4.2, 40, 65, 3600 + 180)] == ["4.2 s", "40 s", "1 min 5 s", "1 h 3 min"]
    budget = Budget(10.0, start=time.monotonic() - 4)
    assert 5.9 < budget.remaining <= 6.0 and budget.fits(3, reserve=2) and not budget.fits(5, reserve=2)


def _recipe(tmp_path: Path, members: list[dict]) -> Path:
    spec = {
        "name": "timed",
        "members": [{"config": m} for m in members],
        "ensemble": {"method": "weights", "per_target": True, "average": "rank"},
        "question_share": False,
        "postprocess": "none",
        "bootstrap": 20,
    }
    path = tmp_path / "timed.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _slow(name: str, **params: float) -> dict:
    model = {"name": "slow", "params": params}
    return {"name": name, "folds": {"n_splits": 3, "seed": 1}, "bootstrap": 20, "model": model}


def test_a_tight_budget_drops_the_expensive_member_says_so_first_and_ends_in_time(tmp_path: Path) -> None:
    said: list[str] = []
    # the recipe's first member: ~0.03 s a row, 200 rows a fold, 3 folds: ~18 s, more than the budget leaves
    path = _recipe(tmp_path, [_slow("big", seconds_per_row=0.03), TFIDF])
    t0 = time.perf_counter()
    out = run_recipe(path, train_slice(), store=Store(tmp_path / "store"), say=said.append, time_limit="20s")
    wall = time.perf_counter() - t0
    plan_line = next(i for i, s in enumerate(said) if s.startswith("plan for 20 s"))
    assert "big ~" in said[plan_line] and "dropped (does not fit)" in said[plan_line]
    first_fit = next(i for i, s in enumerate(said) if s.endswith(": fitting"))
    assert plan_line < first_fit  # said before any member is fitted
    assert [m.name for m in out.members] == ["tf"] and out.skipped == ["big"]
    assert out.plan is not None and [m.keep for m in out.plan.members] == [False, True]
    assert out.time_limit == 20 and wall <= 20 * 1.05 + 2, wall
    assert any("budget 20 s: used" in s and "left out: big" in s for s in said)


def test_a_member_the_probes_underestimate_is_stopped_after_a_fold(tmp_path: Path) -> None:
    said: list[str] = []
    # a fold costs 4 s that the probes (fits without valid rows) cannot see
    path = _recipe(tmp_path, [TFIDF | {"folds": {"n_splits": 3, "seed": 1}}, _slow("sly", hidden_fold_s=4.0)])
    store = Store(tmp_path / "store")
    t0 = time.perf_counter()
    out = run_recipe(path, train_slice(), store=store, say=said.append, time_limit=12)
    wall = time.perf_counter() - t0
    assert [m.name for m in out.members] == ["tf"] and out.skipped == ["sly"]
    assert any("sly: stopped (after fold" in s and "KILLED" in s for s in said)
    assert wall <= 12 * 1.05 + 2, wall
    assert any(r.status == "KILLED" and r.name.startswith("sly") for r in store.list_runs())


def test_a_first_member_the_probes_underestimate_is_stopped_and_the_next_runs_on_the_recipe_folds(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    store = Store(tmp_path / "store")
    path = _recipe(tmp_path, [_slow("sly", hidden_fold_s=4.0), TFIDF | {"folds": {"n_splits": 5, "seed": 9}}])
    t0 = time.perf_counter()
    out = run_recipe(path, train_slice(), store=store, say=said.append, time_limit=12)
    wall = time.perf_counter() - t0
    assert [m.name for m in out.members] == ["tf"] and out.skipped == ["sly"]
    assert any("sly: stopped (after fold" in s for s in said)
    sly = next(r for r in store.list_runs() if r.name.startswith("sly"))
    tf = store.get(out.members[0].run_id)
    # the recipe's folds (the first member's: 3 folds, seed 1), not tf's own
    assert (tf.dir / "folds.csv").read_text() == (sly.dir / "folds.csv").read_text()
    assert wall <= 12 * 1.05 + 2, wall


def test_when_not_even_the_cheapest_member_fits_nothing_is_fitted(tmp_path: Path) -> None:
    store = tmp_path / "store"
    path = _recipe(tmp_path, [_slow("big", seconds_per_row=0.01), _slow("bigger", seconds_per_row=0.02)])
    with pytest.raises(UsageError, match=r"--time-limit 3.0 s: not even the cheapest member \(big, ~"):
        run_recipe(path, train_slice(), store=store, say=lambda _m: None, time_limit=3)
    assert not any(r.kind == "cv" for r in Store(store).list_runs())


def test_recorded_members_cost_nothing_in_the_plan(tmp_path: Path) -> None:
    path = _recipe(tmp_path, [TFIDF | {"folds": {"n_splits": 3, "seed": 1}}])
    store = Store(tmp_path / "store")
    run_recipe(path, train_slice(), store=store, say=lambda _m: None)
    said: list[str] = []
    out = run_recipe(path, train_slice(), store=store, say=said.append, time_limit="30s")
    assert out.plan is not None and out.plan.members[0].how == "recorded" and out.members[0].action == "reused"
    assert any(s.startswith("plan for 30 s: tf recorded, reused") for s in said)


def test_cli_and_api_take_a_time_limit(tmp_path: Path) -> None:
    path = _recipe(tmp_path, [TFIDF | {"folds": {"n_splits": 3, "seed": 1}}])
    bad = CliRunner().invoke(app, ["recipe", str(path), "--train", str(train_slice()), "--time-limit", "soon"])
    assert bad.exit_code == 2 and "--time-limit 'soon'" in bad.output
    assert not (tmp_path / "store").exists()
    store = tmp_path / "store"
    ok = CliRunner().invoke(
        app, ["recipe", str(path), "--train", str(train_slice()), "--time-limit", "1m", "--store", str(store)]
    )
    assert ok.exit_code == 0, ok.output
    assert "plan for 1 min: tf" in ok.output
    run = ql.recipe(path, train_slice(), store=store, quiet=True, time_limit="1m")
    assert run.id


SLOW_STUDY = _slow("slowtune", hidden_fold_s=0.6)
SLOW_SPACE = {"params": {"model.params.seconds_per_row": {"float": [0.0, 0.0001]}}}


def test_tune_with_a_time_limit_stops_starting_trials_and_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    # a trial: 3 folds of ~0.6 s; the held-out run ~1 trial / 2
    # the import (Optuna, MLflow) and the store made here are not the call's: the budget starts with the call
    tune, store = ql.tune, Store(tmp_path / "store")
    t0 = time.perf_counter()
    result = tune(
        SLOW_STUDY, SLOW_SPACE, train_slice(), trials=50, store=store, say=said.append,
        best_config_path=tmp_path / "best.yaml", time_limit="8s", prune=False,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    counted = result.n_complete + result.n_pruned + result.n_failed
    assert 1 <= counted < 50 and result.holdout_score is not None
    assert result.stopped_for_time and "would not fit" in result.stopped_for_time
    assert any(s.startswith("study slowtune: no more trials: ") for s in said)
    line = result.budget_line()
    assert line is not None and line.startswith("time limit 8.0 s: used ") and f"{counted} of 50 trials fit" in line
    assert line in result.summary()
    assert result.seconds is not None and result.seconds <= 8 * 1.05 and wall <= 8 * 1.05 + 2, (result.seconds, wall)


def test_tune_cli_refuses_a_bad_time_limit_and_workers(tmp_path: Path) -> None:
    config, space = tmp_path / "c.yaml", tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(TFIDF | {"folds": {"n_splits": 3, "seed": 1}}))
    space.write_text(yaml.safe_dump({"params": {"model.params.alpha": {"float": [0.3, 10]}}}))
    base = ["tune", str(config), "--space", str(space), "--train", str(train_slice()), "--store", str(tmp_path / "st")]
    bad = CliRunner().invoke(app, [*base, "--time-limit", "1 fortnight"])
    assert bad.exit_code == 2 and "--time-limit '1 fortnight'" in bad.output
    two = CliRunner().invoke(app, [*base, "--time-limit", "1m", "--workers", "2"])
    assert two.exit_code == 2 and "--time-limit holds for one process" in two.output
    assert not (tmp_path / "st").exists()
