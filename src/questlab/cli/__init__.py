"""The questlab command line: each command parses, calls one function, prints.

Bad input (data, config, unknown run) exits with code 2 and one line on stderr, never a
traceback. ``run`` prints the run id alone on the last line of stdout, so scripts can chain.

Quiet by default: progress bars only when stderr is a terminal (plain lines elsewhere), and
third-party load reports / notices only under ``questlab --verbose ...`` or ``QUESTLAB_VERBOSE=1``.

Every command is a module-level function under ``@guard`` in the module of its stage; each module's
``register(app)`` adds its commands. typer reads the commands' annotations, so those modules import
their types at module level and do not use ``from __future__ import annotations``.
"""

from typing import Annotated

import typer

from questlab.cli import (
    analysis,
    catalog,
    data,
    ensembling,
    evaluating,
    predicting,
    pretrain,
    pseudo,
    recipes,
    running,
    tasks,
    tuning,
)
from questlab.cli.common import OneLineErrors, examples

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="questlab: QUEST Q&A rating workbench.",
    epilog=examples(
        "questlab check train.csv",
        "questlab run tfidf --train train.csv --test test.csv --submission submission.csv",
        "questlab runs --sort cv",
    )
    + "\n\nEvery command's --help ends with its own examples.",
)


def _version(value: bool) -> None:
    if value:
        from questlab import __version__

        typer.echo(f"questlab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="keep third-party logs (transformers' load reports, hub notices); same as QUESTLAB_VERBOSE=1",
        ),
    ] = False,
) -> None:
    """questlab: QUEST Q&A rating workbench."""
    if verbose:
        from questlab.console import set_verbose

        set_verbose()


# The order of `questlab --help` (typer lists the `finding` group after the commands).
data.register(app)  # check
running.register(app)  # run, collect, runs
predicting.register(app)  # predict, serve, export
evaluating.register(app)  # evaluate
catalog.register(app)  # models
analysis.register(app)  # diagnose, compare, findings, finding add
ensembling.register(app)  # postprocess, ensemble
tuning.register(app)  # tune
pretrain.register(app)  # pretrain
pseudo.register(app)  # pseudo-label
recipes.register(app)  # recipe
tasks.register(app)  # task init, task show, task list


def main() -> None:
    """Run the questlab command line (``python -m questlab.cli``)."""
    app()
