"""The HTML report of a finished study, and parameter importances."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from questlab.tasks.grouping import group_noun
from questlab.tuning.common import ATTR_CANNOT_FIT, COUNTED, fmt_value
from questlab.tuning.context import StudyContext, TuneResult
from questlab.tuning.space import SearchSpace
from questlab.tuning.storage import redact


def _trial_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        steps = t.intermediate_values
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "why": t.user_attrs.get(ATTR_CANNOT_FIT, ""),  # a FAIL whose settings cannot fit: the reason
                # Optuna gives a pruned trial its last intermediate value: not a CV, shown apart
                "value": t.value if t.state == TrialState.COMPLETE and t.value is not None else math.nan,
                "last_step": max(steps) if steps else 0,
                "last_mean": steps[max(steps)] if steps else math.nan,
                "seconds": t.duration.total_seconds() if t.duration else math.nan,
                "run_id": t.user_attrs.get("run_id", ""),
                **{f"p:{k}": v for k, v in t.params.items()},
            }
        )
    return pd.DataFrame(rows)


def _plot_history(frame: pd.DataFrame, higher_is_better: bool = True) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from questlab.analysis.report import COLORS

    fig, ax = plt.subplots(figsize=(8, 3.4))
    done = frame[frame["state"] == "COMPLETE"].sort_values("number")
    pruned = frame[frame["state"] == "PRUNED"]
    ax.scatter(done["number"], done["value"], color=COLORS["question"], s=22, label="complete: CV", zorder=3)
    if len(pruned):
        label = "pruned: mean of the folds done"
        ax.scatter(pruned["number"], pruned["last_mean"], marker="x", color=COLORS["grey"], s=22, label=label)
    if len(done):
        ax.step(
            done["number"],
            (done["value"].cummax() if higher_is_better else done["value"].cummin()),
            where="post",
            color=COLORS["ok"],
            label="best so far",
        )
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean Spearman")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("optimisation history")
    return fig


def _plot_folds(study: optuna.Study) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from questlab.analysis.report import COLORS

    fig, ax = plt.subplots(figsize=(8, 3.4))
    for t in study.get_trials(deepcopy=False, states=COUNTED):
        steps = sorted(t.intermediate_values.items())
        if not steps:
            continue
        x, y = zip(*steps, strict=True)
        if t.state == TrialState.PRUNED:
            ax.plot(x, y, ls="--", color=COLORS["grey"], lw=0.8, marker="x", ms=4)
        else:
            ax.plot(x, y, color=COLORS["question"], lw=0.8, alpha=0.7, marker="o", ms=2)
    ax.set_xlabel("folds done")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean Spearman of the folds done")
    ax.set_title("per-fold progress (grey dashed: pruned)")
    return fig


def _plot_params(frame: pd.DataFrame, space: SearchSpace) -> Any:
    import matplotlib.pyplot as plt

    from questlab.analysis.report import COLORS

    keys = list(space.params)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    done = frame[frame["state"] == "COMPLETE"]
    for ax, key in zip(axes[0], keys, strict=True):
        col = f"p:{key}"
        if col in done:
            xs = done[col] if space.params[key].kind != "choice" else done[col].astype(str)
            ax.scatter(xs, done["value"], color=COLORS["question"], s=14)
            if space.params[key].log:
                ax.set_xscale("log")
        ax.set_title(key, fontsize=8)
    axes[0][0].set_ylabel("CV")
    fig.suptitle("CV against each parameter (complete trials)", fontsize=10, y=1.04)
    return fig


def _plot_importances(importances: Mapping[str, float]) -> Any:
    import matplotlib.pyplot as plt

    from questlab.analysis.report import COLORS

    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items], color=COLORS["question"])
    ax.set_xlabel("importance (fANOVA, share of the CV variance over complete trials)")
    ax.set_title("parameter importance")
    return fig


def param_importances(study: optuna.Study, seed: int = 0) -> tuple[dict[str, float] | None, str]:
    """fANOVA importances over complete trials, or None and why not (too few trials, ...)."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 3:
        return None, f"only {len(done)} complete trial(s): too few to estimate parameter importance"
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator)), ""
    except Exception as exc:  # e.g. every complete trial drew the same values
        return None, f"parameter importance could not be estimated ({type(exc).__name__}: {exc})"


def study_report(ctx: StudyContext, result: TuneResult) -> str:
    """The HTML report of a finished study: summary, history, per-fold progress, importances, trials."""
    from questlab.analysis.report import escape, figure_tag, html_page, html_table

    frame = _trial_frame(ctx.study)
    lo, hi = result.best_cv_ci
    rows = [
        ["study", escape(result.study_name)],
        ["parent run", f"<code>{escape(result.parent_run_id)}</code>"],
        ["storage", f"<code>{escape(redact(ctx.storage_url))}</code>"],
        ["trials", f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed"],
        ["best trial", f"{result.best_trial} (run <code>{escape(result.best_run_id)}</code>)"],
        ["best CV (chosen among trials: optimistic)", f"{result.best_cv:.4f} (95% CI {lo:.4f}..{hi:.4f})"],
    ]
    if result.holdout_score is not None and result.holdout_ci is not None:
        hlo, hhi = result.holdout_ci
        held = int((ctx.split["fold"] == 0).sum()) if ctx.split is not None else 0
        rows += [
            [
                f"untouched {group_noun(ctx.task)} ({ctx.holdout:.0%}, {held} rows)",
                f"<b>{result.holdout_score:.4f}</b> (95% CI {hlo:.4f}..{hhi:.4f}), "
                f"run <code>{escape(result.holdout_run_id)}</code>",
            ],
            [
                "CV minus untouched",
                f"{result.best_cv - result.holdout_score:+.4f} (selection optimism and noise; the held-out model "
                f"trains on all tuning rows, a fold model on {ctx.base.folds.n_splits - 1}/{ctx.base.folds.n_splits})",
            ],
        ]
    notes = "".join(f"<p>{escape(n)}</p>" for n in result.notes)
    sections = [("Summary", html_table(["", ""], rows) + notes)]
    sections.append(
        ("Optimisation history", figure_tag(_plot_history(frame, ctx.metric.higher_is_better), "optimisation history"))
    )
    sections.append(("Per-fold progress and pruning", figure_tag(_plot_folds(ctx.study), "intermediate values")))
    importances, why = param_importances(ctx.study, seed=ctx.seed)
    sections.append(
        (
            "Parameter importance",
            figure_tag(_plot_importances(importances), "parameter importance")
            if importances
            else f'<p class="muted">{escape(why)}</p>',
        )
    )
    sections.append(("Parameters", figure_tag(_plot_params(frame, ctx.space), "CV against each parameter")))
    keys = list(ctx.space.params)
    table_rows = [
        [
            str(r["number"]),
            escape(r["state"] + (f": {r['why']}" if r["why"] else "")),
            "" if math.isnan(r["value"]) else f"{r['value']:.4f}",
            f"{r['last_step']} ({r['last_mean']:.4f})" if r["last_step"] else "",
            *[escape(fmt_value(r.get(f"p:{k}", ""))) for k in keys],
            "" if math.isnan(r["seconds"]) else f"{r['seconds']:.1f}",
            f"<code>{escape(str(r['run_id'])[:8])}</code>",
        ]
        for _, r in frame.sort_values("number").iterrows()
    ]
    sections.append(
        (
            "Trials",
            html_table(
                ["trial", "state", "CV", "folds done (mean)", *[k.rsplit(".", 1)[-1] for k in keys], "s", "run"],
                table_rows,
            ),
        )
    )
    sections.append(("Best config", f"<pre>{escape(result.best_config.to_yaml())}</pre>"))
    sections.append(("Search space", f"<pre>{escape(ctx.space.to_yaml())}</pre>"))
    return html_page(f"questlab study {result.study_name}", sections)
