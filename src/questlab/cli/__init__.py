"""The questlab command line: each command parses, calls one function, prints.

Bad input (data, config, unknown run) exits with code 2 and one line on stderr, never a
traceback. ``run`` prints the run id alone on the last line of stdout, so scripts can chain.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from questlab.cli import analysis, ensembling, pretrain, tuning
from questlab.cli import pseudo as pseudo_commands
from questlab.cli import recipes as recipe_cli
from questlab.cli.common import OneLineErrors, StoreOpt, fail, guard, open_store
from questlab.config import load_config
from questlab.csvfile import check_output_file

app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="questlab: QUEST Q&A rating workbench.",
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
) -> None:
    """questlab: QUEST Q&A rating workbench."""


@app.command()
@guard
def check(path: Annotated[Path, typer.Argument(help="a train or test CSV in QUEST format")]) -> None:
    """Validate a QUEST CSV and print a summary (rows, questions, targets, text lengths)."""
    from rich.console import Console
    from rich.table import Table

    from questlab.data import detect_kind, load, summarize

    kind = detect_kind(path)
    frame = load(path, kind)
    s = summarize(frame, kind)
    console = Console()
    console.print(f"[bold]{path}[/bold]: valid {kind} file")
    console.print(
        f"rows {s.rows}, unique questions {s.questions}, answers per question: "
        f"mean {s.answers_per_question['mean']:.2f}, max {s.answers_per_question['max']:.0f}, "
        f"{s.answers_per_question['share_with_several']:.0%} of questions have several"
    )
    if s.blank_bodies:
        console.print(
            f"note: {s.blank_bodies} question bodies are blank (whitespace only); kept, the title carries them"
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
                str(row["distinct"]),
                f"{row['majority_value']:.3f}",
                f"[{style}]{share:.1%}[/{style}]",
                f"{row['mean']:.3f}",
            )
        console.print(table)


@app.command()
@guard
def run(
    config: Annotated[Path | None, typer.Argument(help="YAML run config (see configs/)")] = None,
    train: Annotated[Path | None, typer.Option(help="labelled train CSV")] = None,
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
) -> None:
    """Run grouped CV for a config, record it, and print the run id on the last line."""
    import shutil

    from questlab.cv import run_cv
    from questlab.data import Dataset, check_pair
    from questlab.pseudo import PseudoLabels
    from questlab.rundir import SUBMISSION_FILE

    if train is None or (resume is None and config is None):
        fail("give a CONFIG and --train (or --resume RUN_ID with the run's --train)")
    if submission is not None and test is None:
        fail("--submission needs --test (the file whose pairs are predicted)")
    if resume is not None and set_:
        fail("--set changes a config; a resumed run keeps the one it was started with")
    if submission is not None:
        check_output_file("--submission", submission)
    cfg = load_config(config, overrides=set_) if resume is None else None
    if cfg is not None and not (cfg.folds.from_run or cfg.folds.from_file):
        unknown = [k for k in fold or [] if not 0 <= k < cfg.folds.n_splits]
        if unknown:
            fail(f"--fold {unknown[0]}: the folds are 0..{cfg.folds.n_splits - 1} (folds.n_splits)")
    # Every input mistake before anything is written: opening the store creates it, and the
    # submission's folder is made now, not after the whole CV. run_cv takes the files as read here.
    train_data = Dataset.read(train, "train")
    test_data = Dataset.read(test, "test") if test is not None else None
    if test_data is not None:
        check_pair(train_data.frame, test_data.frame, test)
    pseudo_labels = PseudoLabels.read(pseudo) if pseudo is not None else None
    if submission is not None:
        try:
            submission.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            fail(f"--submission {submission}: cannot create its folder ({exc.strerror or exc})")
    st = open_store(store, create=resume is None)
    try:
        run_id = run_cv(cfg, train_data, test_data, store=st, only_folds=fold, resume=resume, pseudo=pseudo_labels)
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
    typer.echo(run_id)


@app.command()
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


@app.command()
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

    table = Table("run id", "name", "model", "kind", "status", "CV", "95% CI", "folds", "started")
    for r in frame.itertuples():
        scored = r.cv == r.cv  # NaN: no score (failed, running, partial before scoring)
        folds = r.folds + (" (partial)" if r.folds and not r.complete else "")
        table.add_row(
            r.run_id, r.name, r.model, r.kind, r.status,
            f"{r.cv:.4f}" if scored else "-",
            f"{r.ci_low:.4f}..{r.ci_high:.4f}" if r.ci_low == r.ci_low else "",
            folds, r.started.strftime("%Y-%m-%d %H:%M"),
        )  # fmt: skip
    Console(width=200).print(table)


def _load_predictor(run_id: str | None, model: Path | None, store: str | None):
    """A run's predictor from the store, or an exported bundle's (``--model``)."""
    if (run_id is None) == (model is None):
        fail("give a RUN_ID or --model BUNDLE_DIR (one of them)")
    if model is not None:
        from questlab.export import load_bundle

        return load_bundle(model)
    from questlab.predict import load_predictor

    return load_predictor(open_store(store, create=False), run_id)


@app.command()
@guard
def predict(
    run_id: Annotated[str | None, typer.Argument(help="a recorded run (id or unique prefix)")] = None,
    input: Annotated[Path | None, typer.Option("--input", help="test-format CSV of new pairs")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="where to write qa_id + 30 predictions")] = None,
    model: Annotated[
        Path | None, typer.Option("--model", help="an exported bundle (or MLflow model) folder instead of a run")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Predict new pairs with a run's fold models, or an exported bundle's (nothing is refitted)."""
    from questlab.predict import stream_predictions

    if input is None or output is None:
        fail("give --input (a test-format CSV) and --output (where predictions go)")
    to_stdout = str(output) == "-"  # `--output -`: the CSV on stdout, for pipes
    if not to_stdout:
        check_output_file("--output", output)
    predictor = _load_predictor(run_id, model, store)
    # Read, predicted and written piece by piece: flat memory for any size of file.
    rows = stream_predictions(predictor, input, sys.stdout if to_stdout else output)
    if not to_stdout:
        typer.echo(f"wrote {rows} rows to {output}", err=True)


@app.command()
@guard
def serve(
    run_id: Annotated[str | None, typer.Argument(help="a recorded run (id or unique prefix)")] = None,
    model: Annotated[Path | None, typer.Option("--model", help="an exported bundle folder instead of a run")] = None,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port", min=1, max=65535)] = 8000,
    max_body_bytes: Annotated[
        int, typer.Option(help="refuse request bodies over this many bytes (413)", min=1)
    ] = 10_000_000,
    batch_window_ms: Annotated[
        float, typer.Option(help="ms concurrent requests may wait to share a model pass", min=0)
    ] = 5.0,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="predict each request on its own")] = False,
    store: StoreOpt = None,
) -> None:
    """Serve a run's (or a bundle's) predictions over HTTP: POST /predict, GET /health (docs at /docs)."""
    import uvicorn

    from questlab.serve import create_app

    predictor = _load_predictor(run_id, model, store)
    typer.echo(f"serving run {predictor.run_id} on http://{host}:{port} (POST /predict)", err=True)
    window = None if no_batching else batch_window_ms
    server_app = create_app(predictor, max_body_bytes=max_body_bytes, batch_window_ms=window)
    uvicorn.run(server_app, host=host, port=port, log_level="warning")


@app.command()
@guard
def export(
    run_id: Annotated[str, typer.Argument(help="a finished run (id or unique prefix)")],
    dest: Annotated[Path, typer.Argument(help="a new (or empty) folder to write the bundle into")],
    store: StoreOpt = None,
) -> None:
    """Write a run as a self-contained bundle: predicts anywhere with `questlab predict --model DIR`."""
    from questlab.export import export_run, read_manifest

    path = export_run(open_store(store, create=False), run_id, dest)
    manifest = read_manifest(path, verify=False)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    typer.echo(
        f"exported run {manifest['run_id']} ({manifest['kind']}, {len(manifest['files'])} files, "
        f"{size / 1e6:.1f} MB) to {path}",
        err=True,
    )
    typer.echo(str(path))


analysis.register(app)  # diagnose, compare, finding add, findings
ensembling.register(app)  # postprocess, ensemble
tuning.register(app)  # tune
pretrain.register(app)  # pretrain
pseudo_commands.register(app)  # pseudo-label
recipe_cli.register(app)  # recipe
