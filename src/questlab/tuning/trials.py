"""Trials: the objective (one recorded CV run, pruned by fold) and the loop that runs them until the
study has its ``trials``, across workers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from questlab.config import parse_config
from questlab.console import quiet
from questlab.cv import run_cv
from questlab.errors import SettingsCannotFitError
from questlab.metrics import Metric
from questlab.store import RunStopped
from questlab.tuning.common import ATTR_CANNOT_FIT, TAG_PARENT, TAG_STUDY, TAG_TRIAL, fmt_value, is_counted, is_live
from questlab.tuning.context import StudyContext
from questlab.tuning.space import overrides_for
from questlab.tuning.storage import count_counted, count_live, count_trials, fail_stale_trials
from questlab.tuning.timing import backstop_s, out_of_time


class _SurplusTrial(Exception):
    """Raised when another worker already took the last trial slot (the trial is marked FAIL)."""


# Trial failures the objective has already reported in one line: Optuna's own warning for them
# (with a traceback) would read as a crash.
HANDLED_FAILURES = (_SurplusTrial, SettingsCannotFitError)


class _HandledFailures(logging.Filter):
    """Drops Optuna's "Trial N failed ..." warnings for the trials in ``numbers``."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: set[int] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(f"Trial {n} failed ") for n in self.numbers)


@contextlib.contextmanager
def _handled_failures_quiet() -> Iterator[_HandledFailures]:
    log = logging.getLogger("optuna.study._optimize")  # where Optuna logs a failed trial
    handled = _HandledFailures()
    log.addFilter(handled)
    try:
        yield handled
    finally:
        log.removeFilter(handled)


def run_until_done(ctx: StudyContext) -> None:
    """Optimise until the study counts ``trials`` trials: COMPLETE, PRUNED or FAIL because their
    settings cannot fit (waiting for other workers' running trials, and replacing any that
    failed otherwise); or until a time budget leaves no room for another trial."""
    while True:
        optimize(ctx)
        _wait_for_running(ctx)
        if count_counted(ctx.study) >= ctx.trials or ctx.stopped_for_time:
            return


def optimize(ctx: StudyContext) -> int:
    """Run trials in this process until the study's counted + running trials reach ``trials``."""
    ran = 0
    study = ctx.study

    def count_ran(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran
        ran += is_counted(trial)

    def stop_when_full(study: optuna.Study, trial: FrozenTrial) -> None:
        if count_live(study) >= ctx.trials or _time_is_up(ctx):
            study.stop()

    with _handled_failures_quiet() as handled:

        def objective(trial: optuna.Trial) -> float:
            try:
                return _objective(ctx, trial)
            except HANDLED_FAILURES:
                handled.numbers.add(trial.number)
                raise

        while True:
            fail_stale_trials(study)
            if count_live(study) >= ctx.trials or _time_is_up(ctx):
                return ran
            study.optimize(
                objective,
                callbacks=[stop_when_full, count_ran],
                catch=HANDLED_FAILURES,
                gc_after_trial=False,
                timeout=backstop_s(ctx),
            )
            if ctx.budget is not None and ctx.budget.remaining <= 0 and not ctx.stopped_for_time:
                ctx.stopped_for_time = "the time limit passed"  # Optuna's timeout ended the call


def _time_is_up(ctx: StudyContext) -> bool:
    """Whether the budget leaves no room for another trial (said once, recorded on ``ctx``)."""
    if ctx.stopped_for_time:
        return True
    why = out_of_time(ctx)
    if why:
        ctx.stopped_for_time = why
        ctx.say(f"study {ctx.name}: no more trials: {why}")
    return why is not None


def _wait_for_running(ctx: StudyContext, poll_s: float = 2.0) -> None:
    """Wait until no trial of the study is running (other workers), failing stale ones."""
    told = False
    while True:
        fail_stale_trials(ctx.study)
        running = count_trials(ctx.study, (TrialState.RUNNING,))
        if not running:
            return
        if not told:
            ctx.say(f"waiting for {running} trial(s) still running in other workers")
            told = True
        time.sleep(poll_s)


def _params_text(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={fmt_value(v)}" for k, v in values.items())


def _objective(ctx: StudyContext, trial: optuna.Trial) -> float:
    """One trial: a recorded CV run of the base config with the sampled values, pruned by fold."""
    study, n = ctx.study, trial.number
    # Exactly ``trials`` in total across workers: of concurrent trials, the lowest numbers win.
    live_before = [t for t in study.get_trials(deepcopy=False) if t.number <= n and is_live(t)]
    if len(live_before) > ctx.trials:
        trial.set_user_attr("surplus", True)
        study.stop()
        raise _SurplusTrial("another worker took the last trial of the study")
    values = ctx.space.suggest(trial)
    trial.set_user_attr("worker", ctx.worker)
    config = parse_config(
        {**ctx.trial_base, "name": f"{ctx.name}-t{n}"},
        source=f"study {ctx.name} trial {n}",
        overrides=overrides_for(values),
    )
    fold_scores: list[float] = []
    steps: list[float] = []  # the mean after each fold, in the order the folds are reported

    def on_fold(k: int, score: float, scores: list[float]) -> None:
        # Step n = the mean of the first n folds reported. Not len(scores) (every fold recorded so
        # far): with parallel folds another fold may be on disk already, and two reports would share a step.
        fold_scores.append(score)
        mean = float(np.mean(fold_scores))
        steps.append(mean)
        trial.report(mean, step=len(steps))
        if trial.should_prune():
            raise RunStopped(f"pruned by the median rule after {len(steps)} fold(s) (mean {mean:.4f})")

    tags = {TAG_PARENT: ctx.parent_id, TAG_STUDY: ctx.name, TAG_TRIAL: str(n)}
    t0 = time.perf_counter()
    try:
        run_id = run_cv(config, ctx.tuning, store=ctx.store, say=quiet, on_fold=on_fold, tags=tags)
    except RunStopped:
        run_id = _find_trial_run(ctx, n)
        if run_id:
            trial.set_user_attr("run_id", run_id)
        ctx.say(
            f"trial {n}: pruned after {len(steps)} fold(s) at {steps[-1]:.4f} [{_params_text(values)}] "
            f"{time.perf_counter() - t0:.1f} s"
        )
        raise optuna.TrialPruned() from None
    except SettingsCannotFitError as exc:  # the sampled settings, not a bug: FAIL this trial, go on
        trial.set_user_attr(ATTR_CANNOT_FIT, str(exc))
        run_id = _find_trial_run(ctx, n)
        if run_id:
            trial.set_user_attr("run_id", run_id)
        ctx.say(
            f"trial {n}: failed, its settings cannot fit: {exc} [{_params_text(values)}] "
            f"{time.perf_counter() - t0:.1f} s" + (f", run {run_id[:8]}" if run_id else "")
        )
        raise
    metrics = ctx.store.get(run_id).metrics
    value = float(metrics["cv_score"])
    trial.set_user_attr("run_id", run_id)
    trial.set_user_attr("ci", [metrics.get("cv_ci_low", math.nan), metrics.get("cv_ci_high", math.nan)])
    ctx.store.log_metrics(ctx.parent_id, {"trial_cv": value}, step=n)
    best = _best_value(study, ctx.metric)
    mark = " (best so far)" if best is None or ctx.metric.better(value, best) else ""
    ctx.say(
        f"trial {n}: CV {value:.4f}{mark} [{_params_text(values)}] {time.perf_counter() - t0:.1f} s, run {run_id[:8]}"
    )
    return value


def _best_value(study: optuna.Study, metric: Metric) -> float | None:
    done = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return done[metric.best(done)] if done else None


def _find_trial_run(ctx: StudyContext, number: int) -> str | None:
    """The run of a trial stopped inside run_cv (which returns no id when it raises)."""
    return ctx.store.find_run({TAG_PARENT: ctx.parent_id, TAG_TRIAL: str(number)})
