"""One self-contained HTML page per run (and per comparison): plots, verdicts, findings.

Plots are matplotlib figures embedded as base64 PNG ``<img>`` tags; there is no script, font or
stylesheet to fetch, so the page opens offline and can be mailed or archived as one file. The
run report is written into the run folder as ``report.html``, which is the run's MLflow
artifact folder, so ``mlflow ui`` lists it with the run.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from questlab.analysis.checks.folds import fold_statuses
from questlab.analysis.checks.targets import imbalance_table
from questlab.analysis.compare import Comparison
from questlab.analysis.diagnose import Diagnosis, RunArtifacts
from questlab.analysis.findings import Finding
from questlab.analysis.verdict import by_severity
from questlab.models.base import FitLog
from questlab.schema import QUESTION_TARGETS, TARGETS

N_DISTRIBUTIONS = 4
COLORS = {"question": "#4c72b0", "answer": "#dd8452", "bad": "#c44e52", "ok": "#55a868", "grey": "#999999"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td:not(:last-child){white-space:nowrap}.sev{font-weight:bold;text-transform:uppercase;font-size:.8em}
.error{color:#b00020}.warning{color:#b26a00}.info{color:#1f5fa8}.ok{color:#2e7d32}
.muted{color:#777}img{max-width:100%;display:block;margin:8px 0}pre{background:#f7f7f7;padding:8px;overflow:auto}
"""


def figure_tag(fig: plt.Figure, alt: str) -> str:
    """Render a figure to an inline base64 PNG ``<img>`` and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _color(target: str) -> str:
    return COLORS["question"] if target in QUESTION_TARGETS else COLORS["answer"]


# --- figures ----------------------------------------------------------------------------------
def plot_target_scores(intervals: pd.DataFrame) -> plt.Figure:
    """Per-target Spearman with 95% bootstrap intervals, worst at the bottom; undefined ones marked."""
    t = intervals.assign(plot=intervals["spearman"].fillna(0.0)).sort_values("plot")
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(t) + 1))
    y = np.arange(len(t))
    err = np.vstack([(t["plot"] - t["low"]).clip(lower=0), (t["high"] - t["plot"]).clip(lower=0)])
    colors = [_color(x) if s == "ok" else COLORS["bad"] for x, s in zip(t.index, t["status"], strict=True)]
    ax.barh(y, t["plot"], xerr=err, color=colors, ecolor="#333", capsize=2)
    ax.set_yticks(y, [f"{x} ({s})" if s != "ok" else x for x, s in zip(t.index, t["status"], strict=True)])
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_xlabel("Spearman (95% bootstrap interval over questions); red: undefined, counts 0")
    ax.set_title("score per target (blue: question targets, orange: answer targets)")
    return fig


def plot_fold_scores(y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray) -> plt.Figure:
    """Mean Spearman per fold, annotated with the number of constant prediction columns."""
    rho, status = fold_statuses(y_true, y_pred, folds)
    scores = rho.fillna(0.0).mean(axis=1)
    n_undefined = (status != "ok").sum(axis=1)
    fig, ax = plt.subplots(figsize=(6, 3))
    bars = ax.bar([str(k) for k in scores.index], scores, color=COLORS["question"])
    for bar, k in zip(bars, scores.index, strict=True):
        label = f"{scores[k]:.3f}" + (f"\n{n_undefined[k]} undefined" if n_undefined[k] else "")
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    ax.axhline(float(np.median(scores)), color="#333", ls="--", lw=0.8, label="median")
    ax.set_xlabel("fold")
    ax.set_ylabel("mean Spearman")
    ax.set_ylim(min(0.0, float(scores.min())) - 0.02, float(scores.max()) * 1.25 + 0.02)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("score per fold")
    return fig


def plot_distributions(y_true: np.ndarray, y_pred: np.ndarray, targets: list[str]) -> plt.Figure:
    """Histograms of predictions and truth for a few targets: squashed or constant predictions show."""
    fig, axes = plt.subplots(1, len(targets), figsize=(3.2 * len(targets), 2.8), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        j = TARGETS.index(t)
        bins = np.linspace(0, 1, 21)
        ax.hist(y_true[:, j], bins=bins, alpha=0.6, color=COLORS["grey"], label="truth")
        ax.hist(y_pred[:, j], bins=bins, alpha=0.6, color=COLORS["question"], label="prediction")
        ax.set_yscale("log")  # imbalanced targets pile most rows in one bin; log keeps the rest visible
        ax.set_title(t, fontsize=8)
    axes[0][0].legend(fontsize=7)
    axes[0][0].set_ylabel("rows (log)")
    fig.suptitle("prediction vs truth, worst targets", fontsize=10, y=1.04)
    return fig


def plot_learning_curves(fit_logs: dict[int, FitLog]) -> plt.Figure | None:
    """Train and valid loss and score per epoch, one line per fold; None without epochs."""
    curves = {k: log.epochs for k, log in fit_logs.items() if len(log.epochs) >= 2}
    if not curves:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, kind in zip(axes, ("loss", "score"), strict=True):
        for k, epochs in curves.items():
            x = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
            for split, style in (("train", "--"), ("valid", "-")):
                y = [e.get(f"{split}_{kind}", np.nan) for e in epochs]
                if not np.all(np.isnan(y)):
                    ax.plot(x, y, style, marker="o", ms=3, label=f"fold {k} {split}")
        ax.set_xlabel("epoch")
        ax.set_title(kind)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle("learning curves (dashed: train, solid: valid)", fontsize=10)
    return fig


def plot_truncation(fit_logs: dict[int, FitLog]) -> plt.Figure | None:
    """Token-count histograms per text part (first fold that recorded them), with the share cut."""
    log = next((log for log in fit_logs.values() if log.truncation), None)
    if log is None:
        return None
    parts = {p: s for p, s in log.truncation.items() if s.get("tokens_hist")}
    if not parts:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(3.4 * len(parts), 2.8), squeeze=False)
    for ax, (part, s) in zip(axes[0], parts.items(), strict=True):
        edges = np.asarray(s["tokens_hist_edges"])
        ax.bar(edges[:-1], s["tokens_hist"], width=np.diff(edges), align="edge", color=COLORS["question"])
        if s.get("share_cut", 0) > 0:
            ax.axvline(s["mean_kept"], color=COLORS["bad"], ls="--", lw=1, label="mean kept")
            ax.legend(fontsize=7)
        ax.set_title(f"{part}: {s['share_cut']:.0%} cut, -{s['mean_lost_share_when_cut']:.0%} each", fontsize=8)
        ax.set_xlabel("tokens")
    fig.suptitle("text length vs token budget", fontsize=10)
    return fig


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


def html_table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


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
        ["model", escape(r.tags.get("questlab.model", "?")) + f" ({escape(r.kind)})"],
        ["status", escape(r.status) + (" (partial)" if r.tags.get("questlab.complete") == "false" else "")],
        ["CV mean Spearman", (f"{cv:.4f}" if cv is not None else "none recorded") + escape(ci)],
        ["folds", escape(run.meta.get("folds_selected", "?"))],
        ["started", dt.datetime.fromtimestamp(r.start_time).strftime("%Y-%m-%d %H:%M")],
    ]
    return html_table(["", ""], rows)


NO_EPOCHS = "The model recorded no epochs (one fit per fold)."
NO_BUDGET = "No token budget recorded: nothing was truncated."


def _figure_or(fig: plt.Figure | None, alt: str, otherwise: str) -> str:
    return figure_tag(fig, alt) if fig is not None else f'<p class="muted">{escape(otherwise)}</p>'


def run_report(diag: Diagnosis, findings: list[Finding]) -> str:
    """The HTML of a run's report: summary, verdicts, findings, then the plots."""
    run = diag.run
    sections = [("Summary", _header(run)), ("Verdicts", verdicts_html(diag.verdicts))]
    sections.append(("Findings about this run", findings_html(findings)))
    scored = run.scored()
    if scored is not None and diag.intervals is not None:
        y_true, y_pred = scored
        folds = run.oof["fold"].to_numpy()
        sections.append(("Score per target", figure_tag(plot_target_scores(diag.intervals), "per-target scores")))
        sections.append(("Score per fold", figure_tag(plot_fold_scores(y_true, y_pred, folds), "per-fold scores")))
        worst = list(diag.intervals["spearman"].fillna(-np.inf).sort_values().index[:N_DISTRIBUTIONS])
        sections.append(
            ("Predictions vs truth", figure_tag(plot_distributions(y_true, y_pred, worst), "prediction distributions"))
        )
        table = imbalance_table(y_true, y_pred).join(diag.intervals).sort_values("majority_share", ascending=False)
        rows = [
            [
                escape(t),
                f"{r['majority_share']:.1%}",
                r["distinct"],
                "n/a" if np.isnan(r["spearman"]) else f"{r['spearman']:.3f}",
                f"[{r['low']:.3f}, {r['high']:.3f}]",
                "n/a" if np.isnan(r["auc_rare_vs_common"]) else f"{r['auc_rare_vs_common']:.3f}",
                escape(r["status"]),
            ]
            for t, r in table.iterrows()
        ]
        sections.append(
            (
                "Imbalance next to score",
                html_table(
                    ["target", "most common rating", "distinct", "Spearman", "95% CI", "AUC rare vs common", "status"],
                    rows,
                ),
            )
        )
    else:
        sections.append(
            (
                "Scores",
                '<p class="muted">No usable out-of-fold predictions (missing, or NaN: see the verdicts):'
                " nothing to plot.</p>",
            )
        )
    sections.append(("Learning curves", _figure_or(plot_learning_curves(run.fit_logs), "learning curves", NO_EPOCHS)))
    sections.append(("Truncation", _figure_or(plot_truncation(run.fit_logs), "truncation histograms", NO_BUDGET)))
    if (run.dir / "config.yaml").exists():
        sections.append(("Config", f"<pre>{escape((run.dir / 'config.yaml').read_text())}</pre>"))
    return html_page(f"questlab run {run.record.name} ({run.record.run_id[:8]})", sections)


def compare_report(cmp: Comparison, findings: list[Finding]) -> str:
    """The HTML of a comparison: overall delta, per-target and per-fold deltas, config diff."""
    o = cmp.overall
    summary = html_table(
        ["", "A", "B", "B - A", "95% CI (paired)", "verdict"],
        [
            [
                "mean Spearman",
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
            [k, f"<code>{escape(r.run_id)}</code>", escape(r.name), escape(r.tags.get("questlab.model", "?"))]
            for k, r in (("A", cmp.a), ("B", cmp.b))
        ],
    )
    sections = [
        (
            "Runs",
            runs
            + f'<p class="muted">{cmp.n_rows} shared out-of-fold rows, {cmp.n_boot} paired resamples of questions</p>',
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
