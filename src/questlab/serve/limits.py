"""Limits, shapes and the request body cap of the HTTP service.

The shapes follow the predictor's task (:func:`questlab.serve.rows.request_models`): a row holds the task's id
(optional, all or none), its texts and features (required) and its optional columns (may be
left out); a prediction holds the id and the task's targets. :class:`Pair` is QUEST's row, as
written for 0.9.0 (its descriptions and rules are the documented API), used wherever a task's
row has exactly its columns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from questlab.schema import INPUT_COLUMNS, TARGETS

DEFAULT_MAX_BODY_BYTES = 10_000_000  # ~4,000 typical pairs; a 10,000-pair request of short texts fits
DEFAULT_BATCH_WINDOW_MS = 5.0
DEFAULT_BODY_TIMEOUT_S = 30.0  # the whole body, once the headers are in
# Bodies over this many bytes are read, parsed and predicted DEFAULT_LARGE_CONCURRENCY at a time
# (BodyLimit): ~400 typical pairs; QUEST's longest pair is ~40 KB.
DEFAULT_LARGE_BODY_BYTES = 1_000_000
DEFAULT_LARGE_CONCURRENCY = 1
DEFAULT_MAX_BATCH_PAIRS = 256
MAX_PAIRS = 10_000
MAX_ERRORS = 20  # errors listed in a 422 (the total is given too)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Responses above this many pairs are rendered in a worker thread so that one big request does
# not stall the event loop for everyone else.
INLINE_PAIRS = 64
# What an unknown user name becomes: distinct per column, and impossible to send (NUL is refused
# in user names), so an unknown name never equals any other name.
UNKNOWN_USER = {
    "question_user_name": "\x00unknown-question-user",
    "answer_user_name": "\x00unknown-answer-user",
}
# Model families whose predictions for a row do not depend on the other rows of the batch, to the
# bit (sparse row products, element-wise maps). Others (neural encoders pad to the longest text of
# a batch) are still served through the batcher, but each request is predicted on its own.
ROW_EXACT_MODELS = frozenset({"tfidf", "mean"})


# "Visible text", as the validator checks it (``str.strip()`` leaves something), spelt as a JSON
# Schema pattern: one character outside Python's whitespace set. Clients and fuzzers reading
# /openapi.json then know the rule the server enforces (checked by data.validate_frame).
VISIBLE_TEXT = "[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _text(description: str) -> Any:
    return Field(description=description, json_schema_extra={"pattern": VISIBLE_TEXT})


def _optional(description: str) -> Any:
    return Field(None, description=description)


class Pair(BaseModel):
    """One question–answer pair; only title, body, answer, category and host are required."""

    model_config = ConfigDict(extra="forbid", strict=True)

    qa_id: int | None = Field(
        None,
        ge=INT64_MIN,
        le=INT64_MAX,
        description="your id (int64) for the pair, echoed back; give it for every pair or none (then 0, 1, ...)",
    )
    question_title: str = _text("must hold visible text")
    question_body: str = Field(
        description="must not be empty (whitespace only is accepted, as in train.csv)",
        json_schema_extra={"minLength": 1},
    )
    answer: str = _text("must hold visible text")
    category: str = _text("must hold visible text, e.g. TECHNOLOGY")
    host: str = _text("must hold visible text, e.g. superuser.com")
    question_user_name: str | None = _optional("omitted, null or blank: unknown (matches no other name)")
    question_user_page: str | None = _optional("may be omitted")
    answer_user_name: str | None = _optional("omitted, null or blank: unknown (matches no other name)")
    answer_user_page: str | None = _optional("may be omitted")
    url: str | None = _optional("may be omitted")

    @field_validator("qa_id", mode="before")
    @classmethod
    def _whole_float_id(cls, value: Any) -> Any:
        # JSON Schema's "integer" admits 5.0, and a CSV's qa_id 5.0 is read as 5: the same here.
        # Anything else (true, 3.5, "5") stays for the strict int check to refuse.
        if type(value) is float and value.is_integer():
            return int(value)
        return value

    @field_validator(*INPUT_COLUMNS)
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        # JSON can spell a lone surrogate ("\ud800"); it is no text and cannot be encoded later on.
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"not valid Unicode text: a lone surrogate at character {exc.start}") from None
        return value

    @field_validator(*UNKNOWN_USER)
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain the NUL character")
        return value


# The rule across pairs, as JSON Schema states it on the array: every pair has an integer qa_id,
# or none has one (absent or null). Uniqueness of the ids is the one rule it cannot state.
QA_ID_ALL_OR_NONE = {
    "anyOf": [
        {"items": {"required": ["qa_id"], "properties": {"qa_id": {"type": "integer"}}}},
        {"items": {"properties": {"qa_id": {"type": "null"}}}},
    ]
}


class PredictRequest(BaseModel):
    """The pairs to rate (1 to 10,000 per request; the body size limit may allow fewer)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    pairs: list[Pair] = Field(
        min_length=1,
        max_length=MAX_PAIRS,
        description="qa_id given for every pair or for none; given ids must be unique",
        json_schema_extra=QA_ID_ALL_OR_NONE,
    )


Prediction = create_model(
    "Prediction",
    __doc__="The 30 predicted ratings of one pair, in [0, 1], in submission order.",
    qa_id=(int, ...),
    **{t: (float, ...) for t in TARGETS},
)


class PredictResponse(BaseModel):
    """The run that answered and one prediction per pair, in request order."""

    run_id: str
    predictions: list[Prediction]  # type: ignore[valid-type]


class Health(BaseModel):
    """The server is up: which run answers, which questlab, which task and targets."""

    status: str
    run_id: str
    version: str
    task: str = "quest"
    targets: list[str]


class ErrorItem(BaseModel):
    """One problem: where (field and 0-based pair index, when they apply) and what; never the input."""

    loc: list[str | int]
    field: str | None
    pair: int | None
    msg: str
    type: str


class TooLarge(BaseModel):
    """A body over the size limit, refused before it was read in full."""

    detail: str


class TooSlow(BaseModel):
    """A body not received in full within the body timeout."""

    detail: str


class Unparsable(BaseModel):
    """A body that is not JSON text at all (bytes that do not decode): FastAPI's own answer."""

    detail: str


class ErrorResponse(BaseModel):
    """A refused request: the first few problems and how many there are in all."""

    detail: list[ErrorItem]
    errors: int


# --- validation: one set of rules for HTTP and CSV ----------------------------------------------


class BodyLimit:
    """ASGI middleware: a request body is refused over ``max_bytes`` (413) or when slow (408).

    The declared Content-Length is checked first; the body is then read here, counting the bytes
    actually received (a chunked upload declares no length), and handed on only when complete and
    within the limit. So at most ``max_bytes`` of a body is ever held. The whole body must arrive
    within ``timeout_s`` of the headers.

    Large bodies are isolated: a request whose body is over ``large_bytes`` (declared, or counted
    as it arrives) waits for one of ``large_concurrency`` slots before it is read further, and
    holds it until its response is sent. So however many clients send big bodies, at most
    ``large_concurrency`` of them are read, parsed and predicted at a time, the bodies held in
    memory stay under ``large_concurrency * max_bytes`` plus ``large_bytes`` per connection, and
    the small requests of everyone else keep their share of the event loop and the models.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        large_bytes: int = DEFAULT_LARGE_BODY_BYTES,
        large_concurrency: int = DEFAULT_LARGE_CONCURRENCY,
    ) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.large_bytes, self.large_concurrency = large_bytes, large_concurrency
        self._slots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per event loop
        self.large_requests = 0  # bodies that went through the large-body slots (tests, curiosity)

    def _large_slots(self) -> asyncio.Semaphore:
        return self._slots.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(self.large_concurrency))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with contextlib.AsyncExitStack() as stack:
            await self._limited(scope, receive, send, stack)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, stack: contextlib.AsyncExitStack) -> None:
        declared = dict(scope.get("headers", [])).get(b"content-length")
        length = int(declared) if declared is not None and declared.strip().isdigit() else None
        if length is not None and length > self.max_bytes:
            await _refuse(
                send, 413, f"request body over the limit of {self.max_bytes} bytes: send fewer pairs per request"
            )
            return
        large = False

        async def enter_large() -> None:
            nonlocal large
            large = True
            self.large_requests += 1
            await stack.enter_async_context(self._large_slots())

        deadline = asyncio.get_running_loop().time() + self.timeout_s
        if length is not None and length > self.large_bytes:
            await enter_large()  # waiting for a slot is not the client's slowness: the clock starts after
            deadline = asyncio.get_running_loop().time() + self.timeout_s
        chunks, size = [], 0
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                await _refuse(send, 408, f"request body not received within {self.timeout_s:g} s")
                return
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(
                    send, 413, f"request body over the limit of {self.max_bytes} bytes: send fewer pairs per request"
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
            if size > self.large_bytes and not large:
                await enter_large()
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: disconnect notices

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, reason: str) -> None:
    """A one-line JSON error; the connection is closed after it (the unread rest of the body makes it unusable)."""
    body = json.dumps({"detail": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


# --- prediction: several requests in one pass, each getting its own exact numbers ---------------
