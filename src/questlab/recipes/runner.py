"""Run a recipe: each member a recorded run (reused, resumed or fitted), then the ensemble run.

A member is found again by its key, a tag on its run: the sha256 of its resolved config (the
parts that change what is fitted), of the train and test data, and of its folds (the fold of
every row: the first member's folds, which every member uses). A rerun of the same
recipe on the same data therefore refits nothing: a finished member is reused, a killed, failed
or dead one is resumed (its finished folds kept), and only a changed member is fitted anew.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.config import RunConfig, parse_config
from questlab.console import Say, stderr
from questlab.csvfile import check_not_an_input, check_output_file
from questlab.cv import resolve_folds, run_cv
from questlab.data import Data, Dataset, check_pair
from questlab.ensemble.combine import EnsembleSpec
from questlab.ensemble.question_share import shared_columns
from questlab.ensemble.report import EnsembleReport
from questlab.ensemble_runs import build_ensemble
from questlab.errors import EncoderNotFoundError, QuestlabError, UsageError
from questlab.models import build_model
from questlab.models.pretrained import resolve_encoder
from questlab.recipes.spec import RecipeSpec, fitted_part, load_recipe
from questlab.rundir import TAG_COMPLETE
from questlab.store import RunRecord, Store, as_store
from questlab.store.liveness import describe, is_dead
from questlab.tasks import Task, TaskRef, builtin_task_names, load_task
from questlab.tasks.grouping import group_ids

TAG_MEMBER_KEY = "questlab.recipe_member_key"
TAG_RECIPE = "questlab.recipe"


@dataclass
class MemberOutcome:
    """What happened to one member in this call."""

    name: str
    run_id: str
    action: str  # reused | resumed | fitted
    cv: float
    ci: tuple[float, float]
    seconds: float
    key: str


@dataclass
class RecipeOutcome:
    """A finished recipe: its members, the ensemble run and its report, the timings."""

    recipe: str
    members: list[MemberOutcome]
    ensemble_id: str
    report: EnsembleReport
    submission: Path | None
    seconds: dict[str, float] = field(default_factory=dict)  # members, ensemble, total


def member_key(config: RunConfig, folds_sha: str, train_sha: str, test_sha: str | None) -> str:
    """The sha256 that identifies a member's run: what is fitted, on which data and folds."""
    blob = json.dumps(
        {"config": fitted_part(config), "folds": folds_sha, "train": train_sha, "test": test_sha}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def folds_key(folds: pd.DataFrame) -> str:
    """sha256 of every row's fold, in id order: the same folds give the same key however made."""
    key = folds.columns[0]  # the task's id: a folds frame starts with it
    rows = folds[[key, "fold"]]
    # integer ids (QUEST) as before tasks; other ids as text
    rows = rows.astype("int64") if pd.api.types.is_integer_dtype(rows[key]) else rows.astype({key: str})
    rows = rows.sort_values(key, kind="stable")
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()


def recorded_key(store: Store, record: RunRecord) -> str | None:
    """A finished member's key as this version computes it, from what its run recorded.

    The recorded config is read again with today's defaults, so a param added since (with a
    default that fits as before) does not turn an hour-long member into a refit; a param removed
    since, or a run without config or folds, gives None (no match).
    """
    try:
        folder = store.folder(record.run_id)
        meta = folder.read_meta()
        if meta.config is None:
            return None
        config = parse_config(meta.config, f"run {record.run_id}")
        return member_key(config, folds_key(folder.read_folds()), meta.train_sha256, meta.test_sha256)
    except (QuestlabError, OSError, KeyError, ValueError):
        return None


def _find(store: Store, key: str) -> tuple[str, RunRecord | None]:
    """("reuse" | "resume" | "fit", the run) for the newest run recorded under ``key``.

    A finished member made by an earlier questlab carries the key that version computed: when no
    run carries ``key`` itself, finished members are matched by ``recorded_key``.
    """
    every = store.list_runs()  # newest first
    finished = [r for r in every if r.status == "FINISHED" and r.tags.get(TAG_COMPLETE) == "true"]
    runs = [r for r in every if r.tags.get(TAG_MEMBER_KEY) == key]
    for r in finished:
        if r.tags.get(TAG_MEMBER_KEY) == key:
            return "reuse", r
    for r in finished:
        if TAG_MEMBER_KEY in r.tags and recorded_key(store, r) == key:
            return "reuse", r
    for r in runs:
        if r.status == "RUNNING" and not is_dead(r.status, r.tags):
            raise UsageError(f"member run {r.run_id} is being fitted now ({describe(r.tags)}): wait for it, or stop it")
        if r.status in ("FAILED", "KILLED") or is_dead(r.status, r.tags):
            return "resume", r
    return "fit", None


def run_recipe(
    recipe: RecipeSpec | str | Path,
    train: Data,
    test: Data | None = None,
    store: Store | str | Path | None = None,
    submission: str | Path | None = None,
    say: Say = stderr,
    cuda: bool | None = None,
    task: TaskRef = None,
) -> RecipeOutcome:
    """Run a recipe end to end; return what each member did and the ensemble run.

    ``recipe`` is a :class:`RecipeSpec`, a built-in name or a YAML path; ``cuda`` None detects the
    device for members marked ``device: cuda|cpu``. ``store`` (a Store, URI or folder; default
    ./questlab-store) is opened, and created if need be, only once every input has been checked.
    ``task`` (a built-in name, a spec path or a Task; None: QUEST) picks the recipe's members and
    settings for it (:meth:`RecipeSpec.for_task`); the members run under it.
    """
    t0 = time.perf_counter()
    the_task = load_task(task)
    spec = recipe if isinstance(recipe, RecipeSpec) else load_recipe(recipe)
    spec = spec.for_task(the_task.name)
    configs = spec.member_configs(cuda, task=_task_ref(task))  # every config checked before any work
    _check_encoders(spec.name, configs)
    if submission is not None:
        if test is None:
            raise UsageError("--submission needs --test: the test pairs to predict")
        check_output_file("--submission", Path(submission))
        check_not_an_input("--submission", submission, _input_files(spec, recipe, train, test))
    train_data = _read(train, "train", the_task)
    test_data = _read(test, "test", the_task) if test is not None else None
    if test_data is not None:
        check_pair(train_data.frame, test_data.frame, test_data.name, task=the_task)
    store = as_store(store, create=True)
    say(f"recipe {spec.name}: {len(configs)} member(s) on shared folds, then {spec.ensemble.method}")
    outcomes: list[MemberOutcome] = []
    # Every member runs on the first member's folds: the key names their content, not how they were made.
    folds = resolve_folds(configs[0], train_data.frame, store, task=the_task)
    folds_sha = folds_key(folds)
    for i, config in enumerate(configs):
        if i > 0:
            config = config.model_copy(update={"folds": config.folds.model_copy(
                update={"from_run": outcomes[0].run_id, "from_file": None})})  # fmt: skip
        key = member_key(config, folds_sha, train_data.sha256, test_data.sha256 if test_data else None)
        outcomes.append(_member(store, config, key, spec.name, train_data, test_data, f"{i + 1}/{len(configs)}", say))
    t_members = time.perf_counter()
    ens = EnsembleSpec(
        weights=spec.ensemble.weights, per_target=spec.ensemble.per_target, average=spec.ensemble.average,
        postprocess=spec.postprocess, method=spec.ensemble.method,
        question_share=spec.question_share and _share_reaches(test_data, say, the_task),
    )  # fmt: skip
    ensemble_id, report = build_ensemble(
        store, [o.run_id for o in outcomes], ens, name=f"recipe-{spec.name}", n_boot=spec.bootstrap, say=say,
        test=test_data, tags={TAG_RECIPE: spec.name},
    )  # fmt: skip
    if submission is not None:
        frame = store.folder(ensemble_id).read_submission()
        if frame is None:
            raise UsageError("no submission to write: give --test")
        Path(submission).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(submission, index=False)
    t_end = time.perf_counter()
    seconds = {"members": t_members - t0, "ensemble": t_end - t_members, "total": t_end - t0}
    return RecipeOutcome(spec.name, outcomes, ensemble_id, report, submission, seconds)


def _input_files(spec: RecipeSpec, recipe: RecipeSpec | str | Path, train: Data, test: Data | None) -> dict:
    """The files a recipe reads, by what names them: the data, the recipe file, members' config files."""
    files: dict[str, object] = {"--train": train, "--test": test}
    if not isinstance(recipe, RecipeSpec) and spec.base is not None:  # a file, not a built-in name
        files["recipe"] = recipe
    for i, m in enumerate(spec.members):
        if isinstance(m.config, str):
            files[f"members.{i}.config"] = Path(m.config) if spec.base is None else spec.base / m.config
    return files


def _check_encoders(recipe: str, configs: list[RunConfig]) -> None:
    """Find every member's pretrained encoder before any work: a missing package (MPNet's, say)
    is one line with its install command, not a failure an hour in, after the members before it."""
    for config in configs:
        encoder = getattr(build_model(config.model.name, config.model.params).params, "encoder", None)
        if encoder is None:
            continue
        try:
            resolve_encoder(encoder)
        except EncoderNotFoundError as exc:
            raise EncoderNotFoundError(f"recipe {recipe}, member {config.name}: {exc}") from None


def _task_ref(task: TaskRef) -> str | None:
    """What a member config's ``task`` key holds for ``task``: a built-in name or a spec path."""
    if task is None or isinstance(task, str | Path):
        return None if task is None else str(task)
    if task.name in builtin_task_names():
        return task.name
    raise UsageError(f"task {task.name!r}: give a recipe its spec file's path (members record it in their config)")


def _read(data: Data, kind: str, task: Task) -> Dataset:
    return Dataset.read(data, kind, task=task)


def _share_reaches(test: Dataset | None, say: Say, task: Task | None = None) -> bool:
    """Whether the question share can change the submission: some test question has several answers.

    Where none has (QUEST's test.csv: 476 rows, 476 questions), sharing would raise the nested CV
    (train questions do have several answers) without touching the submission: it is left out.
    """
    task = load_task(task)
    if not shared_columns(task):
        say(f"question share left out: task {task.name} has no groups with targets of the first segment alone")
        return False
    if test is None or len(np.unique(group_ids(task, test.frame))) < len(test.frame):
        return True
    say(f"question share left out: no question in {test.name} has several answers, so it could not change the "
        "submission and its CV gain would not carry over")  # fmt: skip
    return False


def _member(
    store: Store,
    config: RunConfig,
    key: str,
    recipe: str,
    train: Dataset,
    test: Dataset | None,
    label: str,
    say: Say,
) -> MemberOutcome:
    """Reuse, resume or fit one member; return what was done."""
    t0 = time.perf_counter()
    action, record = _find(store, key)
    prefix = f"member {label} {config.name}"
    inner = lambda msg: say(f"  [{config.name}] {msg}")  # noqa: E731
    if action == "reuse":
        run_id = record.run_id
        why = "same config, data and folds"
        if record.tags.get(TAG_MEMBER_KEY) != key:  # matched by recorded_key: made by an earlier questlab
            version = record.tags.get("questlab.version", "an earlier version")
            why = f"recorded by questlab {version}: same config with today's defaults, data and folds"
        say(f"{prefix}: reusing run {run_id[:8]} ({why})")
    elif action == "resume":
        say(f"{prefix}: resuming {record.status.lower()} run {record.run_id[:8]}")
        run_id = run_cv(None, train, test, store=store, resume=record.run_id, say=inner)
        action = "resumed"
    else:
        say(f"{prefix}: fitting")
        run_id = run_cv(config, train, test, store=store, say=inner, tags={TAG_MEMBER_KEY: key, TAG_RECIPE: recipe})
        action = "fitted"
    action = "reused" if action == "reuse" else action
    metrics = store.get(run_id).metrics
    cv, ci = metrics.get("cv_score", float("nan")), (metrics.get("cv_ci_low", float("nan")),
                                                     metrics.get("cv_ci_high", float("nan")))  # fmt: skip
    seconds = time.perf_counter() - t0
    say(f"{prefix}: {action} run {run_id[:8]}, CV {cv:.4f} ({ci[0]:.4f}..{ci[1]:.4f}), {seconds:.0f} s")
    return MemberOutcome(config.name, run_id, action, cv, ci, seconds, key)
