"""CLI commands for cross-validated runs: ``questlab run``, ``collect`` and ``runs`` (the leaderboard).

``run`` prints the run id alone on the last line of stdout, so scripts can chain.
"""

from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, fail, guard, open_store
from questlab.config import load_config, shipped_config_names
from questlab.csvfile import check_not_an_input, check_output_file

_SHIPPED = ", ".join(shipped_config_names())  # questlab/configs/*.yaml, listed in `run --help`


@guard
def run(
    config: Annotated[
        Path | None,
        typer.Argument(help=f"a YAML run config, or a shipped one by name: {_SHIPPED}; required unless --resume"),
    ] = None,
    train: Annotated[Path, typer.Option(help="labelled train CSV (with --resume: the run's own)")] = ...,
    test: Annotated[Path | None, typer.Option(help="unlabelled test CSV to predict with the fold models")] = None,
    submission: Annotated[Path | None, typer.Option(help="also write the test predictions here")] = None,
    fold: Annotated[list[int] | None, typer.Option("--fold", help="run only this fold (repeatable)")] = None,
    resume: Annotated[
        str | None, typer.Option(help="resume this failed/killed run id (give the same --train/--test)")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key, e.g. --set model.params.alpha=3 (repeatable)"),
    ] = None,
    pseudo: Annotated[
        Path | None,
        typer.Option(help="pseudo-labels from `questlab pseudo-label` (the teacher's folds are required)"),
    ] = None,
    store: StoreOpt = None,
    task: Annotated[
        str | None,
        typer.Option(
            help="the task: a built-in (quest, ell) or a task spec YAML (default: the config's task, else quest);"
            " a resumed run keeps its own"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="the run's name (default: the config's name and its --set overrides, e.g. tfidf[alpha=30]);"
            " a name another run of the store has gets the first free suffix: tfidf[alpha=30]-2, -3, ..."
        ),
    ] = None,
) -> None:
    """Run grouped CV for a config, record it, and print the run id on the last line."""
    import shutil

    from questlab.cv import default_run_name, run_cv, unique_run_name
    from questlab.data import Dataset, check_pair
    from questlab.pseudo import PseudoLabels, sidecar_path
    from questlab.recording import run_task_of
    from questlab.rundir import SUBMISSION_FILE

    if train is None or (resume is None and config is None):
        fail("give a CONFIG and --train (or --resume RUN_ID with the run's --train)")
    if submission is not None and test is None:
        fail("--submission needs --test (the file whose rows are predicted)")
    if resume is not None and set_:
        fail("--set changes a config; a resumed run keeps the one it was started with")
    if resume is not None and name is not None:
        fail("--name names a new run; a resumed run keeps its name")
    if submission is not None:
        check_output_file("--submission", submission)
        inputs = {"--train": train, "--test": test, "CONFIG": config, "--pseudo": pseudo}
        if pseudo is not None:
            inputs["--pseudo sidecar"] = sidecar_path(pseudo)
        check_not_an_input("--submission", submission, inputs)
    cfg = load_config(config, overrides=set_) if resume is None else None
    if cfg is not None and not (cfg.folds.from_run or cfg.folds.from_file):
        unknown = [k for k in fold or [] if not 0 <= k < cfg.folds.n_splits]
        if unknown:
            fail(f"--fold {unknown[0]}: the folds are 0..{cfg.folds.n_splits - 1} (folds.n_splits)")
    # Every input mistake before anything is written: opening the store creates it, and the
    # submission's folder is made now, not after the whole CV. run_cv takes the files as read here.
    # the task first (a resumed run's own: its store exists already), then the data read under it
    st = open_store(store, create=False) if resume is not None else None
    run_task = run_task_of(st, cfg, resume, task)
    train_data = Dataset.read(train, "train", task=run_task)
    test_data = Dataset.read(test, "test", task=run_task) if test is not None else None
    if test_data is not None:
        check_pair(train_data.frame, test_data.frame, test, task=run_task)
    pseudo_labels = PseudoLabels.read(pseudo) if pseudo is not None else None
    if submission is not None:
        try:
            submission.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"--submission {submission}: cannot create its folder ({exc.strerror or exc})")
    st = st or open_store(store, create=True)
    run_name = unique_run_name(st, name or default_run_name(cfg)) if cfg is not None else None
    try:
        run_id = run_cv(
            cfg,
            train_data,
            test_data,
            store=st,
            only_folds=fold,
            resume=resume,
            pseudo=pseudo_labels,
            name=run_name,
            task=run_task,
        )
    except KeyboardInterrupt as exc:
        run_id = getattr(exc, "questlab_run_id", "RUN_ID")
        typer.echo(
            f"interrupted: the run is marked KILLED; continue it with questlab run --resume {run_id} --train {train}",
            err=True,
        )
        raise typer.Exit(code=130) from None
    if not run_id:  # a DDP worker process records nothing
        return
    if submission is not None:
        src = st.folder(run_id) / SUBMISSION_FILE
        if not src.exists():
            fail("no submission was made: give --test")
        shutil.copy(src, submission)
        typer.echo(f"submission written to {submission}", err=True)
    found_results(st, run_id)
    typer.echo(run_id)  # alone on the last line of stdout: scripts chain on it


def found_results(store, run_id: str) -> None:
    """One line on stderr: where the run is and what to do next (list, diagnose, browse in MLflow).

    ``export MLFLOW_TRACKING_URI=...`` makes ``mlflow.pyfunc.load_model("runs:/RUN_ID/model")`` and
    ``mlflow ui`` find this store from any folder (without it MLflow would open ./mlflow.db).
    """
    import shlex

    where = f"--store {shlex.quote(str(store.root))}" if store.is_local else f"--store {shlex.quote(store.uri)}"
    uri = shlex.quote(store.uri)
    typer.echo(
        f"run {run_id} is in {store.root if store.is_local else store.uri}: questlab runs {where}; "
        f"questlab diagnose {run_id[:8]} {where}; "
        f"export MLFLOW_TRACKING_URI={uri}; mlflow ui --backend-store-uri {uri}",
        err=True,
    )


@guard
def collect(
    run_ids: Annotated[list[str], typer.Argument(help="single-fold runs of the same config and folds")],
    train: Annotated[Path, typer.Option(help="the train CSV the runs were made with")],
    test: Annotated[Path | None, typer.Option(help="the test CSV the runs predicted, if any")] = None,
    name: Annotated[str | None, typer.Option(help="name of the collected run")] = None,
    store: StoreOpt = None,
) -> None:
    """Merge runs made with --fold into one run (OOF, scores, submission)."""
    from questlab.collect import collect_runs

    typer.echo(collect_runs(open_store(store, create=False), run_ids, train, test, name=name))


@guard
def runs(
    sort: Annotated[str, typer.Option(help="start (newest first) | cv (best first) | name | model")] = "start",
    model: Annotated[str | None, typer.Option(help="only this model (a shell pattern: tfidf*)")] = None,
    name: Annotated[str | None, typer.Option(help="only runs whose name matches this shell pattern")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="only runs with this tag: KEY=VALUE (repeatable)")] = None,
    status: Annotated[str | None, typer.Option(help="only runs in this status (finished, failed, ...)")] = None,
    limit: Annotated[int | None, typer.Option(help="show at most this many runs")] = None,
    json_: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
    store: StoreOpt = None,
) -> None:
    """The leaderboard: recorded runs with their CV scores, sorted and filtered."""
    from questlab.api import runs as leaderboard

    tags = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--tag {item!r}: give KEY=VALUE, e.g. --tag questlab.study=tfidf")
        tags[key] = value
    frame = leaderboard(
        open_store(store, create=False), sort=sort, model=model, name=name, tags=tags, status=status, limit=limit
    )
    if json_:
        typer.echo(frame.to_json(orient="records", date_format="iso", indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    metrics = sorted(set(frame["metric"]))
    # the score column names its metric; runs of several metrics name theirs in each cell
    header = f"CV {metrics[0]}" if len(metrics) == 1 else "CV"
    table = Table(
        "run id",
        "name",
        "model",
        "task",
        "kind",
        "status",
        header,
        "95% CI",
        "rank",
        "rows",
        "data",
        "folds",
        "started",
    )
    for r in frame.itertuples():
        scored = r.cv == r.cv  # NaN: no score (failed, running, partial before scoring)
        folds = r.folds_id + (f" {r.folds} (partial)" if r.folds and not r.complete else "")
        score = f"{r.cv:.4f}" + (f" {r.metric}" if len(metrics) > 1 else "")
        table.add_row(
            r.run_id, r.name, r.model, r.task, r.kind, r.status,
            score if scored else "-",
            f"{r.ci_low:.4f}..{r.ci_high:.4f}" if r.ci_low == r.ci_low else "",
            f"{r.group}{int(r.rank)}" if r.group else "", str(r.rows), r.data,
            folds, r.started.strftime("%Y-%m-%d %H:%M"),
        )  # fmt: skip
    console = Console(width=220)
    console.print(table)
    if sort == "cv" and len(frame):
        console.print(
            "rank: A1 is the best of group A (by its task's metric: lowest first for an error metric); a group is "
            "whole runs of one task scored on the same data, folds and rows, "
            "so only scores inside one group compare; partial, unscored and unknown (?) runs are listed after, unranked"
        )


def register(app: typer.Typer) -> None:
    """Add ``run``, ``collect`` and ``runs`` to the questlab CLI."""
    app.command(
        "run",
        epilog=examples(
            "questlab run tfidf --train train.csv --test test.csv --submission submission.csv",
            "questlab run embedding --train train.csv --set folds.n_splits=3 --fold 0",
            "questlab run --resume RUN_ID --train train.csv",
        ),
    )(run)
    app.command(
        "collect",
        epilog=examples(
            "questlab collect RUN_A RUN_B RUN_C RUN_D RUN_E --train train.csv --test test.csv --name tfidf"
        ),
    )(collect)
    app.command(
        "runs",
        epilog=examples(
            "questlab runs",
            "questlab runs --sort cv --limit 10 --model 'tfidf*'",
            "questlab runs --tag questlab.study=tfidf --status finished --json",
        ),
    )(runs)
