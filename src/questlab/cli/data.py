"""CLI command for the data stage: ``questlab check`` validates and summarises a task's CSV (QUEST's by default)."""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import examples, guard


@guard
def check(
    path: Annotated[Path, typer.Argument(help="a train or test CSV of the task (default: QUEST)")],
    task: Annotated[
        str | None, typer.Option("--task", help="a built-in task (quest, ell) or a task spec file (default: quest)")
    ] = None,
) -> None:
    """Validate a task's CSV and print a summary (rows, groups, targets, text lengths)."""
    from rich.console import Console
    from rich.table import Table

    from questlab.data import detect_kind, load, summarize
    from questlab.tasks import load_task

    resolved = load_task(task)
    kind = detect_kind(path, resolved)
    frame = load(path, kind, resolved)
    s = summarize(frame, kind, resolved)
    console = Console()
    console.print(f"[bold]{path}[/bold]: valid {kind} file of task {resolved.name!r}")
    if resolved.groups is None:
        console.print(f"rows {s.rows} (the task has no groups: every row is its own)")
    else:
        keys = " or ".join("+".join(key) for key in resolved.groups.any_of)
        console.print(
            f"rows {s.rows}, unique groups {s.questions} (rows sharing {keys}), rows per group: "
            f"mean {s.answers_per_question['mean']:.2f}, max {s.answers_per_question['max']:.0f}, "
            f"{s.answers_per_question['share_with_several']:.0%} of groups have several"
        )
    if s.blank_bodies:
        console.print(
            f"note: {s.blank_bodies} texts are blank (whitespace only); kept, the segment's first text carries them"
        )
    lengths = Table("text (characters)", "mean", "p50", "p90", "max", title="text lengths")
    for part, row in s.text_lengths.iterrows():
        lengths.add_row(part, *(f"{v:.0f}" for v in row))
    console.print(lengths)
    if s.targets is not None:
        table = Table("target", "distinct", "most common", "its share", "mean", title="targets (imbalance)")
        for target, row in s.targets.iterrows():
            share = row["majority_share"]
            style = "red" if share >= 0.9 else "yellow" if share >= 0.7 else "default"
            table.add_row(
                target,
                str(int(row["distinct"])),  # the row mixes ints and floats: pandas reads it as floats
                f"{row['majority_value']:.3f}",
                f"[{style}]{share:.1%}[/{style}]",
                f"{row['mean']:.3f}",
            )
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``check`` to the questlab CLI."""
    app.command(
        "check",
        epilog=examples("questlab check train.csv", "questlab check test.csv", "questlab check train.csv --task ell"),
    )(check)
