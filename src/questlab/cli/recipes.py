"""CLI command ``questlab recipe``: members on shared folds -> ensemble run -> submission.

Progress (one line per member: reused / resumed / fitted, with its CV) goes to stderr; the
ensemble run's id is alone on the last line of stdout, like ``run``.
"""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, guard, open_store, say
from questlab.cli.reports import print_ensemble_report
from questlab.cli.running import found_results


def _print_summary(outcome) -> None:
    """The members table, then the ensemble report's brief form and where the submission went."""
    from rich.table import Table

    table = Table("member", "run", "done", "CV (95% CI)", "time", title=f"recipe {outcome.recipe}")
    for m in outcome.members:
        table.add_row(
            m.name, m.run_id[:8], m.action, f"{m.cv:.4f} ({m.ci[0]:.4f}..{m.ci[1]:.4f})", f"{m.seconds:.0f} s"
        )
    closing = [] if outcome.submission is None else [f"submission written to {outcome.submission}"]
    print_ensemble_report(
        outcome.report, lead=[table], closing=closing, recipe_run=(outcome.ensemble_id, outcome.seconds["total"])
    )


@guard
def recipe(
    name: Annotated[str, typer.Argument(help="a built-in recipe (fast, fast-minilm, best) or a recipe YAML file")],
    train: Annotated[Path, typer.Option(help="labelled train CSV")],
    test: Annotated[Path | None, typer.Option(help="test CSV to predict")] = None,
    submission: Annotated[Path | None, typer.Option(help="write the ensemble's test predictions here")] = None,
    task: Annotated[
        str | None,
        typer.Option(help="the task: a built-in name (quest, ell) or a task spec YAML; picks the recipe's members"),
    ] = None,
    time_limit: Annotated[
        str | None,
        typer.Option(
            "--time-limit",
            help="wall-clock budget (90s, 15m, 1h30m; plain numbers are seconds): members that will not fit "
            "are dropped, said before any is fitted",
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Run a recipe: its members (reused / resumed when already recorded), the ensemble, the submission."""
    from questlab.recipes import run_recipe
    from questlab.timebudget import parse_duration

    limit = parse_duration(time_limit, "--time-limit")  # a typo is refused before anything is read
    # The store is opened (created) by run_recipe once the recipe and the data are checked.
    outcome = run_recipe(name, train, test, store=store, submission=submission, say=say, task=task, time_limit=limit)
    _print_summary(outcome)
    found_results(open_store(store, create=False), outcome.ensemble_id)
    typer.echo(outcome.ensemble_id)


def register(app: typer.Typer) -> None:
    """Add ``recipe`` to the questlab CLI."""
    app.command(
        "recipe",
        epilog=examples(
            "questlab recipe fast --train train.csv --test test.csv --submission submission.csv",
            "questlab recipe best --train train.csv --test test.csv --submission submission.csv",
            "questlab recipe RECIPE_YAML --train train.csv --store STORE",
            "questlab recipe fast --train train.csv --time-limit 15m",
            "questlab recipe fast --task ell --train essays.csv --test new.csv --submission sub.csv",
        ),
    )(recipe)
