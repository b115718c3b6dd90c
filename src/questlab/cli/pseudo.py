"""CLI command for pseudo-labels (``questlab pseudo-label``); a student uses them with ``run --pseudo``."""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, fail, guard, open_store, say


@guard
def pseudo_label(
    teacher: Annotated[str, typer.Argument(help="a finished CV run with all its folds (id or unique prefix)")],
    unlabelled: Annotated[Path, typer.Option("--unlabelled", help="test-format CSV of rows to label (no targets)")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="the pseudo-label CSV to write (a .json goes beside it)")
    ],
    chunk_rows: Annotated[int, typer.Option(help="rows read and labelled at a time", min=1)] = 5_000,
    store: StoreOpt = None,
) -> None:
    """Label unlabelled rows with each fold model of a teacher run (leak-free pseudo-labels).

    Writes the mean label and each teacher fold's label per pair; a student run given
    `--pseudo FILE` on the teacher's folds trains fold k on teacher fold k's labels only.
    """
    from questlab.csvfile import check_not_an_input, check_output_file
    from questlab.pseudo import sidecar_path
    from questlab.teacher import pseudo_label as make

    if unlabelled is None or output is None:
        fail("give --unlabelled (a test-format CSV) and -o/--output (the pseudo-label CSV to write)")
    check_output_file("--output", output, "pseudo.csv")  # before any work, as predict --output is
    check_not_an_input("--output", output, {"--unlabelled": unlabelled})
    check_not_an_input(f"--output {output}: its sidecar", sidecar_path(output), {"--unlabelled": unlabelled})
    meta = make(open_store(store, create=False), teacher, unlabelled, output, chunk_rows=chunk_rows, say=say)
    typer.echo(f"teacher {meta.teacher_run}, folds {meta.folds}, {meta.rows} rows -> {output}", err=True)
    typer.echo(str(sidecar_path(output)))


def register(app: typer.Typer) -> None:
    """Add ``pseudo-label`` to the questlab CLI."""
    app.command(
        "pseudo-label",
        epilog=examples(
            "questlab pseudo-label TEACHER_RUN_ID --unlabelled test.csv -o pseudo.csv",
            "questlab run tfidf --train train.csv --pseudo pseudo.csv --set folds.from_run=TEACHER_RUN_ID",
        ),
    )(pseudo_label)
