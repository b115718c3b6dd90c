"""CLI command that scores a finished run (or a bundle) on a labelled file: ``questlab evaluate``.

One line (mean Spearman, its 95% question-bootstrap interval, rows) on stdout, then the per-target
table; ``--json`` prints the same as JSON instead.
"""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, fail, guard, open_store


@guard
def evaluate(
    run_or_bundle: Annotated[
        str, typer.Argument(metavar="RUN|BUNDLE", help="a recorded run (id or prefix) or a bundle folder")
    ],
    input: Annotated[Path, typer.Option("--input", help="a labelled CSV (train format: the task's targets)")],
    bootstrap: Annotated[int, typer.Option(help="group resamples for the 95% interval (0: none)", min=0)] = 200,
    json_: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    store: StoreOpt = None,
) -> None:
    """Score a run's (or a bundle's) predictions on a labelled file against its own targets."""
    from questlab.evaluation import evaluate as score
    from questlab.evaluation import read_labelled
    from questlab.strictjson import strict_json

    if run_or_bundle is None or input is None:
        fail("give a RUN_ID (or a bundle folder) and --input (a labelled CSV)")
    from questlab.rundir import read_task

    # the task first (a small read of task.json), then input mistakes, before any model is loaded
    is_bundle = Path(run_or_bundle).is_dir()
    if is_bundle:
        task = read_task(Path(run_or_bundle))
    else:
        from questlab.api import Run

        st = open_store(store, create=False)
        run = Run(st.get(run_or_bundle), st)
        task = run.task
    data = read_labelled(input, task)
    trained_on = None
    if is_bundle:
        from questlab.export import load_bundle

        predictor = load_bundle(Path(run_or_bundle))
    else:
        predictor, trained_on = run.predictor, run.trained_on()
    result = score(predictor, data, n_boot=bootstrap, trained_on=trained_on, task=task)
    if json_:
        typer.echo(strict_json(result.to_dict()))
        return
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(result.summary())
    from rich.console import Console
    from rich.table import Table

    column = task.scorer.column  # the per-target value: spearman (QUEST), rmse
    table = Table("target", column.capitalize() if task.scorer.rank_based else column, "status")
    for target, r in result.per_target.iterrows():
        value = r[column]
        table.add_row(target, "-" if value != value else f"{value:.4f}", r["status"])
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the questlab CLI."""
    app.command(
        "evaluate",
        epilog=examples(
            "questlab evaluate RUN_ID --input LABELLED_CSV",
            "questlab evaluate BUNDLE_DIR --input LABELLED_CSV --bootstrap 1000 --json",
        ),
    )(evaluate)
