"""The ensemble report as the CLI prints it, on stderr: the nested (honest) gains first, in-sample beside them.

``postprocess`` and ``ensemble`` print the whole report; ``recipe`` prints its brief form under the
members table. rich is imported when a report is printed, not with the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from questlab.cli.common import fold_mean_lines

if TYPE_CHECKING:
    from rich.console import RenderableType

    from questlab.ensemble.report import EnsembleReport


def gain_text(d: dict, ci_label: str = "95% CI ") -> str:
    """A gain and, when the report has one, its interval: ``+0.0123 (95% CI +0.0050..+0.0190)``."""
    ci = f" ({ci_label}{d['ci_low']:+.4f}..{d['ci_high']:+.4f})" if "ci_low" in d else ""
    return f"{d['gain']:+.4f}{ci}"


def print_ensemble_report(
    report: EnsembleReport,
    *,
    lead: Sequence[RenderableType] | None = None,
    closing: Sequence[str] | None = None,
    recipe_run: tuple[str, float] | None = None,
) -> None:
    """Print an ensemble report (of ``build_ensemble`` or ``postprocess_run``) on stderr.

    The whole report by default: each member's CV, the question-share and post-processing gains,
    the nested score and gain, the in-sample ones (labelled optimistic), the per-fold view, the
    notes. ``lead`` replaces the member lines and ``closing`` the notes. ``recipe_run`` (the
    ensemble run's id and the recipe's total seconds) asks for the brief form ``recipe`` prints:
    one line per gain, intervals unlabelled, in-sample in the headline.
    """
    from rich.console import Console

    console = Console(stderr=True)
    brief = recipe_run is not None
    if lead is None:
        lead = [f"member {run_id}: CV {score:.4f}" for run_id, score in report["members"].items()]
    for item in lead:
        console.print(item)

    def gain(d: dict) -> str:
        return gain_text(d, "" if brief else "95% CI ")

    if "question_share_nested_gain" in report:
        share_gain = gain(report["question_share_nested_gain"])
        if brief:
            console.print(f"question share, nested gain {share_gain}")
        else:
            shared = ", ".join(f"{t} {s:g}" for t, s in report["question_share_chosen"].items()) or "none"
            console.print(f"question share gain (nested): {share_gain}; shared: {shared}")
    if "postprocess_nested_gain" in report:
        if brief:
            console.print(f"post-processing, nested gain {gain(report['postprocess_nested_gain'])}")
        else:
            console.print(f"nested score before post-processing: {report['nested_score_before_postprocess']:.4f}")
            console.print(f"post-processing gain (nested): {gain(report['postprocess_nested_gain'])}")
    if recipe_run is not None:
        run_id, seconds = recipe_run
        console.print(
            f"[bold]ensemble run {run_id[:8]}: nested CV {report['nested_score']:.4f}, "
            f"gain over the best member {gain(report['nested_gain'])}[/] "
            f"(in-sample {report['in_sample_score']:.4f}, not a gain); {seconds:.0f} s"
        )
    else:
        console.print(
            f"[bold]nested score {report['nested_score']:.4f}, gain over best member {gain(report['nested_gain'])}[/]"
        )
        console.print(
            f"in-sample score {report['in_sample_score']:.4f}, in-sample gain {gain(report['in_sample_gain'])} "
            "(fitted and scored on the same rows: optimistic, not the gain)"
        )
    for line in fold_mean_lines(report):
        console.print(line)
    for line in closing if closing is not None else [f"note: {note}" for note in report["notes"]]:
        console.print(line)
