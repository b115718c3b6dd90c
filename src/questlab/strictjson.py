"""Strict JSON for run artefacts: an undefined number (NaN, an infinity) is written as ``null``.

Python's ``json`` writes a bare ``NaN``, which jq, JavaScript and strict parsers refuse.
"""

from __future__ import annotations

import json
import math
from typing import Any


def strict_json(obj: Any, indent: int | None = 1) -> str:
    """``obj`` as strict JSON: every NaN or infinity (an undefined number) becomes ``null``.

    Python would write a bare ``NaN``, which jq, JavaScript and strict parsers refuse. The readers
    of each file turn ``null`` back into NaN where they compute with it (``CVScore.from_dict``,
    ``FitLog.from_dict``); ``json.loads`` still accepts the ``NaN`` of files written before.
    ``allow_nan=False``: anything non-finite the conversion missed fails here, not in a reader.
    """
    return json.dumps(_finite_or_null(obj), indent=indent, allow_nan=False)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_null(v) for v in obj]
    return obj


def number(value: float | None) -> float:
    """A number as read back from strict JSON: ``null`` (undefined) is NaN again, never 0."""
    return math.nan if value is None else value
