"""CLI command ``questlab recipe``: members on shared folds -> ensemble run -> submission.

No ``from __future__ import annotations`` here: typer reads the annotations of the commands,
which are defined inside ``register`` and would not resolve as strings.

Progress (one line per member: reused / resumed / fitted, with its CV) goes to stderr; the
ensemble run's id is alone on the last line of stdout, like ``run``.
"""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, fold_mean_lines, guard, open_store


def _print_summary(outcome) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("member", "run", "done", "CV (95% CI)", "time", title=f"recipe {outcome.recipe}")
    for m in outcome.members:
        table.add_row(
            m.name, m.run_id[:8], m.action, f"{m.cv:.4f} ({m.ci[0]:.4f}..{m.ci[1]:.4f})", f"{m.seconds:.0f} s"
        )
    r = outcome.report

    def gain(d: dict) -> str:
        ci = f" ({d['ci_low']:+.4f}..{d['ci_high']:+.4f})" if "ci_low" in d else ""
        return f"{d['gain']:+.4f}{ci}"

    console = Console(stderr=True)
    console.print(table)
    if "question_share_nested_gain" in r:
        console.print(f"question share, nested gain {gain(r['question_share_nested_gain'])}")
    if "postprocess_nested_gain" in r:
        console.print(f"post-processing, nested gain {gain(r['postprocess_nested_gain'])}")
    console.print(
        f"[bold]ensemble run {outcome.ensemble_id[:8]}: nested CV {r['nested_score']:.4f}, "
        f"gain over the best member {gain(r['nested_gain'])}[/] (in-sample {r['in_sample_score']:.4f}, not a gain); "
        f"{outcome.seconds['total']:.0f} s"
    )
    for line in fold_mean_lines(r):
        console.print(line)
    if outcome.submission is not None:
        console.print(f"submission written to {outcome.submission}")


def register(app: typer.Typer) -> None:
    """Add ``recipe`` to the questlab CLI."""

    @app.command()
    @guard
    def recipe(
        name: Annotated[str, typer.Argument(help="a built-in recipe (fast, fast-minilm, best) or a recipe YAML file")],
        train: Annotated[Path, typer.Option(help="labelled train CSV")],
        test: Annotated[Path | None, typer.Option(help="test CSV to predict")] = None,
        submission: Annotated[Path | None, typer.Option(help="write the ensemble's test predictions here")] = None,
        store: StoreOpt = None,
    ) -> None:
        """Run a recipe: its members (reused / resumed when already recorded), the ensemble, the submission."""
        from questlab.recipes import run_recipe

        outcome = run_recipe(name, train, test, store=open_store(store), submission=submission, say=_say)
        _print_summary(outcome)
        typer.echo(outcome.ensemble_id)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)
