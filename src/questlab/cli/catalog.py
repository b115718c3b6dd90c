"""CLI command that describes what a config can say: ``questlab models [FAMILY]``.

Generated from the families' typed params (:mod:`questlab.models.catalog`), so it never drifts
from what a config's ``model.params`` accepts.
"""

from typing import Annotated

import typer

from questlab.cli.common import examples, guard


@guard
def models(
    family: Annotated[str | None, typer.Argument(help="a model family: its parameters (none: every family)")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
) -> None:
    """The model families, or one family's parameters: type, default and meaning."""
    from rich.console import Console
    from rich.table import Table

    from questlab.models.catalog import families, parameters

    frame = families() if family is None else parameters(family).drop(columns="family")
    if json_:
        typer.echo(frame.to_json(orient="records", indent=1))
        return
    console = Console()
    if not console.is_terminal:  # piped or captured: wide enough that each parameter stays on few lines
        console = Console(width=160)
    if family is None:
        table = Table("family", "parameters", "what it is", title="model families (model.name in a config)")
        for r in frame.itertuples():
            table.add_row(r.family, str(r.parameters), r.summary)
        console.print(table)
        console.print("questlab models FAMILY: its parameters (model.params in a config)")
        return
    table = Table(title=f"model {family!r}: model.params (a run config's keys, or --set model.params.KEY=VALUE)")
    table.add_column("parameter", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("default", overflow="fold")
    table.add_column("meaning")
    for r in frame.itertuples():
        table.add_row(r.parameter, r.type, r.default, r.meaning)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``models`` to the questlab CLI."""
    app.command(
        "models", epilog=examples("questlab models", "questlab models tfidf", "questlab models embedding --json")
    )(models)
