"""The end of a study: the best config, its one run on the held-out groups, the parent's metrics and report."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

from optuna.trial import FrozenTrial, TrialState

from questlab.config import parse_config
from questlab.console import quiet
from questlab.cv import run_cv
from questlab.errors import StudyError
from questlab.recording import RunWriter, direction_note, score_label
from questlab.tasks.grouping import group_noun
from questlab.tuning.common import (
    ATTR_CANNOT_FIT,
    ATTR_HOLDOUT_LOOKS,
    ATTR_HOLDOUT_RUN,
    ATTR_HOLDOUT_TRIAL,
    BEST_CONFIG_FILE,
    HOLDOUT_FILE,
    REPORT_FILE,
    TAG_BEST_RUN,
    TAG_BEST_TRIAL,
    TAG_HOLDOUT,
    TAG_HOLDOUT_RUN,
    TAG_PARENT,
    TAG_STUDY,
)
from questlab.tuning.context import StudyContext, TuneResult
from questlab.tuning.parent import mark_parent
from questlab.tuning.report import study_report
from questlab.tuning.space import overrides_for


def finalize_study(ctx: StudyContext, best_config_path: str | Path | None) -> TuneResult:
    """Write the best config, score it once on the held-out groups, report, finish the parent."""
    study, store = ctx.study, ctx.store
    states = [t.state for t in study.get_trials(deepcopy=False)]
    n_complete, n_pruned = states.count(TrialState.COMPLETE), states.count(TrialState.PRUNED)
    n_failed = sum(
        1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)) if not t.user_attrs.get("surplus")
    )
    if n_complete == 0:
        mark_parent(store, ctx.parent_id, "FAILED", "no trial completed")
        cannot_fit = [t for t in study.get_trials(deepcopy=False) if ATTR_CANNOT_FIT in t.user_attrs]
        why = f"; trial {cannot_fit[0].number}: {cannot_fit[0].user_attrs[ATTR_CANNOT_FIT]}" if cannot_fit else ""
        raise StudyError(
            f"study {ctx.name}: no trial completed ({n_pruned} pruned, {n_failed} failed): nothing to choose{why}"
        )
    best = study.best_trial
    best_run = str(best.user_attrs.get("run_id", ""))
    best_ci = tuple(best.user_attrs.get("ci", [math.nan, math.nan]))
    notes: list[str] = []
    base_data = ctx.base.model_dump(mode="json")
    best_overrides = overrides_for(best.params)

    holdout_id = holdout_score = holdout_ci = None
    if ctx.split is not None:
        holdout_id = _holdout_run(ctx, best, base_data, best_overrides, notes)
        metrics = store.get(holdout_id).metrics
        holdout_score = float(metrics["cv_score"])
        holdout_ci = (float(metrics.get("cv_ci_low", math.nan)), float(metrics.get("cv_ci_high", math.nan)))
    else:
        notes.append(
            f"no {group_noun(ctx.task)} were held out: the best CV was chosen among trials on the same folds"
            " and is optimistic"
        )

    description = f"best of study {ctx.name}: trial {best.number}, CV {best.value:.4f}"
    if holdout_score is not None:
        description += f"; on {ctx.holdout:.0%} untouched {group_noun(ctx.task)} {holdout_score:.4f}"
    best_config = parse_config(
        {**base_data, "name": f"{ctx.name}-best", "description": description},
        source=f"study {ctx.name} best trial",
        overrides=best_overrides,
    )
    path = Path(best_config_path) if best_config_path else Path.cwd() / f"{ctx.name}-best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(best_config.to_yaml())
    parent = RunWriter(store, ctx.parent_id)
    (parent.folder / BEST_CONFIG_FILE).write_text(best_config.to_yaml())
    parent.sync(BEST_CONFIG_FILE)

    result = TuneResult(
        study_name=ctx.name,
        study=study,
        parent_run_id=ctx.parent_id,
        best_trial=best.number,
        best_run_id=best_run,
        best_cv=float(best.value),
        best_cv_ci=(float(best_ci[0]), float(best_ci[1])),
        best_config=best_config,
        best_config_path=path.resolve(),
        holdout_score=holdout_score,
        holdout_ci=holdout_ci,
        holdout_run_id=holdout_id,
        n_complete=n_complete,
        n_pruned=n_pruned,
        n_failed=n_failed,
        notes=notes,
        scored_by=f"{score_label(ctx.task)}{direction_note(ctx.task)}",  # a task's score names its metric
    )
    metrics = {
        "best_cv": result.best_cv,
        "best_cv_ci_low": result.best_cv_ci[0],
        "best_cv_ci_high": result.best_cv_ci[1],
        "trials_complete": n_complete,
        "trials_pruned": n_pruned,
        "trials_failed": n_failed,
    }
    if holdout_score is not None and holdout_ci is not None:
        metrics |= {
            "holdout_score": holdout_score,
            "holdout_ci_low": holdout_ci[0],
            "holdout_ci_high": holdout_ci[1],
            "cv_minus_holdout": result.best_cv - holdout_score,
        }
    parent.log_metrics(metrics)
    tags = {TAG_BEST_TRIAL: str(best.number), TAG_BEST_RUN: best_run}
    if holdout_id:
        tags[TAG_HOLDOUT_RUN] = holdout_id
    parent.set_tags(tags)
    try:
        result.report_path = store.attach(ctx.parent_id, study_report(ctx, result), REPORT_FILE)
    except Exception as exc:  # a plotting problem must not lose the study's result
        notes.append(f"the report could not be written ({type(exc).__name__}: {exc})")
    parent.end("FINISHED")
    return result


def _holdout_run(
    ctx: StudyContext, best: FrozenTrial, base_data: dict, best_overrides: list[str], notes: list[str]
) -> str:
    """The chosen config trained on every tuning row and scored on the held-out groups, once.

    A study re-finalised with the same best trial reuses that run; a new best trial (more trials
    were added) is a second look at the held-out groups, and is said so.
    """
    study, store = ctx.study, ctx.store
    attrs = study.user_attrs
    previous = attrs.get(ATTR_HOLDOUT_RUN)
    looks = int(attrs.get(ATTR_HOLDOUT_LOOKS, 0))
    if previous and attrs.get(ATTR_HOLDOUT_TRIAL) == best.number:
        with contextlib.suppress(LookupError):
            if store.get(previous).status == "FINISHED":
                ctx.say(f"the best trial is still {best.number}: its held-out score (run {previous}) is kept")
                return previous
    split_path = store.folder(ctx.parent_id) / HOLDOUT_FILE
    config = parse_config(
        {
            **base_data,
            "name": f"{ctx.name}-holdout",
            "folds": {"n_splits": 2, "seed": ctx.base.folds.seed, "from_file": str(split_path)},
        },
        source=f"study {ctx.name} holdout run",
        overrides=best_overrides,
    )
    tags = {
        TAG_PARENT: ctx.parent_id,
        TAG_STUDY: ctx.name,
        TAG_HOLDOUT: "true",
        TAG_BEST_TRIAL: str(best.number),
    }
    ctx.say(
        f"scoring trial {best.number}'s config on the held-out {group_noun(ctx.task)}"
        f" (trained on all {len(ctx.tuning)} tuning rows)"
    )
    run_id = run_cv(config, ctx.train, store=store, only_folds=[0], say=quiet, tags=tags)
    looks += 1
    study.set_user_attr(ATTR_HOLDOUT_RUN, run_id)
    study.set_user_attr(ATTR_HOLDOUT_TRIAL, best.number)
    study.set_user_attr(ATTR_HOLDOUT_LOOKS, looks)
    if looks > 1:
        notes.append(
            f"the held-out {group_noun(ctx.task)} have now scored {looks} chosen configs (the study was extended"
            " and its best trial changed): the latest score is no longer untouched by the choice"
        )
    return run_id
