"""RunWriter: the one way a run is created and filled in the store.

Every run questlab records — a CV run (:mod:`questlab.cv`), a collected run
(:mod:`questlab.collect`), an ensemble or post-processed run (:mod:`questlab.ensemble_runs`),
and so every recipe member and tuning trial — goes through the same three steps:

1. **create** the run in the tracking store with the standard tags (kind, model, complete
   "false", git commit, questlab version), then inside :meth:`RunWriter.recording` (lock,
   heartbeat, how it ended) **start** it: config, folds, ``run.json``, params;
2. record each fold as it is done (:meth:`RunWriter.fold_done`: its part synced, its score logged);
3. **finish**: OOF predictions, truth, scores, the submission, metrics and completion tags
   (:meth:`RunWriter.finish`), ``run.json``'s timings, and the MLflow model (:meth:`RunWriter.log_model`).

What the files are called and hold is :mod:`questlab.rundir`'s business; the writer says which
parts to write and sync, never a file name of its own.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from questlab import __version__
from questlab.console import Say
from questlab.errors import UsageError
from questlab.folds import FOLDS_FILE, load_folds, save_folds
from questlab.metrics import Metric
from questlab.metrics.base import CVScore
from questlab.mlflow_model import log_run_model
from questlab.provenance import git_commit
from questlab.rundir import (
    CONFIG_FILE,
    META_FILE,
    OOF_FILE,
    PER_TARGET_FILE,
    SCORES_FILE,
    SUBMISSION_FILE,
    TAG_COMPLETE,
    TAG_ERROR,
    TAG_FOLDS_DONE,
    TAG_GIT_COMMIT,
    TAG_KIND,
    TAG_METRIC,
    TAG_MODEL,
    TAG_TASK,
    TAG_VERSION,
    TASK_FILE,
    TRUTH_FILE,
    WORK_DIR,
    RunFolder,
    RunMeta,
    comparability,
    fold_part,
    predictions_frame,
    read_task,
)
from questlab.store import Store
from questlab.tasks import Task, TaskRef, load_task


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """A nested mapping as dotted keys (``model.params.alpha``): how configs become MLflow params."""
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def score_label(of: Task | Metric) -> str:
    """What a printed line calls a task's (or metric's) score: "mean Spearman", "mcrmse"."""
    metric = of.scorer if isinstance(of, Task) else of
    return metric.label


def direction_note(of: Task | Metric) -> str:
    """ ", lower is better" after an error metric's score ("" where higher is, as 0.9.0 printed it)."""
    metric = of.scorer if isinstance(of, Task) else of
    return "" if metric.higher_is_better else ", lower is better"


def run_task_of(store: Store, config: Any, resume: str | None, task: TaskRef) -> Task:
    """A run's task, resolved once: ``task``, else ``config.task``, else quest. A resumed run keeps
    its own (``task.json``); another one given is refused, naming both."""
    if not resume:
        return load_task(task if task is not None else getattr(config, "task", None))
    run_id = store.resolve_id(resume)
    recorded = read_task(store.folder(run_id))
    if task is not None:
        given = load_task(task)
        if given.fingerprint != recorded.fingerprint:
            raise UsageError(
                f"run {run_id} was made under task {recorded.name!r}; it cannot resume under task {given.name!r}"
            )
    return recorded


def cv_run_meta(
    run_id: str,
    config: Any,
    data: Any,
    train: Any,
    test: Any,
    all_folds: list[int],
    selected: list[int],
    name: str | None = None,
) -> RunMeta:
    """A new CV run's ``run.json`` (``config`` a RunConfig, ``data`` cv's RunData, ``train``/``test`` Datasets)."""
    return RunMeta(
        run_id=run_id,
        kind="cv",
        task=data.task.name,
        name=name or config.name,
        model=config.model.name,
        config=config.model_dump(mode="json"),
        seed=config.seed,
        train_file=train.name,
        train_sha256=train.sha256,
        test_file=test.name if test else None,
        test_sha256=test.sha256 if test else None,
        git_commit=git_commit(),
        folds_all=all_folds,
        folds_selected=selected,
        pseudo=data.pseudo.provenance() if data.pseudo else None,
    )


def standard_tags(kind: str, model: str, scored: bool = True) -> dict[str, str]:
    """The tags every new run starts with; a run scored over folds starts "complete: false", which
    flips to "true" when all its folds are in (a study's parent run is not scored itself)."""
    tags = {
        TAG_KIND: kind,
        TAG_MODEL: model,
        TAG_COMPLETE: "false",
        TAG_GIT_COMMIT: git_commit(),
        TAG_VERSION: __version__,
    }
    if not scored:
        del tags[TAG_COMPLETE]
    return tags


class RunWriter:
    """Writes one run: its folder (:class:`~questlab.rundir.RunFolder`) and its record in the store."""

    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.folder: RunFolder = store.writer(run_id)

    def __repr__(self) -> str:
        return f"RunWriter({self.run_id!r}, {self.folder.path!s})"

    # --- creating -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, store: Store, name: str, kind: str, model: str, tags: dict[str, str] | None = None, scored: bool = True
    ) -> RunWriter:
        """A new RUNNING run with the standard tags (and ``tags``) and the folder to write it in."""
        return cls(store, store.create_run(name, tags={**standard_tags(kind, model, scored), **(tags or {})}))

    @classmethod
    def reopen(cls, store: Store, run_id: str) -> RunWriter:
        """Mark an earlier run as running again (``--resume``); then :meth:`restore` inside :meth:`recording`."""
        store.reopen(run_id)
        return cls(store, run_id)

    def restore(self, recorded: RunFolder) -> None:
        """Continue from what the run recorded: a remote run's staging folder starts from its download."""
        if self.folder.path != recorded.path:
            shutil.copytree(recorded.path, self.folder.path, dirs_exist_ok=True)

    @contextmanager
    def recording(self) -> Iterator[RunWriter]:
        """Hold the run's lock and heartbeat; mark it FINISHED, KILLED or FAILED as the block ends."""
        with self.store.recording(self.run_id):
            yield self

    # --- starting -------------------------------------------------------------------------------
    def start(
        self,
        meta: RunMeta,
        folds: pd.DataFrame | Path,
        params: dict[str, Any],
        config_yaml: str | None = None,
        parts: tuple[str, ...] = (),
        task: Task | None = None,
    ) -> None:
        """Write the run's task, config, folds (a frame, or a recorded folds file to copy) and
        ``run.json``; sync them (and ``parts`` written before), tag the task and log ``params``.

        ``task`` (default: the one ``meta.task`` names, a built-in) is recorded as ``task.json``."""
        run = self.folder
        from questlab.tasks import load_task

        task = task or load_task(meta.task)
        run.write_task(task)
        meta = meta.model_copy(update={"task": task.name})
        if config_yaml is not None:
            run.write_config(config_yaml)
        if isinstance(folds, pd.DataFrame):
            save_folds(folds, run.path)
        else:
            shutil.copy(folds, run / FOLDS_FILE)
        run.write_meta(meta)
        config = (CONFIG_FILE,) if config_yaml is not None else ()
        self.store.sync(self.run_id, *parts, TASK_FILE, *config, FOLDS_FILE, META_FILE)
        self.store.set_tags(self.run_id, {TAG_TASK: task.name, TAG_METRIC: task.metric})
        self.store.log_params(self.run_id, params)

    # --- folds ----------------------------------------------------------------------------------
    def adopt_fold(self, k: int, source: Path) -> None:
        """Copy a finished fold folder of another run (collect) into this one, and sync it."""
        shutil.copytree(source, self.folder.fold_dir(k), ignore=shutil.ignore_patterns(WORK_DIR), dirs_exist_ok=True)
        self.store.sync(self.run_id, fold_part(k))

    def fold_done(self, k: int, score: float) -> None:
        """Fold ``k``'s folder is complete (written here or by a worker): sync it, log its score."""
        self.store.sync(self.run_id, fold_part(k))
        self.store.log_metrics(self.run_id, {"fold_score": score}, step=k)

    # --- finishing ------------------------------------------------------------------------------
    def finish_folds(self, train: pd.DataFrame, n_boot: int, selected: list[int], all_folds: list[int]) -> CVScore:
        """Assemble the recorded folds into OOF predictions, scores and the submission (their mean)."""
        run = self.folder
        task = read_task(run)
        folds = load_folds(run / FOLDS_FILE, train, task=task)
        # The folds were just fitted, or checked against their sha256 when kept: existence is enough here.
        missing = [k for k in selected if not run.fold_is_done(k, verify=False)]
        if missing:
            raise RuntimeError(f"run {self.run_id}: fold(s) {missing} have no complete result")
        valid = pd.concat([run.read_fold_predictions(k, "valid") for k in selected], ignore_index=True)
        targets = list(task.target_names)
        oof = folds.merge(valid, on=task.id, how="inner")  # train row order, scored rows only
        truth = train.set_index(task.id).loc[oof[task.id], targets].reset_index()
        submission = None
        preds = [run.read_fold_predictions(k, "test") for k in selected]
        if preds and all(p is not None for p in preds):
            mean = np.mean([p[targets].to_numpy() for p in preds], axis=0)
            submission = predictions_frame(preds[0][task.id], np.clip(mean, task.lows, task.highs), task)
        return self.finish(oof, truth, submission, n_boot, selected, complete=selected == all_folds)

    def finish(
        self,
        oof: pd.DataFrame,
        truth: pd.DataFrame,
        submission: pd.DataFrame | None,
        n_boot: int,
        selected: list[int],
        complete: bool,
    ) -> CVScore:
        """Write the run's OOF, truth, scores, per-target table and submission; log its scores and
        completion tags. What CV runs and ensemble runs both record, scored by the run's task metric."""
        run = self.folder
        task = read_task(run)
        targets = list(task.target_names)
        metric = task.scorer
        cv = metric.score_cv(
            truth[targets].to_numpy(),
            oof[targets].to_numpy(),
            oof["fold"].to_numpy(),
            oof["group"].to_numpy(),
            task.target_names,
            n_boot=n_boot,
        )
        run.write_outputs(oof, truth, cv.to_dict(), cv.per_target)
        if submission is not None:
            run.write_submission(submission)
        self.store.sync(self.run_id, OOF_FILE, TRUTH_FILE, SCORES_FILE, PER_TARGET_FILE, SUBMISSION_FILE)
        self.store.log_metrics(
            self.run_id,
            {
                "cv_score": cv.score,
                "cv_ci_low": cv.ci_low,
                "cv_ci_high": cv.ci_high,
                **{f"{metric.column}.{t}": v for t, v in cv.target_values.items()},
                "n_constant_pred": int((cv.per_target["status"] == "constant prediction").sum()),
            },
        )
        self.update_meta(checksums=run.take_checksums())  # what later stages check before reading
        self.store.set_tags(
            self.run_id,
            {
                TAG_COMPLETE: str(complete).lower(),
                TAG_FOLDS_DONE: ",".join(map(str, selected)),
                **comparability(run, oof),  # rows, data and folds: what the leaderboard groups by
            },
        )
        return cv

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Further figures (an ensemble's in-sample and nested gains, a study's trial scores)."""
        self.store.log_metrics(self.run_id, metrics, step=step)

    def log_params(self, params: dict[str, Any]) -> None:
        self.store.log_params(self.run_id, params)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.store.set_tags(self.run_id, tags)

    def sync(self, *parts: str) -> None:
        """Log parts written into :attr:`folder` by hand (a study's config, space, split, best config)."""
        self.store.sync(self.run_id, *parts)

    def end(self, status: str = "FINISHED", error: str | None = None) -> None:
        """Mark a run recorded outside :meth:`recording` (a study's parent) as ended, with why if it failed."""
        try:
            if error is not None:
                self.store.set_tags(self.run_id, {TAG_ERROR: error[:5000]})
        finally:
            self.store.finish(self.run_id, status)

    def update_meta(self, **updates: Any) -> RunMeta:
        """Change fields of ``run.json`` (timings at the end) and sync it."""
        meta = self.folder.update_meta(**updates)
        self.store.sync(self.run_id, META_FILE)
        return meta

    def log_model(self, say: Say) -> None:
        """Record the finished run as an MLflow model (``runs:/RUN_ID/model``)."""
        t0 = time.perf_counter()
        log_run_model(self.store, self.run_id)
        say(f"MLflow model logged as runs:/{self.run_id}/model ({time.perf_counter() - t0:.1f} s)")


def load_scores(run: RunFolder | Path) -> CVScore:
    """A run's recorded CVScore (from its folder)."""
    folder = run if isinstance(run, RunFolder) else RunFolder(Path(run))
    return CVScore.from_dict(folder.read_scores())
