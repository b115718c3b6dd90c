"""A verdict of ``diagnose``: severity, a stable code, a one-line message, the numbers behind it.

Also the small formatting helpers every check shares, so numbers read the same everywhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SEVERITIES = ("error", "warning", "info", "ok")


@dataclass
class Verdict:
    """One finding of ``diagnose``: a severity, a stable code, a one-line message, the numbers."""

    severity: str  # error / warning / info / ok
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: use one of {', '.join(SEVERITIES)}")

    def line(self) -> str:
        return f"[{self.severity.upper()}] {self.code}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rounded(x: float | None, nd: int = 4) -> float | None:
    """A JSON-friendly number: rounded, NaN as None (never 0: a missing score is not a zero)."""
    if x is None or (isinstance(x, float | np.floating) and math.isnan(x)):
        return None
    return round(float(x), nd)


def fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def folds_text(folds: list[int]) -> str:
    return ", ".join(str(k) for k in folds)


def by_severity(verdicts: list[Verdict]) -> list[Verdict]:
    """Errors first, then warnings, info, ok (stable within a severity)."""
    return sorted(verdicts, key=lambda v: SEVERITIES.index(v.severity))
