"""HTTP predictions for new pairs from a recorded run (FastAPI).

``questlab serve RUN_ID`` (or ``--model BUNDLE``) loads the fold models once and answers
``POST /predict`` with ``{"pairs": [{qa_id?, question_title, question_body, answer, category,
host, ...}]}`` → ``{"run_id", "predictions": [{"qa_id", <30 targets>}]}``; ``GET /health`` says
which run, task (and questlab version) answers; ``GET /docs`` is a self-contained page (no CDN) and
``GET /openapi.json`` the machine-readable schema.

That is QUEST's API; a run of another task takes rows of its own columns: the request and response
shapes are built from the predictor's task (:mod:`questlab.serve.rows`: id optional, texts and
features required, optional columns optional; the response holds the task's targets).

Input is checked in two steps, so HTTP and CSV input follow one set of rules:

1. pydantic checks the JSON *shape* strictly: known fields only, text fields are strings (valid
   Unicode: no lone surrogates), ``qa_id`` an int in int64 range (not a bool, not a string);
2. :func:`questlab.data.validate_frame` then applies the CSV rules (non-empty title, body,
   answer, category and host; unique ``qa_id``), exactly as ``questlab predict`` does on a file.

Every refusal is a 422 naming the field and the pair's index (0-based), never echoing the input;
a body over ``max_body_bytes`` is a 413 before any of it is parsed.

Abusive clients are bounded (``questlab serve`` options, defaults in ``limits`` and
``connections``): a body must arrive within ``body_timeout_s`` (else a 408); bodies over
``large_body_bytes`` are handled ``large_concurrency`` at a time, so back-to-back 9 MB requests
cannot starve small ones (:class:`BodyLimit`); the models read a bounded length of each text and
cache a bounded number of bytes (TF-IDF: ``questlab.models.tfidf``), so unique large texts do not
grow the process; and :func:`run_server` bounds idle, header and whole-request time and the number
of open connections (:mod:`questlab.serve.connections`).

User names: an omitted, null or blank ``question_user_name`` / ``answer_user_name`` is *unknown*,
and an unknown name matches no other name, the other unknown one included. So "the asker wrote
the answer" holds only when both names are given and equal: a pair without names is predicted
exactly as the same pair with two different names. (A CSV cell left empty on both sides still
compares equal in the models' own features; see the report of this change.)

Concurrent requests are micro-batched (:class:`MicroBatcher`): requests arriving within a few
milliseconds, or while the previous batch is being predicted, go through the models in one pass,
which is what lifts throughput under load. Each request still gets exactly the numbers it would
get alone (:func:`predict_parts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import html
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from questlab import __version__
from questlab.errors import DataError, PredictionError
from questlab.predict import Predictor
from questlab.predictors import task_of
from questlab.serve.batching import MicroBatcher, serve_batch
from questlab.serve.connections import ACCEPT_BACKLOG, ConnectionLimits, GuardedH11Protocol
from questlab.serve.limits import (
    DEFAULT_BATCH_WINDOW_MS,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_LARGE_BODY_BYTES,
    DEFAULT_LARGE_CONCURRENCY,
    DEFAULT_MAX_BATCH_PAIRS,
    DEFAULT_MAX_BODY_BYTES,
    INLINE_PAIRS,
    BodyLimit,
    ErrorResponse,
    Health,
    TooLarge,
    TooSlow,
    Unparsable,
)
from questlab.serve.limits import Pair as QuestPair
from questlab.serve.rows import request_models
from questlab.serve.validation import (
    Pair,
    data_error_response,
    error_item,
    error_response,
    pair_ids,
    validation_error_response,
)
from questlab.tasks import Task


@contextlib.asynccontextmanager
async def _frozen_heap(_app: FastAPI) -> AsyncIterator[None]:
    """Move what is loaded by now (models, libraries: ~300k objects) out of the collector's sight.

    Otherwise every full collection rescans them all: a ~170 ms pause every few seconds under
    load, which stalls the whole batch pipeline and sets the p99 latency (288 ms against 173 ms
    frozen, at 16 clients). Undone at shutdown, so an in-process app (tests) leaves the heap as it was.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(
    predictor: Predictor,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batch_window_ms: float | None = DEFAULT_BATCH_WINDOW_MS,
    max_batch_pairs: int = DEFAULT_MAX_BATCH_PAIRS,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    large_body_bytes: int = DEFAULT_LARGE_BODY_BYTES,
    large_concurrency: int = DEFAULT_LARGE_CONCURRENCY,
) -> FastAPI:
    """A FastAPI app serving one loaded predictor (a run's or an exported bundle's).

    ``max_body_bytes``: larger request bodies get a 413. ``batch_window_ms``: how long a request
    may wait for others to share a validation and model pass with (``None``: no batching, each
    request on its own in the thread pool, as in 0.2); ``max_batch_pairs`` caps a shared pass.
    ``body_timeout_s``: a body not received in full within this time gets a 408. Bodies over
    ``large_body_bytes`` are handled ``large_concurrency`` at a time (:class:`BodyLimit`).
    """
    if min(max_body_bytes, max_batch_pairs, large_body_bytes, large_concurrency) < 1:
        raise ValueError("max_body_bytes, max_batch_pairs, large_body_bytes and large_concurrency must be positive")
    if body_timeout_s <= 0 or (batch_window_ms is not None and batch_window_ms < 0):
        raise ValueError("body_timeout_s must be positive, batch_window_ms >= 0 or None")
    task = task_of(predictor)
    shapes = request_models(task)
    app = FastAPI(
        lifespan=_frozen_heap,
        title="questlab",
        version=__version__,
        description=f"{task.name.upper()} ratings from run {predictor.run_id}",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: blank offline. /docs is our own page.
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=max_body_bytes,
        timeout_s=body_timeout_s,
        large_bytes=large_body_bytes,
        large_concurrency=large_concurrency,
    )

    def process(requests: list[list[Pair]]) -> list[np.ndarray | Exception]:
        return serve_batch(predictor, requests)

    batcher = None if batch_window_ms is None else MicroBatcher(process, batch_window_ms / 1000, max_batch_pairs)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_error_response(exc)

    @app.exception_handler(PredictionError)
    async def _broken_model(_request: Request, exc: PredictionError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=500)  # the server's fault, said in one line

    @app.get("/health", response_model=Health)
    def health() -> dict:
        """The run that answers, the questlab version, the task and its targets."""
        return {
            "status": "ok",
            "run_id": predictor.run_id,
            "version": __version__,
            "task": task.name,
            "targets": list(task.target_names),
        }

    errors = {
        400: {"model": Unparsable, "description": "body is not JSON text (bytes that do not decode)"},
        408: {"model": TooSlow, "description": "body not received in time"},
        413: {"model": TooLarge, "description": "body over the size limit"},
        422: {"model": ErrorResponse, "description": "a field or pair that breaks the input rules"},
    }

    async def predict(body: Any) -> JSONResponse:
        pairs = body.pairs
        try:
            if batcher is not None:
                pred = await batcher.submit(pairs, len(pairs))
            else:
                (pred,) = await run_in_threadpool(process, [pairs])
                if isinstance(pred, Exception):
                    raise pred
        except DataError as exc:
            return data_error_response(exc)
        except ValueError as exc:  # a model refusing the input: the client's problem, said plainly
            return error_response([error_item(["body", "pairs"], str(exc), "value_error")])
        content = {"run_id": predictor.run_id, "predictions": _rows(task, pair_ids(pairs, task), pred)}
        if len(pairs) > INLINE_PAIRS:  # rendering 10,000 rows takes a while: not on the event loop
            return await asyncio.to_thread(JSONResponse, content)
        return JSONResponse(content)

    # the body's shape is the task's: set on the endpoint before FastAPI reads its signature
    predict.__annotations__["body"] = shapes.request
    predict.__doc__ = (
        f"Predict the {task.n_targets} ratings of each {'pair' if shapes.row is QuestPair else 'row'} "
        "(validated with the same rules as a test CSV)."
    )
    app.post("/predict", response_model=shapes.response, responses=errors)(predict)

    @app.get("/docs", include_in_schema=False, response_class=HTMLResponse)
    def docs() -> str:
        return docs_page(app.openapi())

    return app


def run_server(app: FastAPI, host: str, port: int, limits: ConnectionLimits | None = None) -> None:
    """Serve ``app`` with uvicorn (h11) until stopped, with the connection bounds of ``limits``."""
    import copy
    import os

    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from questlab.console import ENV_QUIET

    os.environ[ENV_QUIET] = "1"  # requests log an access line each, never an embedding progress bar
    protocol = GuardedH11Protocol.bounded(limits or ConnectionLimits())
    # uvicorn's own messages from warnings up; one access line per request (uvicorn.access, INFO)
    log_config = copy.deepcopy(LOGGING_CONFIG)
    log_config["loggers"]["uvicorn.error"]["level"] = "WARNING"
    log_config["loggers"]["uvicorn.access"]["level"] = "INFO"
    log_config["handlers"]["access"]["stream"] = "ext://sys.stderr"  # unbuffered, beside the other logs
    uvicorn.run(
        app, host=host, port=port, log_config=log_config, log_level=None, access_log=True,
        http=protocol, backlog=ACCEPT_BACKLOG,
    )  # fmt: skip


def _rows(task: Task, ids: list[int | str], pred: np.ndarray) -> list[dict[str, Any]]:
    names = task.target_names
    ids = [i if isinstance(i, str) else int(i) for i in ids]  # text ids echoed as given
    return [{task.id: i, **dict(zip(names, row, strict=True))} for i, row in zip(ids, pred.tolist(), strict=True)]


# --- /docs without a CDN ------------------------------------------------------------------------
def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " or ".join(_type_of(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    return str(prop.get("type", "any"))


def docs_page(spec: dict[str, Any]) -> str:
    """A self-contained HTML page: the endpoints and the request/response schemas (no external assets)."""
    e = html.escape
    info = spec.get("info", {})
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{e(info.get('title', 'API'))} {e(info.get('version', ''))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{border:1px solid #ccc;"
        "padding:2px 6px;text-align:left}table{border-collapse:collapse}code{background:#eee}</style>",
        "</head><body>",
        f"<h1>{e(info.get('title', 'API'))} {e(info.get('version', ''))}</h1>",
        f"<p>{e(info.get('description', ''))}. Machine-readable schema: <a href='openapi.json'>/openapi.json</a>.</p>",
        "<h2>Endpoints</h2><table><tr><th>method</th><th>path</th><th>what</th><th>body</th><th>responses</th></tr>",
    ]
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            responses = ", ".join(
                f"{code}: {_type_of(r.get('content', {}).get('application/json', {}).get('schema', {}))}"
                for code, r in op.get("responses", {}).items()
            )
            what = op.get("description") or op.get("summary", "")
            out.append(
                f"<tr><td>{e(method.upper())}</td><td><code>{e(path)}</code></td><td>{e(what)}</td>"
                f"<td>{e(_type_of(body)) if body else ''}</td><td>{e(responses)}</td></tr>"
            )
    out.append("</table><h2>Schemas</h2>")
    for name, schema in spec.get("components", {}).get("schemas", {}).items():
        required = set(schema.get("required", []))
        out.append(f"<h3 id='{e(name)}'>{e(name)}</h3><p>{e(schema.get('description', ''))}</p>")
        out.append("<table><tr><th>field</th><th>type</th><th>required</th><th>notes</th></tr>")
        for prop, sub in schema.get("properties", {}).items():
            limits = ", ".join(f"{k} {sub[k]}" for k in ("minimum", "maximum", "minItems", "maxItems") if k in sub)
            notes = "; ".join(x for x in (sub.get("description", ""), limits) if x)
            out.append(
                f"<tr><td><code>{e(prop)}</code></td><td>{e(_type_of(sub))}</td>"
                f"<td>{'yes' if prop in required else 'no'}</td><td>{e(notes)}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)
