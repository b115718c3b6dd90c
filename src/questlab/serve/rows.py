"""The HTTP shapes of a task: a row, a request, a prediction, a response, built from its columns.

A row holds the task's id (optional: all or none; an int64 as QUEST's ``qa_id`` where the task's
``id_type`` is integer, else text or an int64, as a file's id cells are read), its texts and
features (required) and its optional and group-only columns (may be left out); a prediction holds
the id and the task's targets. QUEST's row is :class:`~questlab.serve.limits.Pair`, as written for
0.9.0 (its descriptions are the documented API): it is used wherever a task's row has exactly its
columns, so QUEST's API is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from questlab.serve.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_PAIRS,
    UNKNOWN_USER,
    Pair,
    Prediction,
    PredictRequest,
    PredictResponse,
    _optional,
    _text,
)
from questlab.tasks import Task, TaskRef, load_task


def _valid_text(value: str | None) -> str | None:
    # JSON can spell a lone surrogate ("\ud800"); it is no text and cannot be encoded later on.
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"not valid Unicode text: a lone surrogate at character {exc.start}") from None
    return value


class _Row(BaseModel):
    """What every generated row model checks: a whole float id is an int, texts are valid Unicode."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id_field: ClassVar[str] = ""

    @field_validator("*", mode="before")
    @classmethod
    def _shape(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == cls.id_field:
            return int(value) if type(value) is float and value.is_integer() else value
        if isinstance(value, str):
            _valid_text(value)
            if info.field_name in UNKNOWN_USER and "\x00" in value:
                raise ValueError("must not contain the NUL character")
        return value


@dataclass(frozen=True)
class RequestModels:
    """The pydantic shapes of one task's HTTP API."""

    row: type[BaseModel]
    request: type[BaseModel]
    prediction: type[BaseModel]
    response: type[BaseModel]


_MODELS: dict[str, RequestModels] = {}


def request_models(task: TaskRef = None) -> RequestModels:
    """The request and response shapes of ``task`` (cached by its fingerprint)."""
    task = load_task(task)
    if task.fingerprint not in _MODELS:
        _MODELS[task.fingerprint] = _build(task)
    return _MODELS[task.fingerprint]


def _is_pair(task: Task) -> bool:
    """Whether QUEST's hand-written :class:`Pair` is exactly ``task``'s row (same columns, same required)."""
    required = {n for n, f in Pair.model_fields.items() if f.is_required()}
    return set(Pair.model_fields) == {task.id, *task.input_columns} and required == set(task.required_inputs)


def _build(task: Task) -> RequestModels:
    if _is_pair(task):  # QUEST's 0.9.0 shapes, word for word
        return RequestModels(Pair, PredictRequest, Prediction, PredictResponse)
    # a task of text ids ("r1-0") takes them as a file does: text, or whole numbers (read as int64)
    int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
    id_kind, id_json, id_word = (
        (int64, "integer", "int64") if task.id_type == "integer" else (int64 | str, ["integer", "string"], "text")
    )
    fields: dict[str, Any] = {
        task.id: (
            id_kind | None,
            Field(None, description=f"your id ({id_word}) for the row, echoed back; "
                  "give it for every row or none (then 0, 1, ...)"),
        )
    }  # fmt: skip
    fields |= {c: (str, _text("must hold visible text")) for c in task.required_inputs}
    fields |= {c: (str | None, _optional("may be omitted")) for c in task.input_columns if c not in fields}
    row = create_model("Row", __base__=_Row, __doc__=f"One row of task {task.name!r}.", **fields)
    row.id_field = task.id
    all_or_none = {
        "anyOf": [
            {"items": {"required": [task.id], "properties": {task.id: {"type": id_json}}}},
            {"items": {"properties": {task.id: {"type": "null"}}}},
        ]
    }
    request = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", strict=True),
        __doc__="The rows to rate (1 to 10,000 per request; the body size limit may allow fewer).",
        pairs=(
            list[row],  # type: ignore[valid-type]
            Field(
                min_length=1,
                max_length=MAX_PAIRS,
                description=f"{task.id} given for every row or for none; given ids must be unique",
                json_schema_extra=all_or_none,
            ),
        ),
    )
    ranges = sorted({(t.low, t.high) for t in task.targets})
    span = f"in [{ranges[0][0]:g}, {ranges[0][1]:g}]" if len(ranges) == 1 else "each in its target's range"
    prediction = create_model(
        "Prediction",
        __doc__=f"The {task.n_targets} predicted ratings of one row, {span}, in submission order.",
        **{task.id: (id_kind, ...)},
        **{t: (float, ...) for t in task.target_names},
    )
    response = create_model(
        "PredictResponse",
        __doc__="The run that answered and one prediction per row, in request order.",
        run_id=(str, ...),
        predictions=(list[prediction], ...),  # type: ignore[valid-type]
    )
    return RequestModels(row, request, prediction, response)
