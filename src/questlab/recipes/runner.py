"""Run a recipe: each member a recorded run (reused, resumed or fitted), then the ensemble run.

A member is found again by its key, a tag on its run: the sha256 of its resolved config (the
parts that change what is fitted), of the train and test data, and of its folds (the fold of
every row: the first member's folds, which every member uses). A rerun of the same
recipe on the same data therefore refits nothing: a finished member is reused, a killed, failed
or dead one is resumed (its finished folds kept), and only a changed member is fitted anew.

Under a time budget (``time_limit``) the members are planned first (:mod:`questlab.recipes.budget`):
each one's cost is estimated on the data at hand, those that do not fit are dropped and the plan is
said before any member is fitted. While running, a member whose estimate no longer fits is skipped,
and one whose folds show it would end past the budget (less the ensemble's reserve) is stopped
after a fold (its run marked KILLED: a later call resumes it). The last member planned is never
skipped or stopped while no member has finished: a recipe always ends with at least one member.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
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
from questlab.recipes.budget import Plan, plan_members
from questlab.recipes.spec import RecipeSpec, fitted_part, load_recipe
from questlab.rundir import TAG_COMPLETE
from questlab.store import RunRecord, RunStopped, Store, as_store
from questlab.store.liveness import describe, is_dead
from questlab.tasks import Task, TaskRef, builtin_task_names, load_task
from questlab.tasks.grouping import group_ids
from questlab.timebudget import Budget, fmt_duration, parse_duration

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
    plan: Plan | None = None  # under a time budget: every member's estimate and whether it was kept
    skipped: list[str] = field(default_factory=list)  # members dropped, skipped or stopped for time
    time_limit: float | None = None


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
    time_limit: float | str | None = None,
) -> RecipeOutcome:
    """Run a recipe end to end; return what each member did and the ensemble run.

    ``recipe`` is a :class:`RecipeSpec`, a built-in name or a YAML path; ``cuda`` None detects the
    device for members marked ``device: cuda|cpu``. ``store`` (a Store, URI or folder; default
    ./questlab-store) is opened, and created if need be, only once every input has been checked.
    ``task`` (a built-in name, a spec path or a Task; None: QUEST) picks the recipe's members and
    settings for it (:meth:`RecipeSpec.for_task`); the members run under it. ``time_limit``
    (seconds, or text such as ``"15m"``) plans the members to fit that wall-clock budget (see the
    module's docstring); None: no budget.
    """
    t0 = time.perf_counter()
    limit = parse_duration(time_limit)
    budget = Budget(limit) if limit is not None else None
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
    keys = [member_key(c, folds_sha, train_data.sha256, test_data.sha256 if test_data else None) for c in configs]
    plan: Plan | None = None
    skipped: list[str] = []
    if budget is not None:
        reused = [_find(store, key)[0] == "reuse" for key in keys]
        plan = plan_members(configs, reused, train_data.frame, the_task, budget, say)
        say(plan.describe())
        skipped = [m.name for m in plan.members if not m.keep]
    order = plan.kept if plan is not None else list(range(len(configs)))
    for pos, i in enumerate(order):
        config = configs[i]
        if outcomes:  # every later member on the first one's folds
            config = config.model_copy(update={"folds": config.folds.model_copy(
                update={"from_run": outcomes[0].run_id, "from_file": None})})  # fmt: skip
        elif i > 0:  # the recipe's first member was dropped: its folds are still the recipe's
            config = config.model_copy(update={"folds": configs[0].folds})
        label = f"{i + 1}/{len(configs)}"
        on_fold = None
        last_chance = not outcomes and pos == len(order) - 1  # no member yet, none after it: it runs
        if budget is not None and plan is not None and not last_chance:
            estimate = plan.members[i].seconds
            if not budget.fits(estimate, plan.reserve):
                say(f"member {label} {config.name}: skipped: {fmt_duration(budget.elapsed)} spent, its "
                    f"~{fmt_duration(estimate)} would end past the {fmt_duration(budget.limit)} budget")  # fmt: skip
                skipped.append(config.name)
                continue
            on_fold = _deadline_guard(budget, plan.reserve, config.folds.n_splits)
        try:
            outcomes.append(_member(store, config, keys[i], spec.name, train_data, test_data, label, say, on_fold))
        except RunStopped as exc:
            say(f"member {label} {config.name}: stopped ({exc}); its run is marked KILLED: a later call resumes it")
            skipped.append(config.name)
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
    if budget is not None:
        say(f"recipe {spec.name}: {budget.describe()}; {len(outcomes)} member(s) ran"
            + (f", left out: {', '.join(skipped)}" if skipped else ""))  # fmt: skip
    return RecipeOutcome(spec.name, outcomes, ensemble_id, report, submission, seconds, plan, skipped, limit)


def _deadline_guard(budget: Budget, reserve: float, n_splits: int) -> Callable[[int, float, list[float]], None]:
    """An ``on_fold`` that stops a member whose folds so far show it would end past the budget less ``reserve``."""
    start, done = budget.elapsed, 0

    def on_fold(k: int, score: float, scores: list[float]) -> None:
        nonlocal done
        done += 1
        per_fold = (budget.elapsed - start) / done
        ends = budget.elapsed + per_fold * max(0, n_splits - len(scores))
        if ends + reserve > budget.limit:
            raise RunStopped(
                f"after fold {k}: at ~{fmt_duration(per_fold)} a fold it would end at {fmt_duration(ends)}, "
                f"past the {fmt_duration(budget.limit)} budget less the ensemble's {fmt_duration(reserve)}"
            )

    return on_fold


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
    on_fold: Callable[[int, float, list[float]], None] | None = None,
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
        run_id = run_cv(None, train, test, store=store, resume=record.run_id, say=inner, on_fold=on_fold)
        action = "resumed"
    else:
        say(f"{prefix}: fitting")
        tags = {TAG_MEMBER_KEY: key, TAG_RECIPE: recipe}
        run_id = run_cv(config, train, test, store=store, say=inner, tags=tags, on_fold=on_fold)
        action = "fitted"
    action = "reused" if action == "reuse" else action
    metrics = store.get(run_id).metrics
    cv, ci = metrics.get("cv_score", float("nan")), (metrics.get("cv_ci_low", float("nan")),
                                                     metrics.get("cv_ci_high", float("nan")))  # fmt: skip
    seconds = time.perf_counter() - t0
    say(f"{prefix}: {action} run {run_id[:8]}, CV {cv:.4f} ({ci[0]:.4f}..{ci[1]:.4f}), {seconds:.0f} s")
    return MemberOutcome(config.name, run_id, action, cv, ci, seconds, key)
