"""What every part of a study shares: the names of its records (tags, files, Optuna study attrs),
the trial states it counts, and small helpers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from questlab.data import Data, Dataset
from questlab.metrics import Metric
from questlab.store import Store
from questlab.tasks import Task

StoreLike = str | Path | Store | None


KIND_STUDY = "study"
TAG_STUDY = "questlab.study"  # on the parent, every trial and the holdout run: the study name
TAG_STORAGE = "questlab.optuna_storage"  # on the parent: the Optuna storage URL, password redacted
TAG_BEST_TRIAL = "questlab.best_trial"  # on the finished parent: the best trial's number
TAG_BEST_RUN = "questlab.best_run"  # ... and its run
TAG_HOLDOUT_RUN = "questlab.holdout_run"  # ... and the run scored on the held-out groups
TAG_TRIAL = "questlab.trial"  # a trial run's Optuna trial number
TAG_HOLDOUT = "questlab.holdout"  # "true" on the run scored on the held-out groups
TAG_PARENT = "mlflow.parentRunId"  # MLflow nests child runs under their parent with this tag

HOLDOUT_FILE = "holdout.csv"  # id, group, fold: 0 = held-out row, 1 = tuning row
SPACE_FILE = "space.yaml"
CONFIG_FILE = "config.yaml"
STUDY_FILE = "study.json"
BEST_CONFIG_FILE = "best_config.yaml"
REPORT_FILE = "report.html"

# Optuna study user attrs: how every worker (and a resumed session) finds the study's state.
ATTR_PARENT = "questlab.parent_run_id"
ATTR_STORE = "questlab.store"
ATTR_TRAIN_SHA = "questlab.train_sha256"
ATTR_CONFIG_SHA = "questlab.config_sha256"
ATTR_SPACE_SHA = "questlab.space_sha256"
ATTR_HOLDOUT = "questlab.holdout"
ATTR_SEED = "questlab.seed"
ATTR_TRIALS = "questlab.trials"
ATTR_PRUNE = "questlab.prune"
ATTR_HOLDOUT_RUN = "questlab.holdout_run_id"
ATTR_HOLDOUT_TRIAL = "questlab.holdout_trial"
ATTR_HOLDOUT_LOOKS = "questlab.holdout_looks"
ATTR_TASK = "questlab.task_fingerprint"  # the study's task (absent in studies made before tasks: QUEST)
TAG_TASK = "questlab.task"  # on the parent: the task's name
TASK_FILE = "task.json"  # in the parent's folder: the task spec (as every run records it)

COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what "trials" counts, with the trials that cannot fit
LIVE = (*COUNTED, TrialState.RUNNING, TrialState.WAITING)  # counted, or on their way to it
# A trial's user attr: why its settings cannot fit the data (Optuna state FAIL). Such a trial was
# run and answered, so it counts towards ``trials``; a trial that failed otherwise (its process
# died) is replaced.
ATTR_CANNOT_FIT = "cannot_fit"


def is_counted(trial: FrozenTrial) -> bool:
    """A trial the study's ``trials`` counts: complete, pruned, or failed because its settings cannot fit."""
    return trial.state in COUNTED or (trial.state == TrialState.FAIL and ATTR_CANNOT_FIT in trial.user_attrs)


def is_live(trial: FrozenTrial) -> bool:
    """Counted, or on its way to it (running or waiting)."""
    return is_counted(trial) or trial.state in (TrialState.RUNNING, TrialState.WAITING)


def sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def study_direction(metric: Metric) -> str:
    """Optuna's direction for a study scored by ``metric``: trials, pruning and the best trial follow it."""
    return "maximize" if metric.higher_is_better else "minimize"


def read_train(train: Data, task: Task) -> Dataset:
    """The train file read (and checked) under ``task``."""
    return Dataset.read(train, "train", task=task)
