"""CLI commands for post-processing and ensembling recorded runs (``questlab postprocess|ensemble``).

Both make a new run (kind "ensemble") and print its id on the last line of stdout; the report
(nested gain first, in-sample beside it) goes to stderr.
"""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, fail, guard, open_store, say
from questlab.cli.reports import print_ensemble_report
from questlab.cli.running import found_results
from questlab.errors import UsageError

QuestionShareOpt = Annotated[
    bool,
    typer.Option(
        "--question-share",
        help="pull question_* predictions towards their mean over a question's answers, per target where it helps",
    ),
]
TestOpt = Annotated[
    Path | None, typer.Option(help="the test file the runs predicted (--question-share groups its rows)")
]


def _parse_weights(weights: str) -> str | list[float]:
    if weights in ("auto", "equal"):
        return weights
    try:
        return [float(w) for w in weights.split(",")]
    except ValueError:
        raise UsageError(f"--weights {weights!r}: give auto, equal or numbers such as 0.7,0.3") from None


@guard
def postprocess(
    run_id: Annotated[str, typer.Argument(help="a finished run (id or unique prefix)")],
    method: Annotated[
        str | None,
        typer.Option(
            help="auto | distribution | thresholds | identity under a rank metric (default distribution); "
            "auto | snap | shrink | identity under an error metric (default auto; clipped to the range first). "
            "Each target keeps identity unless it helps"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="name of the new run")] = None,
    bootstrap: Annotated[int, typer.Option(help="group resamples (QUEST: questions) for the gain intervals")] = 200,
    question_share: QuestionShareOpt = False,
    test: TestOpt = None,
    store: StoreOpt = None,
) -> None:
    """Fit per-target post-processing on a run's OOF, report the nested (honest) gain, record a new run."""
    from questlab.ensemble_runs import postprocess_run

    new_id, report = postprocess_run(
        open_store(store), run_id, method, name=name, n_boot=bootstrap, say=say, question_share=question_share,
        test=test,
    )  # fmt: skip
    print_ensemble_report(report)
    found_results(open_store(store, create=False), new_id)
    typer.echo(new_id)


@guard
def ensemble(
    run_ids: Annotated[list[str], typer.Argument(help="finished runs made on the same folds")],
    weights: Annotated[str, typer.Option(help="auto (found on OOF, nested) | equal | e.g. 0.7,0.3")] = "auto",
    per_target: Annotated[bool, typer.Option("--per-target", help="one set of weights per target")] = False,
    average: Annotated[str, typer.Option(help="value | rank (quantile in each member's OOF)")] = "value",
    method: Annotated[
        str, typer.Option(help="weights (a weighted mean) | stack | stack+related (a ridge per target)")
    ] = "weights",
    question_share: QuestionShareOpt = False,
    test: TestOpt = None,
    postprocess: Annotated[
        str, typer.Option(help="none | auto | distribution | thresholds (rank metric) | snap | shrink (error metric)")
    ] = "none",
    name: Annotated[str | None, typer.Option(help="name of the new run")] = None,
    bootstrap: Annotated[int, typer.Option(help="group resamples (QUEST: questions) for the intervals")] = 200,
    store: StoreOpt = None,
) -> None:
    """Combine runs into a new recorded run; its OOF (and CV score) come from nested fits."""
    from questlab.ensemble import EnsembleSpec
    from questlab.ensemble_runs import build_ensemble

    if len(run_ids) < 2:
        fail("give at least two runs (for one run use: questlab postprocess RUN_ID)")
    spec = EnsembleSpec(
        _parse_weights(weights), per_target, average, postprocess, method=method, question_share=question_share
    )
    new_id, report = build_ensemble(open_store(store), run_ids, spec, name=name, n_boot=bootstrap, say=say, test=test)
    print_ensemble_report(report)
    found_results(open_store(store, create=False), new_id)
    typer.echo(new_id)


def register(app: typer.Typer) -> None:
    """Add ``postprocess`` and ``ensemble`` to the questlab CLI."""
    app.command(
        "postprocess",
        epilog=examples(
            "questlab postprocess RUN_ID",
            "questlab postprocess RUN_ID --method auto --question-share --test test.csv --name tfidf-pp",
        ),
    )(postprocess)
    app.command(
        "ensemble",
        epilog=examples(
            "questlab ensemble RUN_A RUN_B",
            "questlab ensemble RUN_A RUN_B --weights auto --per-target --average rank --postprocess distribution",
            "questlab ensemble RUN_A RUN_B RUN_C --method stack --question-share --test test.csv",
        ),
    )(ensemble)
