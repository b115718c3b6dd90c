"""One process's view of a study (what its trials need) and what a study reports."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from questlab.config import RunConfig
from questlab.console import Say
from questlab.metrics import Metric
from questlab.store import Store
from questlab.tasks import Task, load_task
from questlab.timebudget import Budget, fmt_duration
from questlab.tuning.space import SearchSpace


@dataclass
class TuneResult:
    """What a finished study reports; ``study`` is the Optuna study itself."""

    study_name: str
    study: optuna.Study
    parent_run_id: str
    best_trial: int
    best_run_id: str
    best_cv: float  # the best trial's CV (pooled OOF mean Spearman): optimistic, it was chosen
    best_cv_ci: tuple[float, float]
    best_config: RunConfig
    best_config_path: Path
    holdout_score: float | None  # the chosen config on the untouched groups (None: holdout 0)
    holdout_ci: tuple[float, float] | None
    holdout_run_id: str | None
    n_complete: int
    n_pruned: int
    n_failed: int
    report_path: Path | None = None
    notes: list[str] = field(default_factory=list)
    scored_by: str = ""  # what the scores are: "mcrmse, lower is better" (see recording.score_label)
    time_limit: float | None = None  # the budget in seconds (None: none)
    seconds: float | None = None  # wall time of this call, the held-out run included
    trials_asked: int | None = None
    stopped_for_time: str | None = None  # why trials stopped before ``trials_asked`` (None: they did not)

    def budget_line(self) -> str | None:
        """``time limit 15 min: used 14 min 2 s (94%); 23 of 40 trials fit (...)``; None without a budget."""
        if self.time_limit is None or self.seconds is None:
            return None
        counted = self.n_complete + self.n_pruned + self.n_failed
        share = self.seconds / self.time_limit
        line = f"time limit {fmt_duration(self.time_limit)}: used {fmt_duration(self.seconds)} ({share:.0%})"
        line += f"; {counted} of {self.trials_asked} trials fit"
        return line + (f" (stopped: {self.stopped_for_time})" if self.stopped_for_time else "")

    def summary(self) -> str:
        """A few lines for a terminal."""
        lo, hi = self.best_cv_ci
        lines = [
            f"study {self.study_name}: {self.n_complete} complete, {self.n_pruned} pruned"
            + (f", {self.n_failed} failed" if self.n_failed else "")
            + (f"; scored by {self.scored_by}" if self.scored_by else ""),
            f"best trial {self.best_trial}: CV {self.best_cv:.4f} (95% CI {lo:.4f}..{hi:.4f}), run {self.best_run_id}",
        ]
        if self.holdout_score is not None and self.holdout_ci is not None:
            hlo, hhi = self.holdout_ci
            lines.append(
                f"untouched holdout: {self.holdout_score:.4f} (95% CI {hlo:.4f}..{hhi:.4f}), "
                f"run {self.holdout_run_id}; CV minus it {self.best_cv - self.holdout_score:+.4f}"
            )
        budget = self.budget_line()
        lines += [budget] if budget else []
        lines += [f"note: {n}" for n in self.notes]
        lines.append(f"best config: {self.best_config_path}; parent run {self.parent_run_id}")
        return "\n".join(lines)


@dataclass
class JoinResult:
    """What a joining worker did."""

    study_name: str
    parent_run_id: str
    trials_run: int  # counted trials (complete, pruned, failed as cannot fit) this process ran


@dataclass
class StudyContext:
    """One process's view of a study: what its trials need."""

    study: optuna.Study
    name: str
    storage_url: str
    store: Store
    parent_id: str
    base: RunConfig
    space: SearchSpace
    train: pd.DataFrame  # the full train frame
    tuning: pd.DataFrame  # the rows trials see
    split: pd.DataFrame | None  # holdout.csv aligned to ``train`` (None: no holdout)
    trials: int
    seed: int
    holdout: float
    prune: bool
    say: Say
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")  # who runs the trials
    budget: Budget | None = None  # a time limit (see questlab.tuning.timing); None: none
    stopped_for_time: str | None = None  # set when the budget stopped new trials: why

    @property
    def task(self) -> Task:
        """The study's task: the base config's (``task:``; none: QUEST)."""
        return load_task(getattr(self.base, "task", None))

    @property
    def metric(self) -> Metric:
        """The task's metric: the direction of every comparison of trials."""
        return self.task.scorer

    @property
    def trial_base(self) -> dict[str, Any]:
        """The base config every trial starts from: the study's folds, no MLflow model."""
        data = self.base.model_dump(mode="json")
        data["folds"] = {"n_splits": self.base.folds.n_splits, "seed": self.base.folds.seed, "from_run": self.parent_id}
        data["log_model"] = False
        return data
