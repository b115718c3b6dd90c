"""Ensembles and post-processed runs as recorded runs (post-processing is an ensemble of one).

The maths is :mod:`questlab.ensemble.combine`. Honesty: the ensemble run's ``oof.csv`` holds the
*nested* predictions (each fold combined by a combiner fitted without it), so its recorded CV
score, and every command that reads it, sees only predictions made without their own labels.
The same fit on all OOF rows (what the test predictions use) gives the naive *in-sample* score,
reported beside it and never called the gain.

The ensemble run folder holds what a CV run holds (see :mod:`questlab.rundir`) plus
``ensemble.json`` (members, averaging, weights, the nested and in-sample figures) and
``postprocess.json`` (the fitted maps). It holds no fold models: its predictor
(:class:`~questlab.predictors.EnsemblePredictor`) loads the members' stored fold models, nothing is refitted.

The task is the members' (``task.json`` in each run folder; runs without one are QUEST's): runs of
different tasks are refused, naming both; the task's metric drives the maths, every score and gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.console import Say, quiet
from questlab.data import Data, Dataset
from questlab.ensemble.combine import (
    Combiner,
    EnsembleSpec,
    NestedResult,
    combiner_state,
    fold_mean_summary,
    gain_summary,
    nested_fit,
)
from questlab.ensemble.report import EnsembleReport
from questlab.errors import UsageError
from questlab.folds import FOLDS_FILE
from questlab.metric import CVScore, without_fold_offsets
from questlab.provenance import git_commit
from questlab.recording import RunWriter, direction_note, score_label
from questlab.rundir import (
    ENSEMBLE_FILE,
    META_FILE,
    OOF_FILE,
    POSTPROCESS_FILE,
    TAG_COMPLETE,
    TAG_MEMBERS,
    TAG_MODEL,
    TRUTH_FILE,
    RunFolder,
    RunMeta,
    read_task,
)
from questlab.store import RunRecord, Store
from questlab.tasks import Task, load_task
from questlab.tasks.grouping import group_ids


def read_run_task(folder: RunFolder) -> Task:
    """A run's task (``task.json``; QUEST for runs made before tasks)."""
    return read_task(folder)


def check_same_task(tasks: list[tuple[str, Task]]) -> Task:
    """The one task of ``(run id, task)`` pairs; runs of different tasks are refused, naming both."""
    if not tasks:
        raise UsageError("give at least one run")
    first_id, first = tasks[0]
    for run_id, task in tasks[1:]:
        if task.fingerprint != first.fingerprint:
            what = f"task {task.name!r}" if task.name != first.name else f"another spec of task {task.name!r}"
            raise UsageError(
                f"run {run_id} was made under {what} and run {first_id} under task {first.name!r}: "
                "runs of different tasks cannot be combined"
            )
    return first


def _predictions(ids: pd.Series, pred: np.ndarray, task: Task) -> pd.DataFrame:
    """The id column + the task's targets in submission order (the format predictions are saved in)."""
    frame = pd.DataFrame(np.asarray(pred), columns=list(task.target_names))
    frame.insert(0, task.id, np.asarray(ids))
    return frame


@dataclass
class Member:
    """A finished run as an ensemble member: its OOF predictions and what must match."""

    record: RunRecord
    meta: RunMeta
    folds: pd.DataFrame  # id, group, fold sorted by id
    oof: pd.DataFrame  # id, group, fold, the targets sorted by id
    truth: pd.DataFrame  # id, the targets sorted by id
    submission: pd.DataFrame | None
    folds_path: Path  # the member's folds.csv (copied into the ensemble run)
    task: Task  # the task the run was made under


def load_member(store: Store, run_id: str) -> Member:
    """Load a finished, complete run (CV or ensemble) to combine."""
    record = store.get(run_id)
    if record.status != "FINISHED" or record.tags.get(TAG_COMPLETE) != "true":
        raise UsageError(
            f"run {record.run_id} is {record.status.lower()} and "
            f"{'complete' if record.tags.get(TAG_COMPLETE) == 'true' else 'partial'}: "
            "only finished runs over all folds can be combined (use collect for --fold runs)"
        )
    run = record.folder
    missing = [f for f in (META_FILE, FOLDS_FILE, OOF_FILE, TRUTH_FILE) if not run.has(f)]
    if missing:
        raise UsageError(f"run {record.run_id} has no {', '.join(missing)}: it cannot be combined")
    task = read_run_task(run)
    key = task.id
    return Member(
        record=record,
        meta=run.read_meta(),
        folds=run.read_folds().sort_values(key, ignore_index=True),
        oof=run.read_oof().sort_values(key, ignore_index=True),
        truth=run.read_truth().sort_values(key, ignore_index=True),
        submission=run.read_submission(),
        folds_path=run.verified(FOLDS_FILE),
        task=task,
    )


def check_members(members: list[Member]) -> Task:
    """Refuse members of different tasks, or not trained on the same file with the same folds;
    return their task."""
    if not members:
        raise UsageError("give at least one run")
    first = members[0]
    ids = [m.record.run_id for m in members]
    if len(set(ids)) != len(ids):
        raise UsageError("a run is given twice")
    task = check_same_task([(m.record.run_id, m.task) for m in members])
    ID = task.id
    for m in members[1:]:
        who = f"run {m.record.run_id} and run {first.record.run_id}"
        if m.meta.train_sha256 != first.meta.train_sha256:
            raise UsageError(f"{who} were trained on different train files: they cannot be combined")
        if not m.folds[[ID, "fold"]].equals(first.folds[[ID, "fold"]]):
            raise UsageError(
                f"{who} used different folds, so an OOF blend would mix models that saw each other's "
                f"validation rows: re-run one with `folds: {{from_run: {first.record.run_id}}}`"
            )
        if not m.oof[ID].equals(first.oof[ID]):
            raise UsageError(f"{who} have out-of-fold predictions for different rows")
    return task


def _member_matrix(members: list[Member]) -> np.ndarray:
    targets = list(members[0].task.target_names)
    return np.stack([m.oof[targets].to_numpy(dtype=np.float64) for m in members])


def _references(members: list[Member], average: str) -> list[np.ndarray] | None:
    if average != "rank":
        return None
    targets = list(members[0].task.target_names)
    return [np.sort(m.oof[targets].to_numpy(dtype=np.float64), axis=0) for m in members]


def build_ensemble(
    store: Store,
    run_ids: list[str],
    spec: EnsembleSpec,
    name: str | None = None,
    n_boot: int = 200,
    say: Say = quiet,
    test: Data | None = None,
    tags: dict[str, str] | None = None,
) -> tuple[str, EnsembleReport]:
    """Combine finished runs into a new recorded run (kind "ensemble"); return its id and report.

    ``test`` (the file the members predicted) is needed only with the question share, to group the
    submission's rows by question. ``tags`` are added to the new run's.

    The report holds the members' scores, the nested score with and without post-processing,
    the in-sample score, and gains over the best member (nested and in-sample, with paired
    bootstrap intervals). Only the nested figures are honest.
    """
    members = [load_member(store, r) for r in run_ids]
    task = check_members(members)
    metric = task.scorer
    spec.check(len(members), task)
    first = members[0]
    truth = first.truth[list(task.target_names)].to_numpy(dtype=np.float64)
    folds, groups = first.oof["fold"].to_numpy(), first.oof["group"].to_numpy()
    x = _member_matrix(members)
    refs = _references(members, spec.average)
    say(f"fitting on {len(truth)} OOF rows, nested over {len(np.unique(folds))} folds")
    res = nested_fit(x, truth, folds, groups, spec, refs, task)

    # Scored as the runs score themselves: under a rank metric a column constant inside every fold
    # counts 0 (metric.score_cv); an error metric scores every column as it is.
    def as_scored(p: np.ndarray) -> np.ndarray:
        return without_fold_offsets(p, folds) if metric.rank_based else p

    scored = [as_scored(xi) for xi in x]
    nested, blend, in_sample = (as_scored(p) for p in (res.nested, res.nested_blend, res.in_sample))
    member_scores = [metric.score(truth, xi) for xi in scored]
    best = metric.best(member_scores)
    base = scored[best]  # gains are measured against the best member alone (for one member: the run itself)
    report = EnsembleReport(
        members={m.record.run_id: s for m, s in zip(members, member_scores, strict=True)},
        best_member=members[best].record.run_id,
        nested_score=metric.score(truth, nested),
        nested_score_before_postprocess=metric.score(truth, blend),
        in_sample_score=metric.score(truth, in_sample),
        nested_gain=gain_summary(truth, base, nested, groups, n_boot, spec.seed, metric),
        # the same nested predictions scored fold by fold, then averaged (see metric.fold_mean_score)
        nested_fold_mean=fold_mean_summary(truth, base, nested, folds, groups, n_boot, spec.seed, metric),
        in_sample_gain=gain_summary(truth, base, in_sample, groups, n_boot, spec.seed, metric),
        notes=res.notes,
        metric=metric.name,
    )
    if spec.question_share:
        report.question_share_nested_gain = gain_summary(
            truth, as_scored(res.nested_unshared), blend, groups, n_boot, spec.seed, metric
        )
        report.question_share_chosen = res.final.question_share.chosen()
    if spec.postprocess != "none":
        report.postprocess_nested_gain = gain_summary(truth, blend, nested, groups, n_boot, spec.seed, metric)
        report.postprocess_chosen = res.final.postprocessor.chosen()
        report.postprocess_mapped_folds = res.mapped_folds
        # mapped in some outer folds only: pooled, their rows mix two scales (metric.fold_mean_score)
        n_folds = len(np.unique(folds))
        report.postprocess_mixed = {t: ks for t, ks in res.mapped_folds.items() if len(ks) < n_folds}
    # before the run exists: a refusal leaves no run
    submission = _submission(members, res.final, _test_groups(members, test) if spec.question_share else None)
    run_id, cv = _record(store, members, spec, res, report, submission, name, n_boot, tags)
    label, note = score_label(task), direction_note(task)  # as a CV run names its score
    say(f"ensemble run {run_id}: nested CV {label} {cv.score:.4f} (95% CI {cv.ci_low:.4f}..{cv.ci_high:.4f}){note}")
    return run_id, report


def _record(
    store: Store,
    members: list[Member],
    spec: EnsembleSpec,
    res: NestedResult,
    report: EnsembleReport,
    submission: pd.DataFrame | None,
    name: str | None,
    n_boot: int,
    tags: dict[str, str] | None = None,
) -> tuple[str, CVScore]:
    """Create the ensemble run and write its folder like a CV run's, plus ensemble/postprocess JSON."""
    first = members[0]
    task = first.task
    folds, groups = first.oof["fold"].to_numpy(), first.oof["group"].to_numpy()
    name = name or ("postprocess" if len(members) == 1 else "ensemble")
    model = "ensemble(" + "+".join(m.record.tags.get(TAG_MODEL, "?") for m in members) + ")"
    member_ids = [m.record.run_id for m in members]
    writer = RunWriter.create(store, name, "ensemble", model, tags={TAG_MEMBERS: ",".join(member_ids), **(tags or {})})
    with writer.recording():
        record = ensemble_record(member_ids, spec, res, report, task)
        writer.folder.write_ensemble(record)
        if res.final.postprocessor is not None:
            res.final.postprocessor.save(writer.folder / POSTPROCESS_FILE)
        all_folds = sorted(int(k) for k in np.unique(folds))
        meta = RunMeta(
            run_id=writer.run_id,
            kind="ensemble",
            name=name,
            model="ensemble",
            members=member_ids,
            train_file=first.meta.train_file,
            train_sha256=first.meta.train_sha256,
            test_file=first.meta.test_file,
            test_sha256=first.meta.test_sha256,
            git_commit=git_commit(),
            folds_all=all_folds,
            folds_selected=all_folds,
            task=task.name,
        )
        params = {k: v for k, v in record.items() if k not in ("weights", "report", "stack", "question_share")}
        # the members' task is recorded as the ensemble's
        writer.start(meta, folds=first.folds_path, params=params, parts=(ENSEMBLE_FILE, POSTPROCESS_FILE), task=task)
        oof = _predictions(first.oof[task.id], res.nested, task)
        oof.insert(1, "group", groups)
        oof.insert(2, "fold", folds)
        cv = writer.finish(oof, first.truth, submission, n_boot, all_folds, complete=True)
        writer.log_metrics(
            {
                "in_sample_score": report["in_sample_score"],
                "nested_gain": report["nested_gain"]["gain"],
                "in_sample_gain": report["in_sample_gain"]["gain"],
                # the per-fold reading of the same nested predictions (metric.fold_mean_score)
                "cv_fold_mean": report["nested_fold_mean"]["score"],
                "nested_fold_mean_gain": report["nested_fold_mean"]["gain"],
            }
        )
        writer.log_model(quiet)
    return writer.run_id, cv


def ensemble_record(
    member_ids: list[str], spec: EnsembleSpec, res: NestedResult, report: EnsembleReport, task: Task | None = None
) -> dict:
    """The run's ``ensemble.json``: members, averaging, weights, the combiner's state and the report.

    Its predictor (:class:`~questlab.predictors.EnsemblePredictor`) keeps the keys it predicts with.
    ``task`` None is QUEST.
    """
    targets = load_task(task).target_names
    return {
        "members": member_ids,
        "average": spec.average,
        "weights_mode": spec.weights if isinstance(spec.weights, str) else "given",
        "per_target": spec.per_target,
        "weights": {t: w.tolist() for t, w in zip(targets, res.final.weights, strict=True)},
        "postprocess": spec.postprocess,
        "seed": spec.seed,
        **combiner_state(res.final),
        "report": report.to_dict(),
    }


def _test_groups(members: list[Member], test: Data | None) -> pd.Series | None:
    """Groups of the members' test rows (id -> group), from the test file they predicted."""
    first = members[0]
    task = first.task
    if first.submission is None:
        return None
    if test is None:
        raise UsageError(
            "the question share groups the test rows by question: give the test file the runs predicted (--test)"
        )
    data = _read_test(test, task)
    first.meta.check_same_data("test", data)
    return pd.Series(group_ids(task, data.frame), index=data.frame[task.id].to_numpy())


def _read_test(test: Data, task: Task) -> Dataset:
    """The test file, read under the members' task."""
    return Dataset.read(test, "test", task=task)


def _submission(members: list[Member], combiner: Combiner, test_groups: pd.Series | None) -> pd.DataFrame | None:
    """Test predictions from the members' own test predictions (mean of their fold models)."""
    task = members[0].task
    key, targets = task.id, list(task.target_names)
    subs = [m.submission for m in members]
    if any(s is None for s in subs):
        return None
    if any(not s[key].equals(subs[0][key]) for s in subs[1:]):
        raise UsageError("the members predicted different test rows: re-run them with the same --test file")
    groups = test_groups.loc[subs[0][key]].to_numpy() if test_groups is not None else None
    pred, _ = combiner.apply(np.stack([s[targets].to_numpy(dtype=np.float64) for s in subs]), groups)
    return _predictions(subs[0][key], pred, task)


def postprocess_run(
    store: Store,
    run_id: str,
    method: str | None = None,
    name: str | None = None,
    n_boot: int = 200,
    say: Say = quiet,
    question_share: bool = False,
    test: Data | None = None,
) -> tuple[str, EnsembleReport]:
    """Post-process one run: a new ensemble run with that run as its only member (weight 1).

    Keeping the source run untouched and recording the mapping as a run of its own means
    ``predict``, ``diagnose`` and ``compare`` work on the post-processed version unchanged, and
    its oof.csv holds the nested (honest) mapped predictions. ``method`` None: ``distribution``
    under a rank metric (QUEST, as before), ``auto`` (clip, then snap or shrink where it helps) else.
    """
    if method is None:  # the task's default: rank maps for a rank metric, else the level maps it may keep
        method = "distribution" if read_run_task(store.get(run_id).folder).scorer.rank_based else "auto"
    spec = EnsembleSpec(weights="equal", postprocess=method, question_share=question_share)
    name = name or f"{store.get(run_id).name}+pp-{method}{'+share' if question_share else ''}"
    return build_ensemble(store, [run_id], spec, name=name, n_boot=n_boot, say=say, test=test)
