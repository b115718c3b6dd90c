"""A study under a time budget (``tune(..., time_limit=...)``, ``questlab tune --time-limit``).

No new trial starts once the time left is less than what a trial is expected to take (the mean
duration of the study's complete trials; before any has completed, of its finished ones) plus
what the final held-out run is expected to take. That run is always made (it is the study's
honest score), so its time is *reserved up front*, as one whole trial's duration: it fits one
model on all the tuning rows (about a fold of a trial, scaled from (k-1)/k of the rows to all of
them), but the run's recording, the study's report and its plots come on top, and a fold's share
of a trial undercounts them (measured: a 3-fold trial of 2.7 s, then 2.1 s for the held-out run
and the report). Optuna's own ``timeout`` is passed as a backstop. The first trial always runs:
a budget shorter than one trial is overrun by that trial (and the held-out run), which the summary
reports. Budgets hold for one process: :func:`questlab.tuning.tune` refuses ``time_limit`` with
several workers.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from questlab.timebudget import Budget, fmt_duration
from questlab.tuning.context import StudyContext


def expected_trial_s(study: optuna.Study) -> float | None:
    """Mean seconds of the study's complete trials (else of its pruned / failed ones); None before any ended."""
    for states in ((TrialState.COMPLETE,), (TrialState.PRUNED, TrialState.FAIL)):
        times = [t.duration.total_seconds() for t in study.get_trials(deepcopy=False, states=states) if t.duration]
        if times:
            return sum(times) / len(times)
    return None


def expected_holdout_s(trial_s: float, n_splits: int) -> float:
    """Seconds kept for the held-out run and the study's report: one trial's (generous; see the module)."""
    return trial_s


def out_of_time(ctx: StudyContext) -> str | None:
    """Why no further trial may start under ``ctx.budget`` (None: one may start, or there is no budget)."""
    budget: Budget | None = ctx.budget
    if budget is None:
        return None
    trial_s = expected_trial_s(ctx.study)
    if trial_s is None:
        return None  # the first trial always runs: it is what the estimates come from
    holdout_s = expected_holdout_s(trial_s, ctx.base.folds.n_splits) if ctx.split is not None else 0.0
    if budget.fits(trial_s, reserve=holdout_s):
        return None
    held = f" and the held-out run (~{fmt_duration(holdout_s)})" if holdout_s else ""
    return (
        f"{fmt_duration(budget.remaining)} left of {fmt_duration(budget.limit)}: a trial (~{fmt_duration(trial_s)})"
        f"{held} would not fit"
    )


def backstop_s(ctx: StudyContext) -> float | None:
    """Optuna's ``timeout`` for one ``optimize`` call: the time left less the held-out run's estimate."""
    if ctx.budget is None:
        return None
    trial_s = expected_trial_s(ctx.study) or 0.0
    holdout_s = expected_holdout_s(trial_s, ctx.base.folds.n_splits) if ctx.split is not None else 0.0
    return max(0.001, ctx.budget.remaining - holdout_s)
