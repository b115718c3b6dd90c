"""The CV loop. It knows models only through ``fit/predict/save/load``.

What a run folder holds, and every name in it, is :mod:`questlab.rundir`'s business; the run is
created, started, told of each finished fold and finished through its
:class:`~questlab.recording.RunWriter`, so a run on a remote tracking server is recorded as it
goes, like a local one. Fold workers write only their fold's folder.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.config import RunConfig, parse_config
from questlab.console import Say, progress_enabled, stderr, stderr_console
from questlab.data import Data, Dataset, check_pair
from questlab.ddp import is_main_process, leave_process_group
from questlab.errors import SettingsCannotFitError, UsageError
from questlab.folds import FOLDS_FILE, check_grouped, load_folds, make_folds
from questlab.models import FitLog, Model, build_model
from questlab.models.base import check_predictions
from questlab.pseudo import PseudoLabels, attach_pseudo, pseudo_tags
from questlab.recording import RunWriter, cv_run_meta, direction_note, flatten, run_task_of, score_label
from questlab.rundir import FOLD_MODEL_DIR, WORK_DIR, RunFolder, predictions_frame
from questlab.schema import PSEUDO
from questlab.store import Store
from questlab.store.liveness import die_with_parent, in_workers, sigterm_as_interrupt
from questlab.tasks import Task, TaskRef, load_task
from questlab.threads import fold_threads

OnFold = Callable[[int, float, list[float]], None]  # fold, its score, every recorded fold's score


@dataclass
class RunData:
    """What a run trains and predicts on."""

    train: pd.DataFrame
    test: pd.DataFrame | None
    folds: pd.DataFrame  # id, group, fold aligned to train rows
    pseudo: PseudoLabels | None = None  # extra train rows: fold k gets teacher fold k's labels only
    task: Task = field(default_factory=load_task)  # the run's task, resolved once (default: quest)


def resolve_folds(config: RunConfig, train: pd.DataFrame, store: Store, task: Task | None = None) -> pd.DataFrame:
    """Make the config's folds, or load them from an earlier run / a folds file (``task``: the run's)."""
    source = config.folds
    if source.from_run:
        folder = store.folder(store.resolve_id(source.from_run))
        if not folder.has(FOLDS_FILE):
            raise UsageError(f"run {source.from_run} recorded no {FOLDS_FILE}")
        folds = load_folds(folder.verified(FOLDS_FILE), train, task=task)
    elif source.from_file:
        folds = load_folds(source.from_file, train, task=task)
    else:
        folds = make_folds(train, n_splits=source.n_splits, seed=source.seed, task=task)
    check_grouped(folds)
    return folds


def _seed_everything(seed: int) -> None:
    """Seed the global generators a model may draw from (models with a seed param use theirs)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _fit_fold(
    model: Model, data: RunData, k: int, fold_dir: Path, seed: int
) -> tuple[np.ndarray, np.ndarray | None, FitLog, dict[str, float]]:
    """Fit one fold's model; return valid and test predictions, the fit log and timings."""
    in_valid = data.folds["fold"].to_numpy() == k
    train_rows, valid_rows = data.train[~in_valid], data.train[in_valid]
    if data.pseudo is not None:  # never scored: valid rows and OOF come from data.train alone
        pseudo = data.pseudo.for_fold(k)
        train_rows = pd.concat(
            [train_rows.assign(**{PSEUDO: False}), pseudo.assign(**{PSEUDO: True})], ignore_index=True
        )
    log = FitLog(workdir=fold_dir / WORK_DIR)
    log.workdir.mkdir(parents=True, exist_ok=True)
    log.info["seed"] = seed
    _seed_everything(seed + k)
    with fold_threads():  # the same BLAS threads serially and in a fold worker: the same numbers
        t0 = time.perf_counter()
        try:
            model.fit(train_rows.reset_index(drop=True), valid_rows.reset_index(drop=True), log)
        except SettingsCannotFitError as exc:  # the settings, not a bug: say which fold's rows they cannot fit
            raise SettingsCannotFitError(f"fold {k}: {exc}") from None
        t1 = time.perf_counter()
        valid_pred = _checked(model, valid_rows.reset_index(drop=True), data.task)
        t2 = time.perf_counter()
        test_pred = _checked(model, data.test, data.task) if data.test is not None else None
        t3 = time.perf_counter()
    timings = {"fit_s": t1 - t0, "predict_valid_s": t2 - t1, "predict_test_s": t3 - t2}
    log.timings.update(timings)
    return valid_pred, test_pred, log, timings


def _checked(model: Model, rows: pd.DataFrame, task: Task) -> np.ndarray:
    return check_predictions(model.predict(rows), len(rows), model.name, task=task)


def _record_fold(
    run: RunFolder,
    k: int,
    model: Model,
    data: RunData,
    valid_pred: np.ndarray,
    test_pred: np.ndarray | None,
    log: FitLog,
    timings: dict[str, float],
) -> float:
    task = data.task
    in_valid = data.folds["fold"].to_numpy() == k
    fold_dir = run.fold_dir(k)
    t0 = time.perf_counter()
    model.save(fold_dir / FOLD_MODEL_DIR)
    timings["save_s"] = time.perf_counter() - t0
    score = task.scorer.score(data.train.loc[in_valid, list(task.target_names)].to_numpy(), valid_pred)
    run.write_fold_outputs(
        k,
        predictions_frame(data.train.loc[in_valid, task.id], valid_pred, task),
        predictions_frame(data.test[task.id], test_pred, task) if test_pred is not None else None,
        log.to_dict(),
        {"fold": k, "score": score, "timings": timings},
    )
    # The fold is recorded: its resumable checkpoints (hundreds of MB for a transformer) can go.
    shutil.rmtree(fold_dir / WORK_DIR, ignore_errors=True)
    return score


def _fit_and_record_fold(
    config: RunConfig, data: RunData, run: RunFolder, k: int, in_worker: bool = False
) -> tuple[int, float, dict]:
    if in_worker:
        die_with_parent()  # a killed run must not leave its fold workers holding memory
    run.fold_dir(k).mkdir(parents=True, exist_ok=True)
    model = build_model(config.model.name, config.model.params, task=data.task)
    valid_pred, test_pred, log, timings = _fit_fold(model, data, k, run.fold_dir(k), config.seed)
    score = _record_fold(run, k, model, data, valid_pred, test_pred, log, timings)
    return k, score, timings


def _run_folds(config: RunConfig, data: RunData, run: RunFolder, todo: list[int]) -> Iterator[tuple[int, float, dict]]:
    """Fit the folds in ``todo``, in this process or (``parallel_folds`` > 1) in worker processes.

    Workers write their fold folders themselves; only this process talks to the store. Parallel
    folds suit models whose fold fit is light or single-threaded (TF-IDF; embedding heads, once
    ``Model.prepare`` has filled the vector cache, once, here); a fine-tuned transformer uses the cores.
    On Ctrl-C only this process raises (one message from the CLI); the workers are killed.
    """
    if config.parallel_folds <= 1 or len(todo) <= 1:
        for k in todo:
            yield _fit_and_record_fold(config, data, run, k)
        return
    frames = [data.train, *([data.test] if data.test is not None else [])]
    if data.pseudo is not None:
        frames.append(data.pseudo.for_fold(todo[0]))  # the same texts in every fold, other labels
    build_model(config.model.name, config.model.params, task=data.task).prepare(frames)
    calls = [(config, data, run, k, True) for k in todo]
    yield from in_workers(_fit_and_record_fold, calls, min(config.parallel_folds, len(todo)))


def default_run_name(config: RunConfig) -> str:
    """The config's name and its ``--set`` overrides, each key by its last part: ``tfidf[alpha=30]``
    (``tfidf`` without overrides; an override of ``name`` itself is the name already)."""
    shown = []
    for item in config.overrides:
        key, _, value = item.partition("=")
        if key.strip() != "name":
            shown.append(f"{key.strip().rsplit('.', 1)[-1]}={value.strip()}")
    return f"{config.name}[{','.join(shown)}]" if shown else config.name


def unique_run_name(store: Store, name: str) -> str:
    """``name`` if no run in the store has it, else the first free of ``name-2``, ``name-3``, ..."""
    taken = {r.name for r in store.list_runs()}
    if name not in taken:
        return name
    i = 2
    while f"{name}-{i}" in taken:
        i += 1
    return f"{name}-{i}"


def run_cv(
    config: RunConfig | None,
    train: Data,
    test: Data | None = None,
    store: Store | None = None,
    only_folds: list[int] | None = None,
    resume: str | None = None,
    say: Say = stderr,
    on_fold: OnFold | None = None,
    tags: dict[str, str] | None = None,
    pseudo: PseudoLabels | None = None,
    name: str | None = None,
    task: TaskRef = None,
) -> str:
    """Run (or resume) grouped CV for ``config`` and record it; returns the run id.

    ``task`` (a built-in name, a spec file, a ``Task``) overrides ``config.task``; neither: quest.
    ``train`` and ``test`` are CSV files or DataFrames of the task (validated alike). ``only_folds`` runs
    a subset (``--fold k``): the run is recorded as partial and ``collect`` merges partial runs.
    ``resume`` re-enters an earlier run by id (``config`` is then the recorded one): finished folds
    are kept, an unfinished fold restarts from the checkpoints its model left in ``work/``; the
    data must be what the run was made from. ``on_fold(k, score, scores_so_far)`` is called as
    each fold is recorded; raising :class:`~questlab.store.RunStopped` there stops the run
    (marked KILLED). ``tags`` are added to a new run's tags. ``pseudo``: see :mod:`questlab.pseudo`.
    ``name``: the new run's name (default: the config's name; see :func:`run_name` for the CLI's).
    """
    store = store or Store()
    run_task = run_task_of(store, config, resume, task)
    train_data = Dataset.read(train, "train", task=run_task)
    test_data = Dataset.read(test, "test", task=run_task) if test is not None else None
    if test_data is not None:
        check_pair(
            train_data.frame,
            test_data.frame,
            test if not isinstance(test, pd.DataFrame) else "test DataFrame",
            task=run_task,
        )
    plan = _resume_plan(store, resume, train_data, test_data, run_task) if resume else None
    if plan is not None:
        config, folds, only_folds = plan.config, plan.folds, plan.folds_selected
    elif config is None:
        raise UsageError("give a config (or resume an earlier run)")
    else:
        folds = resolve_folds(config, train_data.frame, store, task=run_task)
    resumed = plan.run.read_meta() if plan else None
    pseudo = attach_pseudo(pseudo, train_data.frame, folds, resumed, say, task=run_task)
    test_frame = test_data.frame if test_data else None
    data = RunData(train=train_data.frame, test=test_frame, folds=folds, pseudo=pseudo, task=run_task)
    all_folds = sorted(int(k) for k in folds["fold"].unique())
    selected = sorted(only_folds) if only_folds is not None else all_folds
    unknown = [k for k in selected if k not in all_folds]
    if unknown:
        raise UsageError(f"no fold {unknown[0]}: the folds are {all_folds}")

    if not is_main_process():
        _train_as_ddp_worker(config, data, selected, plan.run if plan else None, say)
        leave_process_group()
        return ""
    if plan is not None:
        writer = RunWriter.reopen(store, plan.run.run_id)
        say(f"resuming run {writer.run_id}")
    else:
        record = data.pseudo.provenance() if data.pseudo else None
        writer = RunWriter.create(
            store, name or config.name, "cv", config.model.name, tags={**pseudo_tags(record), **(tags or {})}
        )

    try:
        _record_run(writer, plan, config, data, train_data, test_data, all_folds, selected, say, on_fold, name)
    except KeyboardInterrupt as exc:
        exc.questlab_run_id = writer.run_id  # type: ignore[attr-defined]  # the CLI names it in "--resume RUN_ID"
        raise
    leave_process_group()
    return writer.run_id


def _record_run(
    writer: RunWriter,
    plan: _ResumePlan | None,
    config: RunConfig,
    data: RunData,
    train_data: Dataset,
    test_data: Dataset | None,
    all_folds: list[int],
    selected: list[int],
    say: Say,
    on_fold: OnFold | None,
    name: str | None = None,
) -> None:
    """Fit, score and record the run under its lock and heartbeat; marks how it ended."""
    t_start = time.perf_counter()
    with writer.recording(), sigterm_as_interrupt():
        if plan is not None:
            writer.restore(plan.run)
        else:
            writer.start(
                cv_run_meta(writer.run_id, config, data, train_data, test_data, all_folds, selected, name),
                folds=data.folds,
                params=flatten(config.model_dump(mode="json")),
                config_yaml=config.to_yaml(),
                task=data.task,
            )
            say(f"run {writer.run_id} ({config.name}): model {config.model.name}, folds {selected} of {len(all_folds)}")
        _fit_folds_with_progress(writer, config, data, selected, say, on_fold)
        cv = writer.finish_folds(data.train, config.bootstrap, selected, all_folds)
        writer.update_meta(timings={"total_s": time.perf_counter() - t_start})
        if selected == all_folds and config.log_model:
            writer.log_model(say)
        label, note = score_label(data.task), direction_note(data.task)
        say(f"CV {label} {cv.score:.4f} (95% CI {cv.ci_low:.4f}..{cv.ci_high:.4f}){note} over folds {selected}")


@dataclass
class _ResumePlan:
    """What an earlier run fixes when it is resumed: its folder, config, folds and fold selection."""

    run: RunFolder
    config: RunConfig
    folds: pd.DataFrame
    folds_selected: list[int]


def _resume_plan(store: Store, resume: str, train: Dataset, test: Dataset | None, task: Task) -> _ResumePlan:
    run_id = store.resolve_id(resume)
    run = store.folder(run_id, models=True)
    meta = run.read_meta()
    meta.check_same_data("train", train)
    meta.check_same_data("test", test)
    config = parse_config(meta.config, source=f"run {run_id}")
    return _ResumePlan(run, config, load_folds(run / FOLDS_FILE, train.frame, task=task), meta.folds_selected)


def _train_as_ddp_worker(
    config: RunConfig, data: RunData, selected: list[int], resumed: RunFolder | None, say: Say
) -> None:
    """A DDP worker (rank > 0): train alongside rank 0, since collectives need every rank; record nothing."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for k in selected:
            # On --resume, skip exactly the folds rank 0 skips, or the processes fall out of step.
            if resumed is not None and resumed.fold_is_done(k):
                continue
            model = build_model(config.model.name, config.model.params, task=data.task)
            _fit_fold(model, data, k, Path(tmp) / f"fold_{k}", config.seed)


def _fit_folds_with_progress(
    writer: RunWriter,
    config: RunConfig,
    data: RunData,
    selected: list[int],
    say: Say,
    on_fold: OnFold | None = None,
) -> None:
    """Fit the folds not yet done, logging each one's score and artifacts as it finishes."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=True,
        console=stderr_console(),
        disable=not progress_enabled(),  # elsewhere the fold lines say it all (no blank line left behind)
    )
    run = writer.folder
    todo = []
    for k in selected:
        problems = run.fold_problems(k)
        if not problems:
            say(f"fold {k}: already done, kept")
            continue
        if run.fold_started(k):
            say(f"fold {k}: refitted ({problems[0]})")
        todo.append(k)
    with progress:
        bar = progress.add_task("folds", total=len(todo))
        for k, score, timings in _run_folds(config, data, run, todo):
            writer.fold_done(k, score)
            say(f"fold {k}: {score_label(data.task)} {score:.4f} (fit {timings['fit_s']:.1f} s)")
            progress.advance(bar)
            if on_fold is not None:
                on_fold(k, score, [run.read_fold_summary(j)["score"] for j in run.done_folds()])
