"""Every model family and its parameters, generated from the typed params (``questlab models``).

Nothing here is written twice: each row comes from a family's ``Params`` class (pydantic
``model_fields``: the annotation and its bounds, the default, the ``description``). Where a field
has no ``description``, its meaning is the comment at the end of its line, the convention of the
params classes (``lr: float = Field(5e-5, gt=0)  # encoder LR (top layer)``);
``tests/test_models_catalog.py`` fails on a field with neither.
"""

from __future__ import annotations

import ast
import inspect
import io
import json
import sys
import textwrap
import tokenize
import types
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

import pandas as pd
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from questlab.models.registry import get_model_class, model_names

COLUMNS = ["family", "parameter", "type", "default", "meaning"]


def families() -> pd.DataFrame:
    """One row per registered family: its name, number of parameters and what it is, in one line."""
    rows = []
    for name in model_names():
        klass = get_model_class(name)
        rows.append({"family": name, "parameters": len(klass.Params.model_fields), "summary": summary(klass)})
    return pd.DataFrame(rows, columns=["family", "parameters", "summary"])


def parameters(family: str | None = None) -> pd.DataFrame:
    """Every parameter of ``family`` (all families when None): family, parameter, type, default, meaning.

    An unknown family is an ``UnknownNameError`` that lists the known ones.
    """
    names = model_names() if family is None else [family]
    rows = []
    for name in names:
        params = get_model_class(name).Params
        for field, info in params.model_fields.items():
            rows.append(
                {
                    "family": name,
                    "parameter": field,
                    "type": type_text(info),
                    "default": default_text(info),
                    "meaning": meaning(params, field),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def summary(klass: type) -> str:
    """The first line of a model class's docstring (or of its module's, where the class points there)."""
    line = _first_line(klass.__doc__)
    if not line or "module docstring" in line:
        line = _first_line(sys.modules[klass.__module__].__doc__)
        if line.startswith("``") and "``: " in line:  # "``TransformerModel``: a fine-tuned ..."
            line = line.split("``: ", 1)[1]
    return line.replace("``", "")


def meaning(params: type[BaseModel], field: str) -> str:
    """A field's description, else the comment ending its line in the class source ("" if neither)."""
    info = params.model_fields[field]
    if info.description:
        return " ".join(info.description.split())
    for klass in params.__mro__:
        if field in _trailing_comments(klass):
            return _trailing_comments(klass)[field]
    return ""


def type_text(info: FieldInfo) -> str:
    """The annotation in words (``int``, ``joint | dual``, ``list of (title | body)``) and its bounds."""
    text = _annotation_text(info.annotation)
    low = high = None
    for bound in info.metadata:
        for attr, sign in (("ge", "["), ("gt", "(")):
            if getattr(bound, attr, None) is not None:
                low = (sign, getattr(bound, attr))
        for attr, sign in (("le", "]"), ("lt", ")")):
            if getattr(bound, attr, None) is not None:
                high = (sign, getattr(bound, attr))
    if low and high:
        return f"{text} in {low[0]}{_number(low[1])}, {_number(high[1])}{high[0]}"
    if low:
        return f"{text} {'≥' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f"{text} {'≤' if high[0] == ']' else '<'} {_number(high[1])}"
    return text


def default_text(info: FieldInfo) -> str:
    """The default as a config would write it (``true``, ``null``, ``[title, answer]``, ``1e-05``)."""
    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list | tuple):
        items = [default_text(FieldInfo(default=v)) for v in value]
        if len(items) > 8:  # a long grid (ridge alphas): its ends and its length
            return f"[{items[0]}, {items[1]}, ..., {items[-1]}] ({len(items)} values)"
        return "[" + ", ".join(items) + "]"
    return json.dumps(value)


def _number(value: Any) -> str:
    return repr(value) if not isinstance(value, float) or value != int(value) or abs(value) >= 1e6 else str(int(value))


def _annotation_text(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _annotation_text(a) for a in args)
    if origin in (list, tuple, set):
        inner = _annotation_text(args[0]) if args else "any"
        return f"list of ({inner})" if " | " in inner else f"list of {inner}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).splitlines()[0].strip() if doc and doc.strip() else ""


@cache
def _trailing_comments(klass: type) -> dict[str, str]:
    """field -> the comment at the end of its statement's lines, from the class's source."""
    if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
        return {}
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # no source (a frozen install): the descriptions alone
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}  # line number -> its comment, where code comes before it on the line
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1][: tok.start[1]].strip():
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
        body = ast.parse(source).body[0].body
    except (tokenize.TokenError, SyntaxError, IndexError, AttributeError):
        return {}
    out = {}
    for node in body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found = [comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
            if found:
                out[node.target.id] = found[0]
    return out
