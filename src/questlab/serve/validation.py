"""One validator for HTTP and CSV: JSON shape by pydantic, then the CSV rules; refusals as 422 without echo."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from questlab.data import validate_frame
from questlab.errors import DataError
from questlab.serve.limits import MAX_ERRORS, UNKNOWN_USER
from questlab.tasks import Task, TaskRef, load_task

Pair = Any  # a row of the task's request model (questlab.serve.rows.request_models)


def pair_ids(pairs: Sequence[Pair], task: TaskRef = None) -> list[int | str]:
    """The rows' ids: all given, or none (then 0, 1, ...). Mixing is refused (a default could collide)."""
    key = load_task(task).id
    ids = [getattr(p, key) for p in pairs]
    missing = [i for i, q in enumerate(ids) if q is None]
    if not missing:
        return ids  # type: ignore[return-value]
    if len(missing) < len(ids):
        raise DataError(
            "request", f"{key} missing here but given for other pairs: give it for every pair or for none",
            column=key, row=missing[0] + 1,
        )  # fmt: skip
    return list(range(len(pairs)))


def _frame(requests: Sequence[Sequence[Pair]], ids: list[int], task: Task) -> pd.DataFrame:
    columns: dict[str, list] = {task.id: ids}
    for column in task.input_columns:  # None (omitted or null) is an empty cell, as in a CSV
        columns[column] = [getattr(p, column) or "" for pairs in requests for p in pairs]
    return pd.DataFrame(columns)


def _checked_alone(pairs: Sequence[Pair], task: Task) -> pd.DataFrame | DataError:
    try:
        frame = _frame([pairs], pair_ids(pairs, task), task)
        return _unknown_users_distinct(validate_frame(frame, "test", source="request", task=task))
    except DataError as exc:
        return exc


def validate_requests(requests: Sequence[Sequence[Pair]], task: TaskRef = None) -> list[pd.DataFrame | DataError]:
    """Each request's pairs as a test-format frame checked by the CSV rules, or the ``DataError``.

    Exactly what :func:`questlab.data.validate_frame` says of each request alone (``row`` is the
    1-based pair position, as in a file), in one call for the whole batch when it can: the text
    rules hold row by row, so a batch that passes them (its rows numbered 0..N-1, as qa_ids may
    repeat across requests) passes them request by request. The id rules (ints, int64: pydantic;
    unique; text ids, read as a file's) and any failing batch send the requests concerned through
    ``validate_frame`` alone, for the very error a file would get. Unknown user names are then made
    distinct (module doc).
    """
    task = load_task(task)
    ids: list[list[int | str] | DataError] = []
    for pairs in requests:
        try:
            ids.append(pair_ids(pairs, task))
        except DataError as exc:
            ids.append(exc)
    out: list[pd.DataFrame | DataError | None] = [i if isinstance(i, DataError) else None for i in ids]
    # unique int ids are checked already; text ids (a task's "r1-0") are stripped and checked by validate_frame
    batched = [isinstance(i, list) and len(set(i)) == len(i) and all(isinstance(q, int) for q in i) for i in ids]
    todo = [k for k, ok in enumerate(batched) if ok]
    for k, i in enumerate(ids):  # repeated or text ids: validate_frame words that error (or reads them)
        if isinstance(i, list) and not batched[k]:
            out[k] = _checked_alone(requests[k], task)
    while todo:
        sizes = [len(requests[k]) for k in todo]
        ends = np.cumsum(sizes)
        try:
            frame = _frame([requests[k] for k in todo], list(range(ends[-1])), task)
            whole = validate_frame(frame, "test", "request", task=task)
        except DataError as exc:
            # The request holding the failing row gets its own error (validated alone: its first
            # failing rule may come before the batch's); the rest are tried together again.
            culprit = todo[int(np.searchsorted(ends, exc.row))] if exc.row is not None else None
            if culprit is not None:
                out[culprit] = _checked_alone(requests[culprit], task)
            if culprit is None or not isinstance(out[culprit], DataError):  # not expected: be exact anyway
                for k in todo:
                    out[k] = _checked_alone(requests[k], task)
                break
            todo.remove(culprit)
            continue
        whole[task.id] = np.concatenate([np.asarray(ids[k], dtype=np.int64) for k in todo])
        whole = _unknown_users_distinct(whole)
        for k, lo, hi in zip(todo, ends - sizes, ends, strict=True):
            out[k] = whole.iloc[lo:hi].reset_index(drop=True)
        break
    return out  # type: ignore[return-value]


def _unknown_users_distinct(frame: pd.DataFrame) -> pd.DataFrame:
    for column, placeholder in UNKNOWN_USER.items():
        if column not in frame.columns:  # a task without user names
            continue
        names = frame[column]
        frame[column] = names.where(names.str.strip() != "", placeholder)
    return frame


def request_frame(pairs: Sequence[Pair], task: TaskRef = None) -> pd.DataFrame:
    """One request's validated frame (see :func:`validate_requests`); raises its ``DataError``."""
    result = validate_requests([pairs], task)[0]
    if isinstance(result, DataError):
        raise result
    return result


def _clean(text: str, limit: int = 300) -> str:
    """Text safe to put in a response: valid UTF-8, bounded (keys of unknown fields are user input)."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_item(loc: Sequence[Any], msg: str, kind: str) -> dict[str, Any]:
    loc = [x if isinstance(x, int) else _clean(str(x), 80) for x in loc]
    pair = loc[2] if len(loc) > 2 and loc[:2] == ["body", "pairs"] and isinstance(loc[2], int) else None
    if pair is not None:
        name = loc[3] if len(loc) > 3 else None
    else:
        name = next((x for x in reversed(loc) if isinstance(x, str)), None)
    return {"loc": loc, "field": name, "pair": pair, "msg": _clean(msg), "type": kind}


def error_response(items: list[dict[str, Any]], status: int = 422) -> JSONResponse:
    return JSONResponse({"detail": items[:MAX_ERRORS], "errors": len(items)}, status_code=status)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    """pydantic's errors as field, pair and message: the offending input is never echoed."""
    items = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")  # pydantic's prefix to our own
        if err.get("type") == "json_invalid":  # the decoder's reason and byte offset, not the text
            msg = f"not valid JSON: {err.get('ctx', {}).get('error', 'decode error')}"
        items.append(error_item(err.get("loc", ()), msg, str(err.get("type", "value_error"))))
    return error_response(items)


def data_error_response(exc: DataError) -> JSONResponse:
    """A ``DataError`` of the CSV rules as a 422 naming the field and the 0-based pair index."""
    pair = exc.row - 1 if exc.row is not None else None
    message = re.sub(r"\brow (\d+)\b", lambda m: f"pair {int(m[1]) - 1}", exc.message)  # file rows → pairs
    if exc.hint:
        message = f"{message}. {exc.hint}"
    loc: list[str | int] = ["body", "pairs"] + ([pair] if pair is not None else [])
    loc += [exc.column] if exc.column else []
    item = error_item(loc, message, "value_error")
    item["field"] = exc.column
    return error_response([item])


# --- body size limit ----------------------------------------------------------------------------
