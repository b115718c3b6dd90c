"""A study: :func:`tune` starts or resumes it and finishes it; :func:`join_study` adds a worker to it."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import yaml

from questlab.config import ConfigError, RunConfig, parse_config, resolve_config
from questlab.console import Say, stderr
from questlab.data import Data
from questlab.errors import StoreUnreachable, StudyError, UsageError
from questlab.store import as_store, liveness
from questlab.tasks import TaskRef, load_task
from questlab.tasks.grouping import group_noun
from questlab.timebudget import Budget, fmt_duration, parse_duration
from questlab.tuning.common import (
    ATTR_HOLDOUT,
    ATTR_PARENT,
    ATTR_PRUNE,
    ATTR_SEED,
    ATTR_TRIALS,
    CONFIG_FILE,
    SPACE_FILE,
    StoreLike,
    read_train,
    sha_of,
    study_direction,
)
from questlab.tuning.context import JoinResult, StudyContext, TuneResult
from questlab.tuning.finish import finalize_study
from questlab.tuning.parent import check_train, load_split, mark_parent, parent_record, prepare_study, tuning_rows
from questlab.tuning.space import SearchSpace, check_space, load_space
from questlab.tuning.storage import count_counted, default_storage, open_storage, redact
from questlab.tuning.trials import optimize, run_until_done
from questlab.tuning.workers import spawn_workers, stop_workers, thread_limit, wait_for_workers, write_frame

TUNE_TMP_PREFIX = "questlab-tune-"  # the workers' copy of a DataFrame's rows, in the system temp folder

JOIN_WAIT_S = 120  # how long a joining worker waits for the first process to set the study up
PRUNE_STARTUP_TRIALS = 5  # the median pruner compares only once this many trials have finished
TPE_STARTUP_TRIALS = 10  # random trials before TPE models the space
MAX_HOLDOUT = 0.9


def _check_base(config: RunConfig) -> None:
    if config.folds.from_run or config.folds.from_file:
        raise ConfigError(
            f"config {config.name!r}: the study makes its own folds on the tuning rows from folds.n_splits and "
            "folds.seed; remove folds.from_run / folds.from_file"
        )


def _sampler(seed: int, worker: int, n_existing: int) -> optuna.samplers.BaseSampler:
    # A different stream per worker and per session: a resumed study must not replay the random
    # start-up trials it already ran.
    return optuna.samplers.TPESampler(
        seed=(seed * 1_000_003 + worker * 7919 + n_existing) % 2**32, n_startup_trials=TPE_STARTUP_TRIALS
    )


def _pruner(prune: bool) -> optuna.pruners.BasePruner:
    if not prune:
        return optuna.pruners.NopPruner()
    # Step = folds done; pruning may start after the first fold (n_warmup_steps=0).
    return optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP_TRIALS, n_warmup_steps=0)


class _NoInterruptedTrialLog(logging.Filter):
    """Drop Optuna's warnings (a traceback, then "failed with value None") about a trial stopped by
    Ctrl-C or SIGTERM: the stop is reported once, by questlab, and the trial's run marked KILLED."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            self.interrupted.add(message.split(" failed", 1)[0])  # "Trial 3"
            return False
        return message.split(" failed", 1)[0] not in self.interrupted


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna logs every trial at INFO; questlab prints its own one line per trial."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_log = logging.getLogger("optuna.study._optimize")
    interrupted = _NoInterruptedTrialLog()
    trial_log.addFilter(interrupted)
    try:
        yield
    finally:
        trial_log.removeFilter(interrupted)
        optuna.logging.set_verbosity(level)


def tune(
    config: RunConfig | Mapping[str, Any] | str | Path,
    space: SearchSpace | Mapping[str, Any] | str | Path,
    train: Data,
    *,
    trials: int = 40,
    set: Mapping[str, Any] | Sequence[str] | None = None,  # as in questlab.run
    store: StoreLike = None,
    storage: str | None = None,
    study_name: str | None = None,
    holdout: float = 0.2,
    seed: int | None = None,
    workers: int = 1,
    prune: bool = True,
    best_config_path: str | Path | None = None,
    say: Say | None = None,
    task: TaskRef = None,
    time_limit: float | str | None = None,
) -> TuneResult:
    """Run (or resume) a study of ``trials`` trials in total, then score the best config on the
    held-out groups, write it to ``best_config_path`` and attach the report to the parent run.

    ``config``: a YAML path, a mapping or a RunConfig (``set`` overrides keys first); ``space``: a
    search space file, mapping or :class:`SearchSpace`; ``train``: the labelled CSV or DataFrame.
    ``storage``: an Optuna storage URL (default: :func:`default_storage`); ``study_name``: default
    the config's name; the same name resumes. ``holdout``: share of the groups (QUEST: questions;
    rows where the task has none) kept out of every trial (0 disables it: the best CV is then all
    there is, and it is optimistic). ``seed`` (default the config's) seeds the split and the sampler.
    ``workers``: processes on this machine (this one included). ``prune``: median pruning after each
    fold. ``time_limit``: a wall-clock budget for this call (seconds, or text such as ``"15m"``): no
    trial starts unless it and the held-out run are expected to fit (see
    :mod:`questlab.tuning.timing`); one process only.
    """
    t_start = time.perf_counter()
    budget_s = parse_duration(time_limit, "time_limit")
    budget = Budget(budget_s) if budget_s is not None else None
    say = say or stderr
    if budget_s is not None and workers > 1:
        raise UsageError("time_limit with several workers: not supported yet (a budget holds for one process)")
    if trials < 1:
        raise StudyError(f"trials {trials}: give at least 1")
    if not 0 <= holdout < MAX_HOLDOUT:
        raise StudyError(f"holdout {holdout}: give a share of the train groups (or rows) in [0, {MAX_HOLDOUT})")
    if workers < 1:
        raise StudyError(f"workers {workers}: give at least 1")
    base = resolve_config(config, set)
    if task is not None:  # --task overrides the config's task (the trials read it from the config)
        base = _with_task(base, task)
    _check_base(base)
    the_task = load_task(getattr(base, "task", None))
    space_source = str(space) if isinstance(space, str | Path) else "search space"
    space = load_space(space)
    check_space(space, base, space_source)
    data = read_train(train, the_task)
    st = as_store(store, create=True)
    url = storage or default_storage(st)
    name = study_name or base.name
    seed = base.seed if seed is None else seed

    with _optuna_quiet():
        optuna_storage = open_storage(url)
        study = optuna.create_study(
            storage=optuna_storage,
            study_name=name,
            direction=study_direction(the_task.scorer),  # spearman: maximize; mcrmse: minimize
            load_if_exists=True,
            sampler=_sampler(seed, 0, 0),
            pruner=_pruner(prune),
        )
        ctx = prepare_study(study, name, url, st, base, space, data, trials, seed, holdout, prune, say)
        study.sampler = _sampler(seed, 0, len(study.trials))
        ctx.budget = budget
        if holdout == 0:
            say(
                f"warning: holdout 0: no {group_noun(the_task)} are kept out, so the best CV (chosen among trials)"
                " is optimistic"
            )
        todo = trials - count_counted(study)
        procs: list[subprocess.Popen] = []
        # the workers' copy of a DataFrame's rows; a SIGKILLed tune's copy is removed by the next tune
        liveness.remove_orphaned_dirs(Path(tempfile.gettempdir()), TUNE_TMP_PREFIX)
        tmp: Path | None = None
        try:
            # SIGTERM (a scheduler, kill) stops the study as Ctrl-C does: workers told to stop, the
            # trials and the parent run marked KILLED. The parent run's heartbeat (host, pid) shows
            # it DEAD, so resumable, once this process is SIGKILLed: its workers die with it.
            with liveness.sigterm_as_interrupt(), liveness.heartbeat(st.tracking.new_client, ctx.parent_id):
                n_children = min(workers, max(todo, 0)) - 1
                threads = max(1, (os.cpu_count() or 1) // max(1, n_children + 1))
                if n_children > 0:
                    if isinstance(train, pd.DataFrame):
                        tmp = liveness.owned_temp_dir(TUNE_TMP_PREFIX)
                    train_path = train if tmp is None else write_frame(data, tmp)
                    procs = spawn_workers(ctx, n_children, Path(train_path), threads)
                    say(f"study {name}: {todo} trial(s) to run in {n_children + 1} processes")
                elif todo > 0:
                    within = f" within {fmt_duration(budget_s)}" if budget_s is not None else ""
                    say(f"study {name}: {todo} trial(s) to run{within}")
                limit = thread_limit(threads) if procs else contextlib.nullcontext()
                with limit:
                    run_until_done(ctx)
                wait_for_workers(procs, say)
                procs = []
                result = finalize_study(ctx, best_config_path)
        except BaseException as exc:
            stop_workers(procs)
            interrupt = liveness.interrupted_by(exc)
            if interrupt is not None and interrupt is not exc:  # a signal that landed inside a library
                mark_parent(st, ctx.parent_id, "KILLED", "interrupted: re-run the same command to resume the study")
                raise interrupt from None
            if isinstance(exc, StoreUnreachable):
                pass  # marking it would wait for the server again; it shows DEAD once this process is gone
            elif isinstance(exc, KeyboardInterrupt | SystemExit):
                why = f" ({exc})" if str(exc).startswith("signal") else ""
                mark_parent(
                    st, ctx.parent_id, "KILLED", f"interrupted{why}: re-run the same command to resume the study"
                )
            else:
                mark_parent(st, ctx.parent_id, "FAILED", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    if budget_s is not None:
        result.time_limit, result.trials_asked = budget_s, trials
        result.seconds, result.stopped_for_time = time.perf_counter() - t_start, ctx.stopped_for_time
    say(result.summary())
    say(f"done in {time.perf_counter() - t_start:.0f} s")
    return result


def join_study(
    study_name: str,
    train: Data,
    *,
    store: StoreLike = None,
    storage: str | None = None,
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    space: SearchSpace | Mapping[str, Any] | str | Path | None = None,
    set: Mapping[str, Any] | Sequence[str] | None = None,  # as in questlab.run
    trials: int | None = None,
    worker: int | None = None,
    say: Say | None = None,
) -> JoinResult:
    """Run trials of a study another process started (another machine: same ``storage`` and
    ``store``) until it has its trials.

    The base config, the space, the split and the folds come from the study's parent run;
    ``config``/``space`` (if given) must be those, and ``train`` the file it was started with.
    Nothing is finalised here: the process that started the study does that.
    """
    say = say or stderr
    st = as_store(store, create=True)
    url = storage or default_storage(st)
    with _optuna_quiet():
        optuna_storage = open_storage(url)
        study, parent_id = _wait_for_study(optuna_storage, study_name, url)
        attrs = study.user_attrs
        parent_record(st, parent_id, attrs, study_name)
        parent = st.folder(parent_id)
        if not parent.has(CONFIG_FILE, SPACE_FILE):
            raise StudyError(f"study {study_name}: parent run {parent_id} holds no {CONFIG_FILE}/{SPACE_FILE}")
        base = parse_config(yaml.safe_load((parent / CONFIG_FILE).read_text()), source=f"run {parent_id}")
        recorded_space = load_space(yaml.safe_load((parent / SPACE_FILE).read_text()))
        if config is not None:
            given = resolve_config(config, set)
            if sha_of(given.model_dump(mode="json")) != sha_of(base.model_dump(mode="json")):
                raise StudyError(
                    f"study {study_name} was started with another config (see {CONFIG_FILE} of run {parent_id})"
                )
        if space is not None and load_space(space).digest() != recorded_space.digest():
            raise StudyError(
                f"study {study_name} was started with another search space (see {SPACE_FILE} of run {parent_id})"
            )
        study_task = load_task(getattr(base, "task", None))
        data = read_train(train, study_task)
        check_train(attrs, data, study_name)
        n = trials if trials is not None else int(attrs.get(ATTR_TRIALS, 0))
        if n < 1:
            raise StudyError(f"trials {n}: give at least 1")
        seed, prune = int(attrs[ATTR_SEED]), bool(attrs.get(ATTR_PRUNE, True))
        index = worker if worker is not None else os.getpid() % 1000 + 1000
        study = optuna.load_study(
            study_name=study_name,
            storage=optuna_storage,
            sampler=_sampler(seed, index, len(study.trials)),
            pruner=_pruner(prune),
        )
        split = load_split(st, parent_id, data.frame, study_task) if float(attrs[ATTR_HOLDOUT]) > 0 else None
        ctx = StudyContext(
            study=study,
            name=study_name,
            storage_url=url,
            store=st,
            parent_id=parent_id,
            base=base,
            space=recorded_space,
            train=data.frame,
            tuning=tuning_rows(data.frame, split),
            split=split,
            trials=n,
            seed=seed,
            holdout=float(attrs[ATTR_HOLDOUT]),
            prune=prune,
            say=say,
        )
        return JoinResult(study_name, parent_id, optimize(ctx))


def _wait_for_study(storage: optuna.storages.BaseStorage, name: str, url: str) -> tuple[optuna.Study, str]:
    """The study and its parent run id, waiting a little for a first process still setting it up."""
    deadline = time.monotonic() + JOIN_WAIT_S
    while True:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            parent = study.user_attrs.get(ATTR_PARENT)
            if parent:
                return study, parent
        except KeyError:
            pass
        if time.monotonic() > deadline:
            raise StudyError(
                f"no study {name!r} set up in storage {redact(url)} after {JOIN_WAIT_S} s: "
                "start it first (the same command without --join)"
            )
        time.sleep(1.0)


def _with_task(base: RunConfig, task: TaskRef) -> RunConfig:
    """``base`` under ``task``: the config's ``task`` key (a built-in name or a spec path)."""
    if "task" not in type(base).model_fields:
        raise StudyError("this questlab's run config has no task key: --task needs the run stage's tasks")
    ref = task.name if hasattr(task, "name") and not isinstance(task, str | Path) else str(task)
    return base.model_copy(update={"task": ref})
