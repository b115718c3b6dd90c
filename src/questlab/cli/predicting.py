"""CLI commands that use a finished run: ``questlab predict``, ``serve`` and ``export`` (a bundle).

``predict`` and ``serve`` take a run from the store or an exported bundle (``--model``).
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from questlab.cli.common import StoreOpt, examples, fail, guard, open_store
from questlab.csvfile import check_not_an_input, check_output_file


def _load_predictor(run_id: str | None, model: Path | None, store: str | None):
    """A run's predictor from the store, or an exported bundle's (``--model``)."""
    if (run_id is None) == (model is None):
        fail("give a RUN_ID or --model BUNDLE_DIR (one of them)")
    if model is not None:
        from questlab.export import load_bundle

        return load_bundle(model)
    from questlab.predict import load_predictor

    return load_predictor(open_store(store, create=False), run_id)


@guard
def predict(
    run_id: Annotated[
        str | None, typer.Argument(help="a recorded run (id or unique prefix); required unless --model")
    ] = None,
    input: Annotated[
        Path, typer.Option("--input", help="CSV of rows to predict (test format; a labelled file's targets ignored)")
    ] = ...,
    output: Annotated[
        Path,
        typer.Option("--output", help="where to write the predictions: id + targets, QUEST's qa_id + 30 (-: stdout)"),
    ] = ...,
    model: Annotated[
        Path | None, typer.Option("--model", help="an exported bundle (or MLflow model) folder instead of a run")
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Predict new rows with a run's fold models, or an exported bundle's (nothing is refitted)."""
    from questlab.predict import stream_predictions

    if input is None or output is None:
        fail("give --input (a test-format CSV) and --output (where predictions go)")
    to_stdout = str(output) == "-"  # `--output -`: the CSV on stdout, for pipes
    if not to_stdout:
        check_output_file("--output", output)
        check_not_an_input("--output", output, {"--input": input})
    predictor = _load_predictor(run_id, model, store)
    # Read, predicted and written piece by piece: flat memory for any size of file.
    rows = stream_predictions(predictor, input, sys.stdout if to_stdout else output)
    if not to_stdout:
        typer.echo(f"wrote {rows} rows to {output}", err=True)


@guard
def serve(
    run_id: Annotated[
        str | None, typer.Argument(help="a recorded run (id or unique prefix); required unless --model")
    ] = None,
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
    large_body_bytes: Annotated[
        int, typer.Option(help="bodies over this many bytes are handled --large-concurrency at a time", min=1)
    ] = 1_000_000,
    large_concurrency: Annotated[int, typer.Option(help="large bodies read and predicted at once", min=1)] = 1,
    body_timeout: Annotated[
        float, typer.Option(help="s to receive a whole body once the headers are in (else 408)", min=0.001)
    ] = 30.0,
    header_timeout: Annotated[
        float, typer.Option(help="s to receive the request headers from their first byte (else 408)", min=0.001)
    ] = 10.0,
    keep_alive: Annotated[
        float, typer.Option(help="s an idle connection (no request in progress) stays open", min=0.001)
    ] = 5.0,
    request_timeout: Annotated[
        float,
        typer.Option(help="s a request may take, first byte to last byte of its answer (else dropped)", min=0.001),
    ] = 120.0,
    max_connections: Annotated[
        int,
        typer.Option(
            help="open connections at most (lowered to `ulimit -n` - 128); at the cap the one idle longest "
            "(or stuck in its headers) is closed, and if every one has a request running, a 503",
            min=1,
        ),
    ] = 1000,
    store: StoreOpt = None,
) -> None:
    """Serve a run's (or a bundle's) predictions over HTTP: POST /predict, GET /health (docs at /docs)."""
    from questlab.serve import create_app, run_server
    from questlab.serve.connections import ConnectionLimits

    predictor = _load_predictor(run_id, model, store)
    typer.echo(f"serving run {predictor.run_id} on http://{host}:{port} (POST /predict)", err=True)
    window = None if no_batching else batch_window_ms
    server_app = create_app(
        predictor,
        max_body_bytes=max_body_bytes,
        batch_window_ms=window,
        body_timeout_s=body_timeout,
        large_body_bytes=large_body_bytes,
        large_concurrency=large_concurrency,
    )
    limits = ConnectionLimits(keep_alive, header_timeout, request_timeout, max_connections)
    run_server(server_app, host, port, limits)


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


def register(app: typer.Typer) -> None:
    """Add ``predict``, ``serve`` and ``export`` to the questlab CLI."""
    app.command(
        "predict",
        epilog=examples(
            "questlab predict RUN_ID --input test.csv --output submission.csv",
            "questlab predict --model BUNDLE_DIR --input test.csv --output -",
        ),
    )(predict)
    app.command(
        "serve",
        epilog=examples(
            "questlab serve RUN_ID --port 8000",
            "questlab serve --model BUNDLE_DIR --host 0.0.0.0 --port 8080 --max-connections 200",
        ),
    )(serve)
    app.command(
        "export",
        epilog=examples(
            "questlab export RUN_ID bundle/",
            "questlab predict --model bundle/ --input test.csv --output submission.csv",
        ),
    )(export)
