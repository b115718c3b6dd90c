"""The run report's matplotlib figures, and how a figure becomes an inline ``<img>``.

Each plot takes plain arrays or fit logs and returns a figure (or None when there is nothing to
draw); ``report.py`` lays them out. They never read a run folder themselves.
"""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # no display: render to memory only

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from questlab.analysis.checks.folds import fold_statuses
from questlab.analysis.curves import split_curves
from questlab.models.base import FitLog
from questlab.tasks import TaskRef, load_task

COLORS = {"question": "#4c72b0", "answer": "#dd8452", "bad": "#c44e52", "ok": "#55a868", "grey": "#999999"}
BUDGET_MULTIPLE = 4  # truncation plots stop at this many token budgets; longer texts share one bin


def figure_tag(fig: plt.Figure, alt: str) -> str:
    """Render a figure to an inline base64 PNG ``<img>`` and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _color(target: str, task: TaskRef = None) -> str:
    """Blue for targets that read the first segment only (QUEST's question targets), orange otherwise."""
    return COLORS["question"] if load_task(task).route_of(target) == "first" else COLORS["answer"]


def plot_target_scores(intervals: pd.DataFrame, task: TaskRef = None) -> plt.Figure:
    """Per-target Spearman with 95% bootstrap intervals, worst at the bottom; undefined ones marked."""
    t = intervals.assign(plot=intervals["spearman"].fillna(0.0)).sort_values("plot")
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(t) + 1))
    y = np.arange(len(t))
    err = np.vstack([(t["plot"] - t["low"]).clip(lower=0), (t["high"] - t["plot"]).clip(lower=0)])
    colors = [_color(x, task) if s == "ok" else COLORS["bad"] for x, s in zip(t.index, t["status"], strict=True)]
    ax.barh(y, t["plot"], xerr=err, color=colors, ecolor="#333", capsize=2)
    ax.set_yticks(y, [f"{x} ({s})" if s != "ok" else x for x, s in zip(t.index, t["status"], strict=True)])
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_xlabel("Spearman (95% bootstrap interval over groups); red: undefined, counts 0")
    routed = any(load_task(task).route_of(x) == "first" for x in t.index)
    ax.set_title("score per target (blue: question targets, orange: answer targets)" if routed else "score per target")
    return fig


def plot_fold_scores(
    y_true: np.ndarray, y_pred: np.ndarray, folds: np.ndarray, cv: tuple[float, float, float] | None = None
) -> plt.Figure:
    """Mean Spearman per fold as points on an axis zoomed to the data (a bar from 0 hides the
    spread), with the CV mean and its 95% interval (``cv``: score, low, high) as a line and band."""
    rho, status = fold_statuses(y_true, y_pred, folds)
    scores = rho.fillna(0.0).mean(axis=1)
    n_undefined = (status != "ok").sum(axis=1)
    x = np.arange(len(scores))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(x, scores.to_numpy(), "o", color=COLORS["question"], ms=7, zorder=3)
    for i, k in enumerate(scores.index):
        label = f"{scores[k]:.3f}" + (f" ({n_undefined[k]} undefined)" if n_undefined[k] else "")
        ax.annotate(label, (i, scores[k]), xytext=(8, 0), textcoords="offset points", va="center", fontsize=8)
    lo, hi = float(scores.min()), float(scores.max())
    if cv is not None:
        mean, low, high = cv
        ax.axhline(mean, color="#333", lw=1, label=f"CV mean {mean:.3f}")
        ax.axhspan(low, high, color=COLORS["grey"], alpha=0.25, lw=0, label=f"95% CI {low:.3f}..{high:.3f}")
        lo, hi = min(lo, low), max(hi, high)
    pad = max(0.25 * (hi - lo), 0.005)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(-0.5, len(scores) - 0.2)  # room on the right for the last label
    ax.set_xticks(x, [str(k) for k in scores.index])
    ax.set_xlabel("fold")
    ax.set_ylabel("mean Spearman (axis zoomed)")
    if cv is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    ax.set_title("score per fold", fontsize=10)
    return fig


def plot_distributions(y_true: np.ndarray, y_pred: np.ndarray, targets: list[str], task: TaskRef = None) -> plt.Figure:
    """Histograms of predictions and truth for a few targets: squashed or constant predictions show."""
    task = load_task(task)
    fig, axes = plt.subplots(1, len(targets), figsize=(3.2 * len(targets), 2.8), squeeze=False)
    for ax, t in zip(axes[0], targets, strict=True):
        j = task.target_names.index(t)
        bins = np.linspace(task.targets[j].low, task.targets[j].high, 21)
        ax.hist(y_true[:, j], bins=bins, alpha=0.6, color=COLORS["grey"], label="truth")
        ax.hist(y_pred[:, j], bins=bins, alpha=0.6, color=COLORS["question"], label="prediction")
        ax.set_yscale("log")  # imbalanced targets pile most rows in one bin; log keeps the rest visible
        ax.set_title(t, fontsize=8)
    axes[0][0].legend(fontsize=7)
    axes[0][0].set_ylabel("rows (log)")
    fig.suptitle("prediction vs truth, worst targets", fontsize=10, y=1.04)
    return fig


def plot_learning_curves(fit_logs: dict[int, FitLog]) -> plt.Figure | None:
    """Train and valid loss and score per epoch: one line per learning curve (a fold's MLP seeds or
    transformer stages are separate curves, never joined), coloured by fold; None without epochs."""
    curves = {k: [c for c in split_curves(log.epochs) if len(c.epochs) >= 2] for k, log in fit_logs.items()}
    curves = {k: cs for k, cs in curves.items() if cs}
    if not curves:
        return None
    palette = plt.get_cmap("tab10")
    per_fold = max(len(cs) for cs in curves.values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, kind in zip(axes, ("loss", "score"), strict=True):
        for i, (k, cs) in enumerate(curves.items()):
            for c in cs:
                x = c.epoch_numbers()
                for split, style in (("train", "--"), ("valid", "-")):
                    y = np.array([e.get(f"{split}_{kind}", np.nan) for e in c.epochs], dtype=float)
                    if np.all(np.isnan(y)):
                        continue
                    first = c is cs[0] and split == "valid"
                    ax.plot(x, y, style, color=palette(i % 10), lw=1, alpha=0.8 if per_fold > 1 else 1,
                            marker="o", ms=2.5, label=f"fold {k}" if first else None)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_title(kind, fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    if not labels:
        handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    what = f", {per_fold} curves per fold (seeds or stages, each its own line)" if per_fold > 1 else ""
    fig.suptitle(f"learning curves (dashed: train, solid: valid{what})", fontsize=10)
    fig.tight_layout()
    return fig


def _clipped_hist(s: dict) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(counts, edges, overflow start): the recorded histogram, cut at a few token budgets.

    Logs that record ``budget`` already hold bins over [0, BUDGET_MULTIPLE x budget] with the last
    bin counting every longer text; older logs hold 20 bins over the full range, merged here past
    the same limit (estimated from the tokens kept) so the budget is not squashed at the left.
    """
    counts = np.asarray(s["tokens_hist"], dtype=float)
    edges = np.asarray(s["tokens_hist_edges"], dtype=float)
    if "budget" in s:
        return counts, edges, s.get("overflow_from")
    limit = BUDGET_MULTIPLE * max(float(s.get("mean_kept", 0.0)), 1.0)
    cut = int(np.searchsorted(edges, limit, side="right"))  # bins that start at or before the limit
    if cut >= len(counts) or cut < 2:
        return counts, edges, None
    merged = np.append(counts[: cut - 1], counts[cut - 1 :].sum())
    return merged, edges[:cut], float(edges[cut - 1])


def plot_truncation(fit_logs: dict[int, FitLog]) -> plt.Figure | None:
    """Token-count histograms per text part (first fold that recorded them): budget line, share cut."""
    log = next((log for log in fit_logs.values() if log.truncation), None)
    if log is None:
        return None
    parts = {p: s for p, s in log.truncation.items() if s.get("tokens_hist")}
    if not parts:
        return None
    fig, axes = plt.subplots(1, len(parts), figsize=(3.6 * len(parts), 3.0), squeeze=False)
    for ax, (part, s) in zip(axes[0], parts.items(), strict=True):
        counts, edges, overflow = _clipped_hist(s)
        widths = np.diff(edges)
        colors = [COLORS["question"]] * len(counts)
        if overflow is not None:
            colors[-1] = COLORS["grey"]
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=colors)
        share, lost = s.get("share_cut", 0.0), s.get("mean_lost_share_when_cut", 0.0)
        budget = s.get("budget")
        if budget and share > 0:  # with nothing cut, the longest text is not a budget
            ax.axvline(budget, color=COLORS["bad"], ls="--", lw=1, label=f"budget {budget:.0f}")
            ax.legend(fontsize=7, loc="upper center")
        ax.set_xlim(0, edges[-1])
        title = f"{part}\n{share:.0%} cut" + (f", a cut text loses {lost:.0%}" if share > 0 else "")
        title += f"\ngrey bin: {overflow:.0f} tokens or more" if overflow is not None else ""
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("tokens per text")
    axes[0][0].set_ylabel("texts")
    fig.suptitle("text length vs token budget (grey: longer texts, one bin)", fontsize=10, y=1.06)
    fig.tight_layout()
    return fig
