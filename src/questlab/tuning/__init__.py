"""Hyper-parameter search (``questlab tune``): an Optuna study whose trials are recorded CV runs.

A *search space* (YAML, :class:`SearchSpace`) names config keys and their ranges or choices.
Each trial is one :func:`questlab.cv.run_cv` run of the base config with the sampled values
applied as ``--set`` overrides, on folds fixed for the whole study; after every fold the trial
reports the mean of its fold scores so far and the median pruner may stop it (the run is then
marked KILLED, the trial PRUNED).

**Honest tuning.** Picking the best of many trials on the same folds makes its CV optimistic.
A share of the groups (``holdout``; QUEST: questions, stratified by category) is split off before
anything else: no trial ever sees those rows. When the study ends, the chosen config alone is
trained on all the tuning rows and scored on them, once; that score (with a bootstrap interval
over groups) is reported beside the best CV.

**Recorded.** One parent MLflow run per study (tag ``questlab.kind=study``) holds the split
(``holdout.csv``: the task's id, group, fold 0 = held out, 1 = tuning), the trials' folds
(``folds.csv``, so trials use ``folds.from_run: PARENT``), the base config and the space, and at
the end the best config, ``report.html`` and the metrics ``best_cv`` / ``holdout_score``. Trials
and the holdout run are its MLflow child runs (``mlflow.parentRunId``).

**Distributed, resumable.** The study lives in an Optuna storage (SQLite beside the store by
default, any database URL to share it between machines). Trials counted are COMPLETE + PRUNED
and those FAILED because their settings cannot fit the data (``min_df`` above a fold's training
rows, say: the reason is their ``cannot_fit`` user attr and their run's error, and the study goes
on), so ``trials`` is the total however many processes or sessions add to it; re-running the same
command resumes. Trials left RUNNING by a killed process stop sending heartbeats and are marked
FAIL (then replaced) once :data:`GRACE_PERIOD_S` has passed. ``workers=N`` runs N processes on
this machine; other machines join with :func:`join_study` (CLI: ``--join``).

Layout: ``space`` (the search space), ``storage`` (the Optuna storage), ``parent`` (the parent
run: split, folds, records), ``trials`` (the objective and its loop), ``workers`` (processes on this
machine; their entry point is ``__main__``), ``finish`` (best config, the held-out run),
``report`` (the HTML report), ``study`` (:func:`tune`, :func:`join_study`); ``common`` and
``context`` hold what several of them share. The tunables (``GRACE_PERIOD_S``, ``JOIN_WAIT_S``, ...)
are read in their own module: patch them there, not here.
"""

from questlab.console import Say
from questlab.errors import StudyError
from questlab.tuning.common import (
    ATTR_CANNOT_FIT,
    ATTR_CONFIG_SHA,
    ATTR_HOLDOUT,
    ATTR_HOLDOUT_LOOKS,
    ATTR_HOLDOUT_RUN,
    ATTR_HOLDOUT_TRIAL,
    ATTR_PARENT,
    ATTR_PRUNE,
    ATTR_SEED,
    ATTR_SPACE_SHA,
    ATTR_STORE,
    ATTR_TRAIN_SHA,
    ATTR_TRIALS,
    BEST_CONFIG_FILE,
    CONFIG_FILE,
    COUNTED,
    HOLDOUT_FILE,
    KIND_STUDY,
    LIVE,
    REPORT_FILE,
    SPACE_FILE,
    STUDY_FILE,
    TAG_HOLDOUT,
    TAG_PARENT,
    TAG_STUDY,
    TAG_TRIAL,
    StoreLike,
)
from questlab.tuning.context import JoinResult, TuneResult
from questlab.tuning.parent import split_holdout
from questlab.tuning.report import param_importances, study_report
from questlab.tuning.space import FIXED_KEYS, ParamSpec, Scalar, SearchSpace, check_space, load_space, overrides_for
from questlab.tuning.storage import GRACE_PERIOD_S, HEARTBEAT_S, default_storage, open_storage, redact
from questlab.tuning.study import (
    JOIN_WAIT_S,
    MAX_HOLDOUT,
    PRUNE_STARTUP_TRIALS,
    TPE_STARTUP_TRIALS,
    join_study,
    tune,
)

__all__ = [
    "ATTR_CANNOT_FIT",
    "ATTR_CONFIG_SHA",
    "ATTR_HOLDOUT",
    "ATTR_HOLDOUT_LOOKS",
    "ATTR_HOLDOUT_RUN",
    "ATTR_HOLDOUT_TRIAL",
    "ATTR_PARENT",
    "ATTR_PRUNE",
    "ATTR_SEED",
    "ATTR_SPACE_SHA",
    "ATTR_STORE",
    "ATTR_TRAIN_SHA",
    "ATTR_TRIALS",
    "BEST_CONFIG_FILE",
    "CONFIG_FILE",
    "COUNTED",
    "FIXED_KEYS",
    "GRACE_PERIOD_S",
    "HEARTBEAT_S",
    "HOLDOUT_FILE",
    "JOIN_WAIT_S",
    "KIND_STUDY",
    "LIVE",
    "MAX_HOLDOUT",
    "PRUNE_STARTUP_TRIALS",
    "REPORT_FILE",
    "SPACE_FILE",
    "STUDY_FILE",
    "TAG_HOLDOUT",
    "TAG_PARENT",
    "TAG_STUDY",
    "TAG_TRIAL",
    "TPE_STARTUP_TRIALS",
    "JoinResult",
    "ParamSpec",
    "Say",
    "Scalar",
    "SearchSpace",
    "StoreLike",
    "StudyError",
    "TuneResult",
    "check_space",
    "default_storage",
    "join_study",
    "load_space",
    "open_storage",
    "overrides_for",
    "param_importances",
    "redact",
    "split_holdout",
    "study_report",
    "tune",
]
