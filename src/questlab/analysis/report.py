"""One self-contained HTML page per run (and per comparison): plots, verdicts, findings.

Plots are matplotlib figures embedded as base64 PNG ``<img>`` tags; there is no script, font or
stylesheet to fetch, so the page opens offline and can be mailed or archived as one file. The
run report is written into the run folder as ``report.html``, which is the run's MLflow
artifact folder, so ``mlflow ui`` lists it with the run.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import numpy as np
import pandas as pd

from questlab.analysis.checks.targets import imbalance_table
from questlab.analysis.compare import Comparison
from questlab.analysis.diagnose import Diagnosis, RunArtifacts
from questlab.analysis.figures import (
    COLORS,
    figure_tag,
    plot_distributions,
    plot_fold_scores,
    plot_learning_curves,
    plot_target_scores,
    plot_truncation,
    plt,
)
from questlab.analysis.findings import Finding
from questlab.analysis.groups import MIN_ROWS, N_WEAKEST, group_scores, n_small_groups, timings_table
from questlab.analysis.verdict import by_severity
from questlab.metrics import get_metric
from questlab.recording import direction_note, score_label
from questlab.rundir import TAG_COMPLETE, TAG_MODEL

N_DISTRIBUTIONS = 4
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td:not(:last-child){white-space:nowrap}.sev{font-weight:bold;text-transform:uppercase;font-size:.8em}
.error{color:#b00020}.warning{color:#b26a00}.info{color:#1f5fa8}.ok{color:#2e7d32}
.muted{color:#777}img{max-width:100%;display:block;margin:8px 0}pre{background:#f7f7f7;padding:8px;overflow:auto}
"""


# --- figures of a comparison -----------------------------------------------------------------
def plot_deltas(frame: pd.DataFrame, title: str, horizontal: bool) -> plt.Figure:
    """B minus A with paired 95% intervals; green where B is better, red where A is."""
    f = frame.sort_values("delta") if horizontal else frame
    err = np.vstack([(f["delta"] - f["low"]).clip(lower=0), (f["high"] - f["delta"]).clip(lower=0)])
    colors = [
        COLORS["ok"] if v == "B better" else COLORS["bad"] if v == "A better" else COLORS["grey"] for v in f["verdict"]
    ]
    labels = [str(x) for x in f.index]
    if horizontal:
        fig, ax = plt.subplots(figsize=(9, 0.28 * len(f) + 1))
        ax.barh(labels, f["delta"], xerr=err, color=colors, ecolor="#333", capsize=2)
        ax.axvline(0, color="#333", lw=0.8)
    else:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(labels, f["delta"], yerr=err, color=colors, ecolor="#333", capsize=3)
        ax.axhline(0, color="#333", lw=0.8)
        ax.set_xlabel("fold")
    ax.set_title(title + " (B - A; green: B better, red: A better, grey: unclear)", fontsize=10)
    return fig


# --- HTML -------------------------------------------------------------------------------------
def escape(x: object) -> str:
    return html.escape(str(x))


def html_table(header: list[str] | None, rows: list[list[object]]) -> str:
    """A table of already-escaped cells; ``header`` None for a key/value table without a header row."""
    head = "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def verdicts_html(verdicts: list) -> str:
    rows = [
        [f'<span class="sev {v.severity}">{v.severity}</span>', f"<code>{escape(v.code)}</code>", escape(v.message)]
        for v in by_severity(verdicts)
    ]
    return html_table(["severity", "code", "verdict"], rows)


def findings_html(findings: list[Finding]) -> str:
    if not findings:
        return '<p class="muted">No findings about this run yet: <code>questlab finding add "..." --run ID</code></p>'
    rows = [
        [
            dt.datetime.fromtimestamp(f.time).strftime("%Y-%m-%d %H:%M"),
            escape(", ".join(r[:8] for r in f.runs)),
            escape(", ".join(f.tags)),
            escape(f.text),  # last: the only column that wraps
        ]
        for f in findings
    ]
    return html_table(["when", "runs", "tags", "finding"], rows)


def html_page(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n<h1>{escape(title)}</h1>\n"
        f'<p class="muted">written by questlab {dt.datetime.now():%Y-%m-%d %H:%M}</p>\n{body}</body></html>\n'
    )


def _header(run: RunArtifacts) -> str:
    r = run.record
    cv = r.metrics.get("cv_score")
    ci = f" (95% CI {r.metrics['cv_ci_low']:.4f}..{r.metrics['cv_ci_high']:.4f})" if "cv_ci_low" in r.metrics else ""
    rows = [
        ["run", f"<code>{escape(r.run_id)}</code>"],
        ["model", escape(r.tags.get(TAG_MODEL, "?")) + f" ({escape(r.kind)})"],
        ["status", escape(r.status) + (" (partial)" if r.tags.get(TAG_COMPLETE) == "false" else "")],
        ["task", escape(f"{run.task.name} (metric {run.task.metric})")],
        [
            f"CV {escape(score_label(run.task))}",
            (f"{cv:.4f}" if cv is not None else "none recorded") + escape(ci + direction_note(run.task)),
        ],
        ["folds", escape(run.meta.get("folds_selected", "?"))],
        ["started", dt.datetime.fromtimestamp(r.start_time).strftime("%Y-%m-%d %H:%M")],
    ]
    return html_table(None, [[f"<b>{k}</b>", v] for k, v in rows])


NO_EPOCHS = "The model recorded no epochs (one fit per fold)."
NO_BUDGET = "No token budget recorded: nothing was truncated."


def _figure_or(fig: plt.Figure | None, alt: str, otherwise: str) -> str:
    return figure_tag(fig, alt) if fig is not None else f'<p class="muted">{escape(otherwise)}</p>'


AUC_NOTE = (
    "AUC rare vs common: for each target, the rows whose rating is not the most common one are the"
    " rare rows; the AUC is the chance that a random rare row is predicted further from the common"
    " rating (in the rare rows' direction) than a random common row: 0.5 is chance, 1.0 means every"
    " rare row is ranked apart. It shows whether an imbalanced target is ranked at all."
)


def _imbalance_section(diag: Diagnosis, y_true: np.ndarray, y_pred: np.ndarray) -> str:
    table = imbalance_table(y_true, y_pred).join(diag.intervals).sort_values("majority_share", ascending=False)
    rows = [
        [
            escape(t),
            f"{r['majority_share']:.1%}",
            r["distinct"],
            "n/a" if np.isnan(r["spearman"]) else f"{r['spearman']:.3f}",
            "n/a" if np.isnan(r["low"]) else f"[{r['low']:.3f}, {r['high']:.3f}]",
            "n/a" if np.isnan(r["auc_rare_vs_common"]) else f"{r['auc_rare_vs_common']:.3f}",
            escape(r["status"]),
        ]
        for t, r in table.iterrows()
    ]
    header = ["target", "most common rating", "distinct", "Spearman", "95% CI", "AUC rare vs common", "status"]
    return f"<p>{escape(AUC_NOTE)}</p>" + html_table(header, rows)


def _seconds(x: float) -> str:
    return "" if pd.isna(x) else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def timings_html(run: RunArtifacts) -> str:
    """Per-fold seconds of each recorded step, their sum, and the run's total wall time."""
    frame, total = timings_table(run)
    total_line = (
        f"<p>Run total (wall clock, from start to the last file written): {total:.1f} s.</p>"
        if total is not None
        else '<p class="muted">No total time recorded (the run did not finish).</p>'
    )
    if frame.empty:
        return total_line + '<p class="muted">No per-fold timings recorded.</p>'
    cols = list(frame.columns)
    rows = [[str(k), *(_seconds(r[c]) for c in cols)] for k, r in frame.iterrows()]
    rows.append(["<b>sum</b>", *(f"<b>{frame[c].sum():.1f}</b>" for c in cols)])
    parallel = (run.meta.get("config") or {}).get("parallel_folds", 1) > 1
    note = "Folds fitted in parallel overlap, so their sum can exceed the total." if parallel and len(frame) > 1 else ""
    return (
        total_line
        + html_table(["fold", *(c.removesuffix("_s") + " (s)" for c in cols)], rows)
        + (f'<p class="muted">{escape(note)}</p>' if note else "")
    )


def weakest_groups_html(run: RunArtifacts, inputs: pd.DataFrame | None) -> str:
    """Mean out-of-fold Spearman per category and the weakest hosts, groups of >= MIN_ROWS rows only."""
    if inputs is None:
        return (
            '<p class="muted">The run folder keeps no feature column (QUEST: host, category): give the run\'s'
            " train file (<code>questlab diagnose RUN --train train.csv</code>) to see them.</p>"
        )
    if run.scored() is None:
        return '<p class="muted">No usable out-of-fold predictions.</p>'
    out = [
        f"<p>Mean Spearman over the targets defined inside each group (a target constant inside a group"
        f" has no Spearman there and is left out, not counted 0), on the out-of-fold rows. Only groups"
        f" with at least {MIN_ROWS} rows are shown: smaller ones swing by &plusmn;0.1 or more from noise alone.</p>"
    ]
    task = run.task
    metric = task.scorer
    label = score_label(metric)
    # the first feature in full (QUEST: categories), the others' weakest values (QUEST: hosts)
    shown_features = [(c, _plural(c), None) if i == 0 else (c, f"weakest {_plural(c)}", N_WEAKEST)
                      for i, c in enumerate(task.features)]  # fmt: skip
    for column, title, n in shown_features:
        table = group_scores(run, inputs, column)
        small = n_small_groups(run, inputs, column)
        shown = table if n is None else table.head(n)
        rows = [
            [
                escape(v),
                int(r["rows"]),
                int(r["questions"]),
                f"{int(r['targets_defined'])}/{task.n_targets}",
                _spearman(r[metric.column]),
            ]
            for v, r in shown.iterrows()
        ]
        left = f" ({small} with fewer than {MIN_ROWS} rows left out)" if small else ""
        out.append(f"<h3>{escape(title)}{escape(left)}</h3>")
        out.append(html_table([column, "rows", "questions", "targets defined", label], rows))
    return "".join(out)


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def _spearman(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3f}"


def _cv(run: RunArtifacts) -> tuple[float, float, float] | None:
    m = run.record.metrics
    if all(k in m for k in ("cv_score", "cv_ci_low", "cv_ci_high")):
        return m["cv_score"], m["cv_ci_low"], m["cv_ci_high"]
    return None


def run_report(diag: Diagnosis, findings: list[Finding], inputs: pd.DataFrame | None = None) -> str:
    """The HTML of a run's report: summary, verdicts, findings, then the plots and tables.

    ``inputs`` (qa_id, host, category of the run's train rows; ``groups.read_inputs``) adds the
    per-category and weakest-host scores.
    """
    run = diag.run
    sections = [("Summary", _header(run)), ("Verdicts", verdicts_html(diag.verdicts))]
    sections.append(("Findings about this run", findings_html(findings)))
    scored = run.scored()
    if scored is not None and diag.intervals is not None and not run.task.scorer.rank_based:
        sections.append(("Score per target", _metric_table(diag)))
    elif scored is not None and diag.intervals is not None:
        y_true, y_pred = scored
        folds = run.oof["fold"].to_numpy()
        sections.append(
            ("Score per target", figure_tag(plot_target_scores(diag.intervals, run.task), "per-target scores"))
        )
        fold_fig = plot_fold_scores(y_true, y_pred, folds, _cv(run))
        sections.append(("Score per fold", figure_tag(fold_fig, "per-fold scores")))
        worst = list(diag.intervals["spearman"].fillna(-np.inf).sort_values().index[:N_DISTRIBUTIONS])
        sections.append(
            (
                "Predictions vs truth",
                figure_tag(plot_distributions(y_true, y_pred, worst, run.task), "prediction distributions"),
            )
        )
        sections.append(("Imbalance next to score", _imbalance_section(diag, y_true, y_pred)))
    else:
        sections.append(
            (
                "Scores",
                '<p class="muted">No usable out-of-fold predictions (missing, or NaN: see the verdicts):'
                " nothing to plot.</p>",
            )
        )
    sections.append(("Weakest feature values (QUEST: categories, hosts)", weakest_groups_html(run, inputs)))
    sections.append(("Learning curves", _figure_or(plot_learning_curves(run.fit_logs), "learning curves", NO_EPOCHS)))
    sections.append(("Truncation", _figure_or(plot_truncation(run.fit_logs), "truncation histograms", NO_BUDGET)))
    sections.append(("Timings", timings_html(run)))
    if (run.dir / "config.yaml").exists():
        sections.append(("Config", f"<pre>{escape((run.dir / 'config.yaml').read_text())}</pre>"))
    return html_page(f"questlab run {run.record.name} ({run.record.run_id[:8]})", sections)


def _metric_table(diag: Diagnosis) -> str:
    """Per-target values of an error metric with their 95% intervals, weakest first."""
    metric = diag.run.task.scorer
    t = diag.intervals.sort_values(metric.column, ascending=metric.higher_is_better)
    rows = [
        [escape(k), f"{r[metric.column]:.4f}", f"{r['low']:.4f}..{r['high']:.4f}", escape(r["status"])]
        for k, r in t.iterrows()
    ]
    note = f"{metric.name}: {'higher' if metric.higher_is_better else 'lower'} is better; weakest first"
    return html_table(["target", metric.column, "95% CI", "status"], rows) + f'<p class="muted">{escape(note)}</p>'


def compare_report(cmp: Comparison, findings: list[Finding]) -> str:
    """The HTML of a comparison: overall delta, per-target and per-fold deltas, config diff."""
    o = cmp.overall
    summary = html_table(
        ["", "A", "B", "B - A", "95% CI (paired)", "verdict"],
        [
            [
                escape(score_label(get_metric(cmp.metric)) + direction_note(get_metric(cmp.metric))),
                f"{o['a']:.4f}",
                f"{o['b']:.4f}",
                f"{o['delta']:+.4f}",
                f"[{o['low']:+.4f}, {o['high']:+.4f}]",
                escape(o["verdict"]),
            ]
        ],
    )
    runs = html_table(
        ["", "run", "name", "model"],
        [
            [k, f"<code>{escape(r.run_id)}</code>", escape(r.name), escape(r.tags.get(TAG_MODEL, "?"))]
            for k, r in (("A", cmp.a), ("B", cmp.b))
        ],
    )
    sections = [
        (
            "Runs",
            runs
            + f'<p class="muted">{cmp.n_rows} shared out-of-fold rows, {cmp.n_boot} paired resamples of groups</p>',
        ),
        ("Overall", summary + "".join(f"<p>{escape(n)}</p>" for n in cmp.notes)),
        ("Per target", figure_tag(plot_deltas(cmp.per_target, "per-target delta", True), "per-target deltas")),
    ]
    if cmp.per_fold is not None:
        sections.append(("Per fold", figure_tag(plot_deltas(cmp.per_fold, "per-fold delta", False), "per-fold deltas")))
    diff_rows = [[f"<code>{escape(k)}</code>", escape(a), escape(b)] for k, a, b in cmp.config_diff]
    sections.append(
        ("Config differences", html_table(["key", "A", "B"], diff_rows) if diff_rows else "<p>identical</p>")
    )
    sections.append(("Findings about these runs", findings_html(findings)))
    return html_page(
        f"questlab compare {cmp.a.name} ({cmp.a.run_id[:8]}) vs {cmp.b.name} ({cmp.b.run_id[:8]})", sections
    )


def write(html_text: str, path: Path) -> Path:
    """Write a report; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_text, encoding="utf-8")
    return path
